package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"path"
	"strings"
	"testing"
)

func FuzzDecodeManifest(f *testing.F) {
	d := string(sum([]byte("x")))
	f.Add([]byte(`{"kind":"kiln.directory.v1","files":[{"path":"a/b.onnx","digest":"` + d + `","size":1,"mode":420}]}`))
	f.Add([]byte(`{"kind":"kiln.directory.v1","files":[{"path":"../a","digest":"` + d + `","size":1}]}`))
	f.Add([]byte(`{"kind":"kiln.directory.v1","files":[{"path":"..a/.b","digest":"` + d + `","size":1}]}`))
	f.Add([]byte(`{"kind":"kiln.directory.v1","files":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		for _, file := range m.Files {
			// Safe: relative, clean, and inside the directory when joined to
			// it (a name that merely starts with two dots, "..a", is fine).
			if path.IsAbs(file.Path) || path.Clean(file.Path) != file.Path ||
				!strings.HasPrefix(path.Join("/root", file.Path), "/root/") {
				t.Fatalf("accepted unsafe path %q", file.Path)
			}
			if file.Size < 0 {
				t.Fatalf("accepted negative size")
			}
		}
		// A decoded manifest re-encodes to a manifest that decodes.
		enc, err := m.encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeManifest(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func FuzzPutTar(f *testing.F) {
	f.Add(tarOfF([]string{"a", "d/b"}))
	f.Add([]byte("garbage"))
	s, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := s.PutTar(context.Background(), strings.NewReader(string(data)), 1<<16)
		if err != nil {
			return
		}
		m, err := s.Manifest(context.Background(), info.Digest)
		if err != nil {
			t.Fatalf("stored manifest unreadable: %v", err)
		}
		if m.TotalSize() != info.Size {
			t.Fatalf("size %d != manifest total %d", info.Size, m.TotalSize())
		}
	})
}

func tarOfF(names []string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Size: int64(len(n)), Mode: 0o644})
		tw.Write([]byte(n))
	}
	tw.Close()
	return buf.Bytes()
}
