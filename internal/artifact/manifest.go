package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// ManifestKind marks a blob as a directory manifest.
const ManifestKind = "kiln.directory.v1"

// Limits of a manifest, checked before anything is allocated for it.
const (
	maxManifestSize  = 8 << 20
	maxManifestFiles = 100000
	maxPathLen       = 1024
)

// Manifest lists the files of a directory artifact. Paths are relative,
// slash-separated and clean; the list is sorted by path.
type Manifest struct {
	Kind  string `json:"kind"`
	Files []File `json:"files"`
}

// File is one regular file of a directory artifact.
type File struct {
	Path   string `json:"path"`
	Digest Digest `json:"digest"`
	Size   int64  `json:"size"`
	Mode   uint32 `json:"mode"`
}

// TotalSize is the sum of the file sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// DecodeManifest parses and validates a manifest: a known kind, at most
// 100000 files, clean relative paths without "..", no duplicates and no
// file that is also a parent directory of another, valid digests, sizes
// >= 0 and permission bits only.
func DecodeManifest(data []byte) (*Manifest, error) {
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%w: manifest over %d bytes", ErrInvalid, maxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: manifest: trailing data", ErrInvalid)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) validate() error {
	if m.Kind != ManifestKind {
		return fmt.Errorf("%w: manifest kind %q, want %q", ErrInvalid, m.Kind, ManifestKind)
	}
	if len(m.Files) > maxManifestFiles {
		return fmt.Errorf("%w: manifest lists more than %d files", ErrInvalid, maxManifestFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	for i, f := range m.Files {
		if err := checkRelPath(f.Path); err != nil {
			return fmt.Errorf("file %d: %w", i, err)
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: manifest lists %q twice", ErrInvalid, f.Path)
		}
		seen[f.Path] = true
		d, err := ParseDigest(string(f.Digest))
		if err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
		if d != f.Digest {
			return fmt.Errorf("%w: file %q: digest not in canonical form", ErrInvalid, f.Path)
		}
		if f.Size < 0 {
			return fmt.Errorf("%w: file %q: negative size", ErrInvalid, f.Path)
		}
		if f.Mode&^0o777 != 0 {
			return fmt.Errorf("%w: file %q: mode %o has more than permission bits", ErrInvalid, f.Path, f.Mode)
		}
	}
	for p := range seen {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return fmt.Errorf("%w: %q is both a file and a directory", ErrInvalid, dir)
			}
		}
	}
	return nil
}

// checkRelPath accepts clean, relative, slash-separated paths that stay
// inside their root.
func checkRelPath(p string) error {
	switch {
	case p == "" || len(p) > maxPathLen:
		return fmt.Errorf("%w: path %q: empty or longer than %d bytes", ErrInvalid, p, maxPathLen)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("%w: path %q: backslash or NUL", ErrInvalid, p)
	case path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("%w: path %q is not a clean relative path inside the artifact", ErrInvalid, p)
	}
	return nil
}

// encode returns the canonical JSON of a manifest (files sorted by path).
func (m *Manifest) encode() ([]byte, error) {
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	if err := m.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// PutManifest validates m, checks that every blob it lists is stored with
// the listed size, and stores the manifest itself.
func (s *Store) PutManifest(ctx context.Context, m *Manifest) (Info, error) {
	data, err := m.encode()
	if err != nil {
		return Info{}, err
	}
	for _, f := range m.Files {
		info, err := s.Stat(ctx, f.Digest)
		if err != nil {
			return Info{}, fmt.Errorf("manifest file %q: %w", f.Path, err)
		}
		if info.Size != f.Size {
			return Info{}, fmt.Errorf("%w: manifest file %q: listed as %d bytes, blob has %d", ErrInvalid, f.Path, f.Size, info.Size)
		}
	}
	return s.Put(ctx, bytes.NewReader(data), "", 0)
}

// Manifest reads and decodes a manifest blob; a blob that is not a
// manifest fails with ErrInvalid.
func (s *Store) Manifest(ctx context.Context, d Digest) (*Manifest, error) {
	data, err := s.ReadAll(ctx, d, maxManifestSize)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is not a manifest", ErrInvalid, d)
	}
	if err != nil {
		return nil, err
	}
	return DecodeManifest(data)
}

// IsManifest reports whether a stored blob is a directory manifest.
func (s *Store) IsManifest(ctx context.Context, d Digest) (bool, error) {
	info, err := s.Stat(ctx, d)
	if err != nil {
		return false, err
	}
	if info.Size > maxManifestSize {
		return false, nil
	}
	_, err = s.Manifest(ctx, d)
	if errors.Is(err, ErrInvalid) {
		return false, nil
	}
	return err == nil, err
}

