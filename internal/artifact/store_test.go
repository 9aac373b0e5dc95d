package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sum(b []byte) Digest {
	h := sha256.Sum256(b)
	return Digest("sha256:" + hex.EncodeToString(h[:]))
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "blobs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseDigest(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want Digest
		ok   bool
	}{
		{"sha256:" + good, Digest("sha256:" + good), true},
		{good, Digest("sha256:" + good), true},
		{"sha512:" + good, "", false},
		{"sha256:" + strings.ToUpper(good), "", false},
		{"sha256:abc", "", false},
		{"", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDigest(tc.in)
			if tc.ok != (err == nil) || got != tc.want {
				t.Fatalf("ParseDigest(%q) = %q, %v", tc.in, got, err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestPutOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := []byte("model weights")
	info, err := s.Put(ctx, bytes.NewReader(data), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != sum(data) || info.Size != int64(len(data)) {
		t.Fatalf("info = %+v", info)
	}
	rc, got, err := s.Open(ctx, info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(b, data) || got != info {
		t.Fatalf("read %q %+v %v", b, got, err)
	}
	// A second Put of the same bytes dedupes.
	again, err := s.Put(ctx, bytes.NewReader(data), info.Digest, 0)
	if err != nil || again != info {
		t.Fatalf("second put: %+v %v", again, err)
	}
	if ok, err := s.Has(ctx, info.Digest); !ok || err != nil {
		t.Fatalf("Has = %v %v", ok, err)
	}
	if ok, err := s.Has(ctx, sum([]byte("other"))); ok || err != nil {
		t.Fatalf("Has(other) = %v %v", ok, err)
	}
	if entries, _ := os.ReadDir(s.tmp); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestPutErrors(t *testing.T) {
	ctx := context.Background()
	data := []byte("0123456789")
	for _, tc := range []struct {
		name    string
		expect  Digest
		max     int64
		wantErr error
	}{
		{"mismatch", sum([]byte("something else")), 0, ErrDigestMismatch},
		{"bad expected digest", "md5:abc", 0, ErrInvalid},
		{"too large", "", 9, ErrTooLarge},
		{"exactly at limit", "", 10, nil},
		{"expected matches", sum(data), 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Put(ctx, bytes.NewReader(data), tc.expect, tc.max)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			ok, _ := s.Has(ctx, sum(data))
			if ok != (tc.wantErr == nil) {
				t.Fatalf("blob stored = %v after err %v", ok, err)
			}
			if entries, _ := os.ReadDir(s.tmp); len(entries) != 0 {
				t.Fatalf("temp files left: %v", entries)
			}
		})
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("connection reset")
	}
	n := min(f.n, len(p))
	f.n -= n
	return n, nil
}

func TestPutInterruptedLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.Put(ctx, &failingReader{n: 1000}, "", 0); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("failing reader: %v, want ErrIncomplete", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, strings.NewReader("x"), "", 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled put: %v", err)
	}
	var files []string
	filepath.Walk(s.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("files left after failed uploads: %v", files)
	}
}

func TestCrashLeftoversIgnoredAndCleaned(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What a writer killed mid-upload leaves: a partial temp file.
	partial := filepath.Join(s.tmp, "upload-123")
	if err := os.WriteFile(partial, []byte("half a mod"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Has(ctx, sum([]byte("half a mod"))); ok {
		t.Fatal("a temp file is visible as a blob")
	}
	if _, err := Open(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial upload not removed at open: %v", err)
	}
}

func TestCorruptionDetected(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := []byte("precious weights")
	info, err := s.Put(ctx, bytes.NewReader(data), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	p := s.path(info.Digest)
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("tampered weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(ctx, info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a tampered blob: %v", err)
	}
	if err := s.Verify(ctx, info.Digest); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify: %v", err)
	}
	// A verified upload of the right bytes repairs it.
	if _, err := s.Put(ctx, bytes.NewReader(data), info.Digest, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx, info.Digest); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	if _, _, err := s.Open(ctx, sum([]byte("absent"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open absent: %v", err)
	}
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDirRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	files := map[string]string{"model.onnx": "onnx bytes", "config.yaml": "backend: onnx\n", "tokenizer/vocab.txt": "a\nb\n"}
	src := writeTree(t, files)
	info, err := s.PutDir(ctx, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len("onnx bytes")+len("backend: onnx\n")+len("a\nb\n")) {
		t.Fatalf("total size %d", info.Size)
	}
	if ok, err := s.IsManifest(ctx, info.Digest); !ok || err != nil {
		t.Fatalf("IsManifest = %v %v", ok, err)
	}
	// The same tree stored again gives the same digest.
	again, err := s.PutDir(ctx, writeTree(t, files), 0)
	if err != nil || again.Digest != info.Digest {
		t.Fatalf("not deterministic: %v %v", again, err)
	}
	dest := filepath.Join(t.TempDir(), "out")
	if err := s.ExtractDir(ctx, info.Digest, dest); err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		b, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(p)))
		if err != nil || string(b) != c {
			t.Fatalf("%s: %q %v", p, b, err)
		}
	}
	if err := s.ExtractDir(ctx, info.Digest, dest); err == nil {
		t.Fatal("extract into a non-empty directory succeeded")
	}
	// Tar round trip: WriteTar then PutTar gives the same manifest.
	var buf bytes.Buffer
	if err := s.WriteTar(ctx, info.Digest, &buf); err != nil {
		t.Fatal(err)
	}
	s2 := newStore(t)
	tinfo, err := s2.PutTar(ctx, &buf, 0)
	if err != nil || tinfo != info {
		t.Fatalf("tar round trip: %+v %v, want %+v", tinfo, err, info)
	}
	// A plain blob is not a manifest.
	plain, _ := s.Put(ctx, strings.NewReader("not json"), "", 0)
	if ok, err := s.IsManifest(ctx, plain.Digest); ok || err != nil {
		t.Fatalf("IsManifest(plain) = %v %v", ok, err)
	}
	if err := s.ExtractDir(ctx, plain.Digest, t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("extract plain blob: %v", err)
	}
}

func TestPutDirRefusesSymlinksAndLimits(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	src := writeTree(t, map[string]string{"a": "12345", "b": "67890"})
	if _, err := s.PutDir(ctx, src, 7); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("size limit: %v", err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Skip(err)
	}
	if _, err := s.PutDir(ctx, src, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("symlink: %v", err)
	}
}

func tarOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := strings.Repeat("x", int(h.Size))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

func TestPutTarRejects(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		max     int64
		want    error
	}{
		{"traversal", []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg, Size: 1}}, 0, ErrInvalid},
		{"absolute", []tar.Header{{Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1}}, 0, ErrInvalid},
		{"inner dotdot", []tar.Header{{Name: "a/../../evil", Typeflag: tar.TypeReg, Size: 1}}, 0, ErrInvalid},
		{"symlink", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, 0, ErrInvalid},
		{"duplicate", []tar.Header{{Name: "a", Typeflag: tar.TypeReg, Size: 1}, {Name: "a", Typeflag: tar.TypeReg, Size: 2}}, 0, ErrInvalid},
		{"file and dir", []tar.Header{{Name: "a", Typeflag: tar.TypeReg, Size: 1}, {Name: "a/b", Typeflag: tar.TypeReg, Size: 1}}, 0, ErrInvalid},
		{"too large", []tar.Header{{Name: "a", Typeflag: tar.TypeReg, Size: 6}, {Name: "b", Typeflag: tar.TypeReg, Size: 6}}, 10, ErrTooLarge},
		{"ok with dirs", []tar.Header{{Name: "d/", Typeflag: tar.TypeDir}, {Name: "./d/a", Typeflag: tar.TypeReg, Size: 3}}, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.PutTar(ctx, bytes.NewReader(tarOf(t, tc.entries...)), tc.max)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := newStore(t).PutTar(ctx, strings.NewReader("not a tar archive at all, definitely not 512 bytes"), 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage tar: %v", err)
	}
}

func TestDecodeManifest(t *testing.T) {
	d := string(sum([]byte("x")))
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"valid", `{"kind":"kiln.directory.v1","files":[{"path":"a/b.onnx","digest":"` + d + `","size":1,"mode":420}]}`, true},
		{"empty dir", `{"kind":"kiln.directory.v1","files":[]}`, true},
		{"wrong kind", `{"kind":"other","files":[]}`, false},
		{"unknown field", `{"kind":"kiln.directory.v1","files":[],"x":1}`, false},
		{"traversal", `{"kind":"kiln.directory.v1","files":[{"path":"../a","digest":"` + d + `","size":1}]}`, false},
		{"absolute", `{"kind":"kiln.directory.v1","files":[{"path":"/a","digest":"` + d + `","size":1}]}`, false},
		{"unclean", `{"kind":"kiln.directory.v1","files":[{"path":"a//b","digest":"` + d + `","size":1}]}`, false},
		{"backslash", `{"kind":"kiln.directory.v1","files":[{"path":"a\\b","digest":"` + d + `","size":1}]}`, false},
		{"bad digest", `{"kind":"kiln.directory.v1","files":[{"path":"a","digest":"sha256:zz","size":1}]}`, false},
		{"bare digest", `{"kind":"kiln.directory.v1","files":[{"path":"a","digest":"` + d[7:] + `","size":1}]}`, false},
		{"negative size", `{"kind":"kiln.directory.v1","files":[{"path":"a","digest":"` + d + `","size":-1}]}`, false},
		{"setuid", `{"kind":"kiln.directory.v1","files":[{"path":"a","digest":"` + d + `","size":1,"mode":2541}]}`, false},
		{"trailing", `{"kind":"kiln.directory.v1","files":[]} {}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestPutManifestChecksBlobs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	info, _ := s.Put(ctx, strings.NewReader("abc"), "", 0)
	m := &Manifest{Kind: ManifestKind, Files: []File{{Path: "a", Digest: info.Digest, Size: 3}}}
	if _, err := s.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Files[0].Size = 4
	if _, err := s.PutManifest(ctx, m); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong size: %v", err)
	}
	m.Files[0] = File{Path: "a", Digest: sum([]byte("missing")), Size: 7}
	if _, err := s.PutManifest(ctx, m); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
}
