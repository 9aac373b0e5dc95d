package onnx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
)

// LibraryEnv is the environment variable that names the ONNX Runtime
// shared library; it wins over Options.LibraryPath and the search.
const LibraryEnv = "KILN_ORT_LIB"

// LibraryRelPath is where scripts/fetch-ort.sh puts the library, relative
// to the repository root. The search tries it under the executable's
// directory and the working directory and each of their parents.
const LibraryRelPath = "third_party/onnxruntime/libonnxruntime.so.1"

// fixHint tells an operator how to make the library available.
const fixHint = "run scripts/fetch-ort.sh (it installs " + LibraryRelPath + ") or set " + LibraryEnv + " to a libonnxruntime.so.1 (ONNX Runtime 1.30)"

// env is the process-wide ONNX Runtime environment. ORT allows one per
// process; it is created on first use and kept for the process lifetime.
// A failed initialisation is reported and retried by the next Load.
var env struct {
	mu   sync.Mutex
	path string // library the environment was created from; "" before
}

// ensureEnv initialises the ONNX Runtime environment once per process
// from the library LibraryPath resolves to. Errors wrap
// inference.ErrUnavailable and say how to fix them.
func ensureEnv(explicit string) (string, error) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path != "" {
		return env.path, nil
	}
	if ort.IsInitialized() { // someone else in this process did it
		env.path = "(initialised elsewhere)"
		return env.path, nil
	}
	path, err := LibraryPath(explicit)
	if err != nil {
		return "", err
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return "", fmt.Errorf("%w: cannot initialise ONNX Runtime from %s: %v; %s", inference.ErrUnavailable, path, err, fixHint)
	}
	env.path = path
	return path, nil
}

// RuntimeVersion initialises the ONNX Runtime environment if needed (as
// Load does) and returns the library's version, e.g. "1.30.0".
func RuntimeVersion(opts Options) (string, error) {
	if _, err := ensureEnv(opts.LibraryPath); err != nil {
		return "", err
	}
	return ort.GetVersion(), nil
}

// LibraryPath resolves the ONNX Runtime shared library: explicit if not
// empty (the server passes its resolved --ort-lib / KILN_ORT_LIB setting),
// else the file named by $KILN_ORT_LIB if set, else the first
// LibraryRelPath found under the executable's directory or the working
// directory or one of their parents. A missing library is an error
// wrapping inference.ErrUnavailable that says how to fix it.
func LibraryPath(explicit string) (string, error) {
	if explicit != "" {
		if err := isFile(explicit); err != nil {
			return "", fmt.Errorf("%w: ONNX Runtime library %s: %v; %s", inference.ErrUnavailable, explicit, err, fixHint)
		}
		return explicit, nil
	}
	if p := os.Getenv(LibraryEnv); p != "" {
		if err := isFile(p); err != nil {
			return "", fmt.Errorf("%w: ONNX Runtime library %s=%s: %v; %s", inference.ErrUnavailable, LibraryEnv, p, err, fixHint)
		}
		return p, nil
	}
	var roots []string
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			roots = append(roots, filepath.Dir(exe))
		}
	}
	if wd, err := os.Getwd(); err == nil {
		roots = append(roots, wd)
	}
	if p, ok := searchUp(roots, LibraryRelPath); ok {
		return p, nil
	}
	return "", fmt.Errorf("%w: ONNX Runtime library not found (%s unset; no %s in or above the executable's or the working directory); %s",
		inference.ErrUnavailable, LibraryEnv, LibraryRelPath, fixHint)
}

// searchUp looks for rel under each root and each of its parents.
func searchUp(roots []string, rel string) (string, bool) {
	seen := map[string]bool{}
	for _, dir := range roots {
		for {
			if seen[dir] {
				break
			}
			seen[dir] = true
			p := filepath.Join(dir, rel)
			if isFile(p) == nil {
				return p, true
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", false
}

func isFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// Init initialises the ONNX Runtime environment now rather than at the
// first Load, so its memory is not charged to the first model loaded.
func (b *Backend) Init() error {
	_, err := ensureEnv(b.opts.LibraryPath)
	return err
}
