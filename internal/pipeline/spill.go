package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// A spill holds the batches a fitting pass produced (after the transforms
// before the fitters), so that the next pass replays them instead of
// reading the source again and re-running those transforms. It is written
// as uncompressed Arrow IPC streams (one per schema) into temporary files
// that are unlinked as soon as they are created where the system allows
// it (Unix): the data lives only as long as the open file, so it goes
// away with the process even after a kill -9, and a spill never shows up
// in a directory listing. Elsewhere the files are removed on Close.

// spillDir is where a run's spill files go: <data dir>/pipeline-spill, or
// the system's temporary directory when the engine has no data dir.
func spillDir(dataDir string) string {
	if dataDir == "" {
		return filepath.Join(os.TempDir(), "kiln-pipeline-spill")
	}
	return filepath.Join(dataDir, "pipeline-spill")
}

// spillPart is one IPC stream of batches sharing a schema.
type spillPart struct {
	f       *os.File
	name    string // still to remove on Close ("" when already unlinked)
	size    int64
	batches int64
}

// spill is the Sink a fitting pass writes its batches into; Source turns
// what was written into the next pass's source.
type spill struct {
	dir   string
	parts []*spillPart

	cur    *spillPart
	bw     *bufio.Writer
	w      *ipc.Writer
	schema *arrow.Schema
	count  countingWriter
	rows   int64
	closed bool
}

var _ Sink = (*spill)(nil)

func newSpill(dir string) *spill { return &spill{dir: dir} }

// countingWriter counts what goes through to the file.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Write appends b; a batch whose schema differs from the previous one
// starts a new part.
func (s *spill) Write(_ context.Context, b Batch) ([]RowError, error) {
	if s.closed {
		return nil, errors.New("spill: write after close")
	}
	if s.w == nil || !s.schema.Equal(b.Schema()) {
		if err := s.finishPart(); err != nil {
			return nil, err
		}
		if err := s.startPart(b.Schema()); err != nil {
			return nil, err
		}
	}
	if err := s.w.Write(b); err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	s.cur.batches++
	s.rows += b.NumRows()
	return nil, nil
}

func (s *spill) startPart(schema *arrow.Schema) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	f, err := os.CreateTemp(s.dir, "spill-*.arrows")
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	p := &spillPart{f: f, name: f.Name()}
	if os.Remove(f.Name()) == nil {
		p.name = ""
	}
	s.parts = append(s.parts, p)
	s.cur, s.schema = p, schema
	s.count = countingWriter{w: f}
	s.bw = bufio.NewWriterSize(&s.count, 1<<20)
	s.w = ipc.NewWriter(s.bw, ipc.WithSchema(schema))
	return nil
}

func (s *spill) finishPart() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	if ferr := s.bw.Flush(); err == nil {
		err = ferr
	}
	s.cur.size = s.count.n
	s.w, s.bw, s.cur = nil, nil, nil
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	return nil
}

// Close ends writing (the engine calls it when the pass is over); the
// files stay open for Source until release.
func (s *spill) Close(context.Context, error) error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.finishPart()
}

// release closes and removes every part.
func (s *spill) release() {
	_ = s.finishPart()
	s.closed = true
	for _, p := range s.parts {
		p.close()
	}
	s.parts = nil
}

// close closes and removes the part's file (once).
func (p *spillPart) close() {
	if p.f == nil {
		return
	}
	_ = p.f.Close()
	if p.name != "" {
		_ = os.Remove(p.name)
	}
	p.f = nil
}

// source replays what was written, in order. The spill must be closed.
// With consume, each part is released as soon as it has been read (the
// source can then be read once): the system frees its pages while the
// rest of the run goes on.
func (s *spill) source(consume bool) *spillSource {
	src := &spillSource{parts: s.parts, consume: consume}
	for _, p := range s.parts {
		src.total += p.size
	}
	return src
}

// spillSource is a Source over a closed spill's parts.
type spillSource struct {
	parts   []*spillPart
	consume bool
	total   int64
	done    atomic.Int64
	mu      sync.Mutex // one Read at a time
}

var (
	_ Source     = (*spillSource)(nil)
	_ Progresser = (*spillSource)(nil)
)

func (s *spillSource) Read(ctx context.Context, emit EmitFunc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done.Store(0)
	for _, p := range s.parts {
		if p.f == nil {
			return errors.New("spill: read again after it was consumed")
		}
		if err := s.readPart(ctx, p, emit); err != nil {
			return err
		}
		if s.consume {
			p.close()
		}
	}
	return nil
}

// progressReader counts bytes read into done.
type progressReader struct {
	r    io.Reader
	done *atomic.Int64
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done.Add(int64(n))
	return n, err
}

func (s *spillSource) readPart(ctx context.Context, p *spillPart, emit EmitFunc) error {
	r, err := ipc.NewReader(bufio.NewReaderSize(progressReader{r: io.NewSectionReader(p.f, 0, p.size), done: &s.done}, 1<<20))
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	defer r.Release()
	for r.Next() {
		if err := emit(ctx, r.RecordBatch(), nil); err != nil {
			return err
		}
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	return nil
}

// Progress reports the bytes replayed of the spill's size.
func (s *spillSource) Progress() (done, total int64) { return s.done.Load(), s.total }

// Close leaves the files to the spill (released by the engine).
func (s *spillSource) Close() error { return nil }