// PutDir stores every regular file under dir and a manifest of them; the
// returned Info is the manifest's digest and the total size of the files.
// Symbolic links and other special files are refused. maxSize > 0 bounds
// the total.
func (s *Store) PutDir(ctx context.Context, dir string, maxSize int64) (Info, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Info{}, fmt.Errorf("artifact directory: %w", err)
	}
	defer root.Close()
	m := &Manifest{Kind: ManifestKind}
	var total int64
	err = fs.WalkDir(root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%w: %s is not a regular file", ErrInvalid, p)
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		limit := int64(0)
		if maxSize > 0 {
			limit = maxSize - total
			if limit <= 0 {
				return fmt.Errorf("%w: directory over %d bytes", ErrTooLarge, maxSize)
			}
		}
		info, err := s.Put(ctx, f, "", limit)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		total += info.Size
		m.Files = append(m.Files, File{Path: p, Digest: info.Digest, Size: info.Size, Mode: uint32(st.Mode().Perm())})
		return nil
	})
	if err != nil {
		return Info{}, fmt.Errorf("artifact directory: %w", err)
	}
	info, err := s.PutManifest(ctx, m)
	if err != nil {
		return Info{}, err
	}
	return Info{Digest: info.Digest, Size: total}, nil
}

// PutTar stores the regular files of a tar stream and a manifest of them
// (directory entries are implied; links and devices are refused). It
// returns the manifest's digest and the total file size; maxSize > 0
// bounds the total.
func (s *Store) PutTar(ctx context.Context, r io.Reader, maxSize int64) (Info, error) {
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: r})
	m := &Manifest{Kind: ManifestKind}
	var total int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Info{}, fmt.Errorf("%w: tar: %w", ErrInvalid, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return Info{}, fmt.Errorf("%w: tar entry %q: only regular files and directories are accepted", ErrInvalid, hdr.Name)
		}
		if err := checkRelPath(name); err != nil {
			return Info{}, fmt.Errorf("tar entry: %w", err)
		}
		if len(m.Files) >= maxManifestFiles {
			return Info{}, fmt.Errorf("%w: more than %d files", ErrInvalid, maxManifestFiles)
		}
		if maxSize > 0 && total+hdr.Size > maxSize {
			return Info{}, fmt.Errorf("%w: archive files over %d bytes", ErrTooLarge, maxSize)
		}
		info, err := s.Put(ctx, tr, "", 0)
		if err != nil {
			return Info{}, fmt.Errorf("tar entry %q: %w", name, err)
		}
		total += info.Size
		m.Files = append(m.Files, File{Path: name, Digest: info.Digest, Size: info.Size, Mode: uint32(hdr.Mode) & 0o777})
	}
	info, err := s.PutManifest(ctx, m)
	if err != nil {
		return Info{}, err
	}
	return Info{Digest: info.Digest, Size: total}, nil
}

// WriteTar writes a directory artifact as a tar stream, each file
// verified as it is read.
func (s *Store) WriteTar(ctx context.Context, d Digest, w io.Writer) error {
	m, err := s.Manifest(ctx, d)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range m.Files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Path, Typeflag: tar.TypeReg, Size: f.Size, Mode: int64(f.Mode)}); err != nil {
			return err
		}
		if err := s.copyBlob(ctx, f, tw); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (s *Store) copyBlob(ctx context.Context, f File, w io.Writer) error {
	rc, info, err := s.Open(ctx, f.Digest)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	defer rc.Close()
	if info.Size != f.Size {
		return fmt.Errorf("%w: %s: blob has %d bytes, manifest says %d", ErrCorrupt, f.Path, info.Size, f.Size)
	}
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return nil
}

// ExtractDir writes a directory artifact into dest, which must not exist
// or be empty. Every file is verified; writes go through an os.Root so no
// path can leave dest. On error dest may hold a partial tree, which the
// caller removes.
func (s *Store) ExtractDir(ctx context.Context, d Digest, dest string) error {
	m, err := s.Manifest(ctx, d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	if entries, err := os.ReadDir(dest); err != nil {
		return err
	} else if len(entries) > 0 {
		return fmt.Errorf("extract %s: destination %s is not empty", d, dest)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range m.Files {
		if dir := path.Dir(f.Path); dir != "." {
			if err := root.MkdirAll(filepath.FromSlash(dir), 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", f.Path, err)
			}
		}
		out, err := root.OpenFile(filepath.FromSlash(f.Path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(f.Mode|0o600))
		if err != nil {
			return fmt.Errorf("extract %s: %w", f.Path, err)
		}
		err = s.copyBlob(ctx, f, out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
	}
	return nil
}
