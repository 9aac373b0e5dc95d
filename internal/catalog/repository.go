// Package catalog says which models exist and where their files are. The
// Repository catalog reads a Triton-like model repository directory:
//
//	<root>/<name>/config.yaml          optional, strict
//	<root>/<name>/<version>/model.onnx numeric version directories
//
// A later registry catalog will resolve names from the model registry.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/internal/config"
)

// ErrNotFound marks an unknown model.
var ErrNotFound = errors.New("model not found")

// Model is one model as the catalog sees it. Err is set when the model's
// directory or config is broken; the model is then listed but cannot load.
type Model struct {
	Name   string
	Dir    string
	Config *config.Model
	// Versions are every numeric version directory found, ascending.
	Versions []Version
	Err      error
}

// Version is one version directory and the model file chosen in it.
type Version struct {
	Number int64
	// Path is the model file; empty when none was found (Err says why).
	Path    string
	Backend string
	Err     error
}

// modelFiles maps known model file names to the backend that reads them.
var modelFiles = []struct{ file, backend string }{
	{"model.onnx", "onnx"},
	{"model.fake.json", "fake"},
}

// Repository is a catalog over a model repository directory.
type Repository struct {
	root string
}

// NewRepository returns a catalog over root.
func NewRepository(root string) *Repository { return &Repository{root: root} }

// Root is the repository directory.
func (r *Repository) Root() string { return r.root }

// List returns the names of every model directory, sorted.
func (r *Repository) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("model repository %q: %w", r.root, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || !config.ValidName(e.Name()) {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// Get reads one model's directory. An unknown name is ErrNotFound; a
// broken model is returned with Err set.
func (r *Repository) Get(ctx context.Context, name string) (*Model, error) {
	if !config.ValidName(name) {
		return nil, fmt.Errorf("%w: invalid model name %q", ErrNotFound, name)
	}
	root, err := os.OpenRoot(r.root)
	if err != nil {
		return nil, fmt.Errorf("model repository %q: %w", r.root, err)
	}
	defer root.Close()
	st, err := root.Stat(name)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	m := &Model{Name: name, Dir: filepath.Join(r.root, name)}
	cfgData, err := root.ReadFile(filepath.Join(name, "config.yaml"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m.Config = &config.Model{}
	case err != nil:
		m.Err = fmt.Errorf("config.yaml: %w", err)
		m.Config = &config.Model{}
	default:
		cfg, perr := config.ParseModel(cfgData)
		if perr != nil {
			m.Err = fmt.Errorf("config.yaml: %w", perr)
			m.Config = &config.Model{}
		} else {
			m.Config = cfg
			if cfg.Name != "" && cfg.Name != name {
				m.Err = fmt.Errorf("config.yaml: name %q does not match the directory %q", cfg.Name, name)
			}
		}
	}
	entries, err := fs.ReadDir(root.FS(), name)
	if err != nil {
		m.Err = errors.Join(m.Err, err)
		return m, nil
	}
	for _, e := range entries {
		n, ok := versionNumber(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		m.Versions = append(m.Versions, r.version(root, name, n, e.Name()))
	}
	sort.Slice(m.Versions, func(i, j int) bool { return m.Versions[i].Number < m.Versions[j].Number })
	if len(m.Versions) == 0 && m.Err == nil {
		m.Err = errors.New("no numeric version directory (expected <model>/1/model.onnx)")
	}
	return m, nil
}

func (r *Repository) version(root *os.Root, name string, n int64, dir string) Version {
	v := Version{Number: n}
	for _, mf := range modelFiles {
		rel := filepath.Join(name, dir, mf.file)
		st, err := root.Stat(rel)
		if err != nil {
			continue
		}
		if !st.Mode().IsRegular() {
			v.Err = fmt.Errorf("%s is not a regular file", mf.file)
			return v
		}
		v.Path = filepath.Join(r.root, rel)
		v.Backend = mf.backend
		return v
	}
	names := make([]string, len(modelFiles))
	for i, mf := range modelFiles {
		names[i] = mf.file
	}
	v.Err = fmt.Errorf("version %d has no model file (looked for %s)", n, strings.Join(names, ", "))
	return v
}

// versionNumber accepts Triton's version directory names: decimal digits
// without a leading zero.
func versionNumber(s string) (int64, bool) {
	if s == "" || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}
