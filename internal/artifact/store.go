// Package artifact provides Kiln's content-addressed blob store: model
// files are stored under their sha256 digest in a local directory, written
// atomically (temporary file, fsync, rename, fsync of the directory), never
// overwritten with different bytes and verified whenever they are read.
// A directory (a multi-file model) is stored as a manifest blob listing the
// blobs of its files.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Errors returned by the store; check them with errors.Is.
var (
	// ErrNotFound: no blob with that digest.
	ErrNotFound = errors.New("artifact not found")
	// ErrInvalid: a malformed digest, manifest or archive.
	ErrInvalid = errors.New("invalid artifact")
	// ErrDigestMismatch: uploaded bytes do not hash to the expected digest.
	ErrDigestMismatch = errors.New("artifact digest mismatch")
	// ErrTooLarge: the content is over the size limit.
	ErrTooLarge = errors.New("artifact too large")
	// ErrCorrupt: stored bytes no longer hash to their digest.
	ErrCorrupt = errors.New("artifact corruption detected")
	// ErrIncomplete: reading the content failed (the sender went away or
	// sent a broken stream); nothing was stored.
	ErrIncomplete = errors.New("artifact upload incomplete")
)

// Algorithm is the only digest algorithm the store uses.
const Algorithm = "sha256"

// Digest names a blob: "sha256:" followed by 64 lowercase hex digits.
type Digest string

// ParseDigest accepts "sha256:<hex>" or a bare 64-digit hex string and
// returns the canonical form.
func ParseDigest(s string) (Digest, error) {
	hexPart, ok := strings.CutPrefix(s, Algorithm+":")
	if !ok {
		if strings.Contains(s, ":") {
			return "", fmt.Errorf("%w: digest %q: only sha256 is supported", ErrInvalid, s)
		}
		hexPart = s
	}
	if len(hexPart) != 64 {
		return "", fmt.Errorf("%w: digest %q: want 64 hex digits", ErrInvalid, s)
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("%w: digest %q: want lowercase hex digits", ErrInvalid, s)
		}
	}
	return Digest(Algorithm + ":" + hexPart), nil
}

// Hex is the digest's hex part.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), Algorithm+":") }

func (d Digest) String() string { return string(d) }

func digestOf(h hash.Hash) Digest { return Digest(Algorithm + ":" + hex.EncodeToString(h.Sum(nil))) }

// Info describes a stored blob.
type Info struct {
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
}

// Store keeps blobs under <dir>/sha256/<2 hex>/<64 hex>. One process owns
// a directory at a time (as with the SQLite registry beside it).
type Store struct {
	dir string
	tmp string
	log *slog.Logger
}

// Open opens (creating if needed) the blob store in dir and removes
// temporary files a crashed writer left behind; they never became blobs.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, tmp: filepath.Join(dir, "tmp"), log: log}
	for _, d := range []string{filepath.Join(dir, Algorithm), s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("artifact store: %w", err)
		}
	}
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("artifact store: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmp, e.Name())); err != nil {
			return nil, fmt.Errorf("artifact store: removing leftover %s: %w", e.Name(), err)
		}
	}
	if len(entries) > 0 {
		log.Info("removed unfinished artifact uploads", "count", len(entries))
	}
	return s, nil
}

// Dir is the store's root directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(d Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, Algorithm, h[:2], h)
}

