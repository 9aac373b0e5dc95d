package file

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
)

// FuzzFastSnappy: what the registered Snappy codec encodes is standard
// Snappy (read back by the Snappy and S2 decoders and by the codec
// itself), and it decodes what the reference encoder wrote.
func FuzzFastSnappy(f *testing.F) {
	for _, s := range []string{"", "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abcabcabcabcabcabcabcabc0123456789", string(make([]byte, 5000))} {
		f.Add([]byte(s))
	}
	codec, err := compress.GetCodec(compress.Codecs.Snappy)
	if err != nil {
		f.Fatal(err)
	}
	if _, ok := codec.(fastSnappy); !ok {
		f.Fatalf("snappy codec is %T, want fastSnappy", codec)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		enc := codec.Encode(make([]byte, 0, codec.CompressBound(int64(len(data)))), data)
		if int64(len(enc)) > codec.CompressBound(int64(len(data))) {
			t.Fatalf("encoded %d bytes, bound %d", len(enc), codec.CompressBound(int64(len(data))))
		}
		for name, dec := range map[string]func([]byte, []byte) ([]byte, error){"snappy": snappy.Decode, "s2": s2.Decode} {
			out, err := dec(nil, enc)
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%s decoder: %v, round trip equal %v", name, err, bytes.Equal(out, data))
			}
		}
		out, err := compress.Decode(codec, nil, snappy.Encode(nil, data))
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("decoding reference snappy: %v", err)
		}
	})
}
