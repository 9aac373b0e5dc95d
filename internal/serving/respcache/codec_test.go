package respcache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		ts   []tensor.Tensor
	}{
		{"no tensors", nil},
		{"fp32", []tensor.Tensor{f32("y", tensor.Shape{2, 2}, 1, 2, 3, 4)}},
		{"bytes", []tensor.Tensor{byteStrings("s", tensor.Shape{1, 3}, "a", "", "long string \x00 with nul")}},
		{"zero elements fp32", []tensor.Tensor{{Name: "z", DataType: tensor.FP32, Shape: tensor.Shape{3, 0}}}},
		{"zero elements bytes", []tensor.Tensor{{Name: "z", DataType: tensor.Bytes, Shape: tensor.Shape{0}}}},
		{"scalar", []tensor.Tensor{{Name: "s", DataType: tensor.Uint8, Shape: tensor.Shape{}, Data: []byte{7}}}},
		{"empty name", []tensor.Tensor{{Name: "", DataType: tensor.Int8, Shape: tensor.Shape{1}, Data: []byte{0xff}}}},
		{"mixed", sampleOutputs()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.ts)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != EncodedSize(tt.ts) {
				t.Errorf("encoded %d bytes, EncodedSize says %d", len(b), EncodedSize(tt.ts))
			}
			if b[0] != FormatVersion {
				t.Errorf("first byte %d, want format version %d", b[0], FormatVersion)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			assertTensorsEqual(t, got, tt.ts)
			again, err := Encode(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Error("re-encoding the decoded tensors changed the bytes")
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		t    tensor.Tensor
	}{
		{"invalid datatype", tensor.Tensor{Name: "x", Shape: tensor.Shape{1}, Data: []byte{1}}},
		{"short data", tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{2}, Data: make([]byte, 4)}},
		{"negative dim", tensor.Tensor{Name: "x", DataType: tensor.Uint8, Shape: tensor.Shape{-1}}},
		{"bad bytes prefix", tensor.Tensor{Name: "x", DataType: tensor.Bytes, Shape: tensor.Shape{1}, Data: []byte{9, 0, 0, 0, 'a'}}},
		{"bytes count", byteStrings("x", tensor.Shape{3}, "a", "b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode([]tensor.Tensor{f32("ok", tensor.Shape{1}, 1), tt.t})
			if !errors.Is(err, tensor.ErrInvalid) {
				t.Errorf("err = %v, want tensor.ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRejectsCorrupt(t *testing.T) {
	valid, err := Encode(sampleOutputs())
	if err != nil {
		t.Fatal(err)
	}
	one, err := Encode([]tensor.Tensor{f32("y", tensor.Shape{2}, 1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	// Offsets inside one: version 0, count 1..4, nameLen 5..8, name 9,
	// datatype 10, rank 11..14, dims 15..22, dataLen 23..30, data 31..38.
	patch := func(off int, p ...byte) []byte {
		b := bytes.Clone(one)
		copy(b[off:], p)
		return b
	}
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	le64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"format version", patch(0, FormatVersion+1)},
		{"huge count", patch(1, le32(1<<31)...)},
		{"count too high", patch(1, le32(2)...)},
		{"name past end", patch(5, le32(1000)...)},
		{"invalid datatype", patch(10, 0)},
		{"unknown datatype", patch(10, 200)},
		{"huge rank", patch(11, le32(1<<30)...)},
		{"negative dim", patch(15, le64(1<<63)...)},
		{"shape mismatch", patch(15, le64(3)...)},
		{"data past end", patch(23, le64(1<<62)...)},
		{"short data", patch(23, le64(4)...)},
		{"trailing byte", append(bytes.Clone(one), 0)},
		{"bytes tensor malformed", func() []byte {
			b, _ := Encode([]tensor.Tensor{byteStrings("s", tensor.Shape{1}, "abc")})
			// the element's length prefix sits 7 bytes from the end
			copy(b[len(b)-7:], le32(4))
			return b
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := Decode(tt.b)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
			if ts != nil {
				t.Errorf("returned %d tensors with the error", len(ts))
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(valid) {
			if _, err := Decode(valid[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrCorrupt", n, len(valid), err)
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, ts := range [][]tensor.Tensor{nil, sampleOutputs(), {byteStrings("s", tensor.Shape{2}, "", "x")}} {
		b, err := Encode(ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{FormatVersion, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		ts, err := Decode(b)
		if !bytes.Equal(in, b) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		for i := range ts {
			if err := ts[i].Validate(0); err != nil && !errors.Is(err, tensor.ErrTooLarge) {
				t.Fatalf("decoded tensor %d is invalid: %v", i, err)
			}
		}
		// A decodable value is canonical: it re-encodes to the same bytes.
		again, err := Encode(ts)
		if err != nil {
			t.Fatalf("decoded tensors do not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, again)
		}
	})
}