// Put streams r into the store and returns its digest and size. With a
// non-empty expect the content must hash to it (ErrDigestMismatch
// otherwise); with maxSize > 0 more bytes than that fail with ErrTooLarge.
// Nothing is visible under the digest until the bytes are durable; an
// existing blob is never replaced by different bytes (a corrupt one is
// repaired by the verified upload).
func (s *Store) Put(ctx context.Context, r io.Reader, expect Digest, maxSize int64) (Info, error) {
	if expect != "" {
		var err error
		if expect, err = ParseDigest(string(expect)); err != nil {
			return Info{}, err
		}
	}
	f, err := os.CreateTemp(s.tmp, "upload-*")
	if err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	tmpName := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmpName)
		}
	}()
	h := sha256.New()
	src := &errReader{r: &ctxReader{ctx: ctx, r: r}}
	var n int64
	if maxSize > 0 {
		n, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(src, maxSize+1))
		if err == nil && n > maxSize {
			return Info{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxSize)
		}
	} else {
		n, err = io.Copy(io.MultiWriter(f, h), src)
	}
	if err != nil {
		if src.err != nil && !errors.Is(src.err, context.Canceled) && !errors.Is(src.err, context.DeadlineExceeded) {
			return Info{}, fmt.Errorf("%w: %w", ErrIncomplete, src.err)
		}
		return Info{}, fmt.Errorf("artifact upload: %w", err)
	}
	d := digestOf(h)
	if expect != "" && d != expect {
		return Info{}, fmt.Errorf("%w: content is %s, expected %s", ErrDigestMismatch, d, expect)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("artifact store: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	info := Info{Digest: d, Size: n}
	final := s.path(d)
	if st, err := os.Stat(final); err == nil {
		if st.Size() == n && s.verifyFile(ctx, final, d) == nil {
			committed = true
			os.Remove(tmpName)
			return info, nil
		}
		s.log.Warn("replacing a corrupt blob with a verified upload", "digest", d)
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	if err := os.Chmod(tmpName, 0o444); err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	committed = true
	if err := syncDir(filepath.Dir(final)); err != nil {
		return Info{}, fmt.Errorf("artifact store: fsync dir: %w", err)
	}
	return info, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Stat returns a blob's size (ErrNotFound if absent). It does not read the
// content; Verify does.
func (s *Store) Stat(ctx context.Context, d Digest) (Info, error) {
	d, err := ParseDigest(string(d))
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return Info{}, fmt.Errorf("artifact store: %w", err)
	}
	return Info{Digest: d, Size: st.Size()}, nil
}

// Has reports whether a blob is stored.
func (s *Store) Has(ctx context.Context, d Digest) (bool, error) {
	_, err := s.Stat(ctx, d)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Open returns a reader of a blob that checks the digest when it reaches
// the end: the final Read returns ErrCorrupt instead of io.EOF if the
// bytes changed on disk.
func (s *Store) Open(ctx context.Context, d Digest) (io.ReadCloser, Info, error) {
	d, err := ParseDigest(string(d))
	if err != nil {
		return nil, Info{}, err
	}
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Info{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("artifact store: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, Info{}, fmt.Errorf("artifact store: %w", err)
	}
	return &verifyReader{ctx: ctx, f: f, h: sha256.New(), want: d}, Info{Digest: d, Size: st.Size()}, nil
}

// Verify reads a whole blob and checks its digest.
func (s *Store) Verify(ctx context.Context, d Digest) error {
	d, err := ParseDigest(string(d))
	if err != nil {
		return err
	}
	return s.verifyFile(ctx, s.path(d), d)
}

func (s *Store) verifyFile(ctx context.Context, path string, d Digest) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	vr := &verifyReader{ctx: ctx, f: f, h: sha256.New(), want: d}
	defer vr.Close()
	_, err = io.Copy(io.Discard, vr)
	return err
}

// ReadAll reads a whole (small) blob, verified; blobs over limit bytes
// fail with ErrTooLarge.
func (s *Store) ReadAll(ctx context.Context, d Digest, limit int64) ([]byte, error) {
	rc, info, err := s.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if info.Size > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrTooLarge, d, info.Size, limit)
	}
	return io.ReadAll(rc)
}

type verifyReader struct {
	ctx  context.Context
	f    *os.File
	h    hash.Hash
	want Digest
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if err := v.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digestOf(v.h); got != v.want {
			return n, fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, v.want, got)
		}
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.f.Close() }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// errReader remembers the error of the reader it wraps, so a failed read
// (the client's fault) can be told from a failed write (the server's).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
