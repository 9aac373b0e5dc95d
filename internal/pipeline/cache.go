package pipeline

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// The result cache keeps a run's output (the batches its sinks received)
// under <data-dir>/pipeline-cache/<key>/ as Arrow IPC stream files plus a
// meta.json, written to a temporary directory and renamed into place, so
// an entry is either complete or absent.

const cacheMeta = "meta.json"

func cacheDir(dataDir string) string {
	return filepath.Join(dataDir, "pipeline-cache")
}

// cacheKey is sha256(spec digest, source fingerprint); "" when the source
// cannot be fingerprinted.
func (e *Engine) cacheKey(ctx context.Context, plan *Plan, src Source) (string, error) {
	fp, ok := src.(Fingerprinter)
	if !ok {
		return "", nil
	}
	f, err := fp.Fingerprint(ctx)
	if err != nil {
		return "", fmt.Errorf("source fingerprint: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "kiln-pipeline-cache-v1\x00%s\x00%s", plan.Digest, f)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// cacheEntry is a stored result's meta.json.
type cacheEntry struct {
	Key     string        `json:"key"`
	RunID   string        `json:"run_id"`
	Created time.Time     `json:"created"`
	TTL     time.Duration `json:"ttl_ns"`
	Rows    int64         `json:"rows"`
	Batches int64         `json:"batches"`
	Parts   []string      `json:"parts"`
	// DeadParts hold the dead letters of the run, replayed into the
	// on_error sink on a hit.
	DeadParts []string `json:"dead_parts,omitempty"`

	dir string
}

type resultCache struct {
	dir string
	now func() time.Time
}

// lookup returns the live entry for key; an expired or unreadable entry is
// removed and reported as a miss.
func (c *resultCache) lookup(key string, log *slog.Logger) (*cacheEntry, bool) {
	dir := filepath.Join(c.dir, key)
	b, err := os.ReadFile(filepath.Join(dir, cacheMeta))
	if err != nil {
		return nil, false
	}
	var e cacheEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Key != key {
		log.Warn("result cache: removing an unreadable entry", "key", key)
		_ = os.RemoveAll(dir)
		return nil, false
	}
	if !c.now().Before(e.Created.Add(e.TTL)) {
		log.Info("result cache: entry expired, removing it", "key", key, "created", e.Created, "ttl", e.TTL)
		_ = os.RemoveAll(dir)
		return nil, false
	}
	for _, p := range append(append([]string(nil), e.Parts...), e.DeadParts...) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			log.Warn("result cache: removing an incomplete entry", "key", key)
			_ = os.RemoveAll(dir)
			return nil, false
		}
	}
	e.dir = dir
	return &e, true
}

func (c *resultCache) writer(key string, ttl time.Duration, runID string) (*cacheWriter, error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(c.dir, ".tmp-"+runID+"-")
	if err != nil {
		return nil, err
	}
	return &cacheWriter{c: c, tmp: tmp, meta: cacheEntry{Key: key, RunID: runID, TTL: ttl},
		out: partWriter{prefix: "part"}, dead: partWriter{prefix: "dead"}}, nil
}

// cacheWriter is the internal sink that stores a run's output; its
// dead letters (what the on_error sink received) are stored beside it.
type cacheWriter struct {
	c    *resultCache
	tmp  string
	meta cacheEntry

	mu   sync.Mutex
	out  partWriter
	dead partWriter
}

// partWriter writes batches as Arrow IPC stream files, a new file at each
// change of schema.
type partWriter struct {
	prefix string
	f      *os.File
	bw     *bufio.Writer
	w      *ipc.Writer
	schema *arrow.Schema
}

func (p *partWriter) closePart() error {
	if p.w == nil {
		return nil
	}
	err := p.w.Close()
	if ferr := p.bw.Flush(); err == nil {
		err = ferr
	}
	if serr := p.f.Sync(); err == nil {
		err = serr
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.w, p.f, p.bw = nil, nil, nil
	return err
}

func (p *partWriter) write(dir string, parts *[]string, b Batch) error {
	if p.w == nil || !p.schema.Equal(b.Schema()) {
		if err := p.closePart(); err != nil {
			return err
		}
		name := fmt.Sprintf("%s-%05d.arrows", p.prefix, len(*parts))
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		p.f, p.bw = f, bufio.NewWriterSize(f, 1<<20)
		p.w = ipc.NewWriter(p.bw, ipc.WithSchema(b.Schema()))
		p.schema = b.Schema()
		*parts = append(*parts, name)
	}
	return p.w.Write(b)
}

// Write appends b to the stored output.
func (w *cacheWriter) Write(_ context.Context, b Batch) ([]RowError, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.out.write(w.tmp, &w.meta.Parts, b); err != nil {
		return nil, err
	}
	w.meta.Rows += b.NumRows()
	w.meta.Batches++
	return nil, nil
}

// deadLetters wraps the on_error sink so that what it writes is stored too.
func (w *cacheWriter) deadLetters(dlq Sink) Sink { return &teeSink{Sink: dlq, w: w} }

type teeSink struct {
	Sink
	w *cacheWriter
}

func (t *teeSink) Write(ctx context.Context, b Batch) ([]RowError, error) {
	rej, err := t.Sink.Write(ctx, b)
	if err != nil {
		return rej, err
	}
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	if err := t.w.dead.write(t.w.tmp, &t.w.meta.DeadParts, b); err != nil {
		return rej, fmt.Errorf("result cache: %w", err)
	}
	return rej, nil
}

// Close stores the entry (runErr nil) or discards it.
func (w *cacheWriter) Close(_ context.Context, runErr error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.out.closePart()
	if derr := w.dead.closePart(); err == nil {
		err = derr
	}
	if runErr != nil || err != nil {
		_ = os.RemoveAll(w.tmp)
		return err
	}
	w.meta.Created = w.c.now().UTC()
	b, err := json.MarshalIndent(w.meta, "", "  ")
	if err != nil {
		_ = os.RemoveAll(w.tmp)
		return err
	}
	if err := writeFileSync(filepath.Join(w.tmp, cacheMeta), b); err != nil {
		_ = os.RemoveAll(w.tmp)
		return err
	}
	final := filepath.Join(w.c.dir, w.meta.Key)
	_ = os.RemoveAll(final)
	if err := os.Rename(w.tmp, final); err != nil {
		_ = os.RemoveAll(w.tmp)
		return err
	}
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cacheSource replays a stored result.
type cacheSource struct {
	dir   string
	parts []string
}

func (s *cacheSource) Read(ctx context.Context, emit EmitFunc) error {
	for _, p := range s.parts {
		if err := s.readPart(ctx, filepath.Join(s.dir, p), emit); err != nil {
			return err
		}
	}
	return nil
}

func (s *cacheSource) readPart(ctx context.Context, path string, emit EmitFunc) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := ipc.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("cached result %s: %w", filepath.Base(path), err)
	}
	defer r.Release()
	for r.Next() {
		if err := emit(ctx, r.RecordBatch(), nil); err != nil {
			return err
		}
	}
	if err := r.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("cached result %s: %w", filepath.Base(path), err)
	}
	return nil
}

func (s *cacheSource) Close() error { return nil }

// PruneCache removes expired entries and abandoned temporary directories
// (older than a day) from the result cache.
func (e *Engine) PruneCache(log *slog.Logger) error {
	c := &resultCache{dir: cacheDir(e.DataDir), now: e.now}
	ents, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range ents {
		name := de.Name()
		if len(name) > 5 && name[:5] == ".tmp-" {
			if info, err := de.Info(); err == nil && c.now().Sub(info.ModTime()) > 24*time.Hour {
				_ = os.RemoveAll(filepath.Join(c.dir, name))
			}
			continue
		}
		c.lookup(name, log)
	}
	return nil
}
