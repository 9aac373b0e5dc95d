// Package pipeline is Kiln's streaming data-pipeline engine: a Source emits
// Arrow record batches, Transforms rewrite them, Sinks write them, with
// bounded channels (back-pressure), per-batch acknowledgement, dead-lettering
// of bad rows, a result cache and run records. Components (sources,
// transforms, sinks) are registered with a spec in init() by the packages
// under internal/connectors and looked up by name when a spec is parsed.
package pipeline

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Batch is the unit of data between stages: one Arrow record batch.
//
// References follow the Arrow idiom "whoever retains, releases": emit
// retains the batch it is given for as long as the engine needs it, so a
// source releases its own reference when emit returns (or never — with
// Go's allocator an unreleased reference only costs garbage collection,
// while a double release corrupts the batch). Transforms and sinks must
// not release the batch they are given; a stage that keeps it beyond the
// call must Retain it (and Release it when done). A transform returns a
// new reference as out (or in itself, unchanged).
type Batch = arrow.RecordBatch

// AckFunc is called exactly once per emitted batch: with nil after every
// sink has written the batch (or its rows were dead-lettered), or with the
// error that stopped it. Stream sources acknowledge upstream in it (at-least-
// once delivery); file and database sources may pass nil.
type AckFunc func(ctx context.Context, err error) error

// EmitFunc hands one batch to the engine. It blocks while downstream is full
// (back-pressure) and returns ctx's error when the run is cancelled.
type EmitFunc func(ctx context.Context, b Batch, ack AckFunc) error

// Source produces the run's input.
type Source interface {
	// Read emits batches until the input is exhausted (then returns nil)
	// or ctx ends. A source that can be read only once (a stream) says so
	// through Rereadable.
	Read(ctx context.Context, emit EmitFunc) error
	Close() error
}

// Fingerprinter is implemented by sources whose input can be identified
// without reading it all (file size+mtime+content hash, query text and
// parameters); the result cache keys on it. Sources without it are never
// cached.
type Fingerprinter interface {
	Fingerprint(ctx context.Context) (string, error)
}

// Rereadable reports whether Read may be called again to read the same data
// (needed to fit a transform on the data before the main pass). Sources that
// do not implement it are assumed rereadable.
type Rereadable interface {
	Rereadable() bool
}

// Task is one independent part of a source (a file, a Parquet row-group
// range, a key range) for distributed runs. Spec is the component's own
// description of the part, JSON-encoded; Weight is an estimate of its size
// (bytes or rows) for progress.
type Task struct {
	ID     string `json:"id"`
	Spec   []byte `json:"spec"`
	Weight int64  `json:"weight,omitempty"`
}

// Splitter is implemented by sources that can be split into tasks.
type Splitter interface {
	Split(ctx context.Context) ([]Task, error)
	// OpenTask returns a source that reads just that task's part.
	OpenTask(ctx context.Context, t Task) (Source, error)
}

// RowError names one input row a stage could not process and why. Row
// indexes the batch the stage was given.
type RowError struct {
	Row int
	Err error
}

// Transform rewrites batches. Rows it cannot process are returned in rej
// (they go to the dead-letter sink, or stop the run, by config) and are not
// part of out. A nil out with no error drops the whole batch. err stops the
// run.
type Transform interface {
	Apply(ctx context.Context, in Batch) (out Batch, rej []RowError, err error)
}

// Fitter is implemented by transforms that learn parameters from the data
// (standardize, min_max without given parameters). The engine makes a
// fitting pass over the source (through the transforms before this one)
// calling Fit for every batch, then FitDone, before the main pass. Params
// returns what was learnt (saved with the run so that scoring can reuse it).
type Fitter interface {
	NeedsFit() bool
	Fit(ctx context.Context, in Batch) error
	FitDone(ctx context.Context) error
	Params() map[string]any
}

// Ordered is implemented by transforms that must see batches in order and
// one at a time (dedupe, sample with state); others may run in parallel.
type Ordered interface {
	Ordered() bool
}

// Sink writes the run's output. Write may be called from one goroutine at a
// time. Close(ctx, nil) commits what was written (a file sink renames its
// temporary file into place); Close(ctx, err) with the run's error discards
// what can be discarded. Rows the sink refused individually come back in rej.
type Sink interface {
	Write(ctx context.Context, b Batch) (rej []RowError, err error)
	Close(ctx context.Context, runErr error) error
}

// Env is what a component may use from the process that runs the pipeline.
type Env struct {
	Logger *slog.Logger
	// DataDir is Kiln's data directory (cache, run state).
	DataDir string
	// Registry is the DSN of the registry database the process uses
	// (sqlite:PATH or postgres://...); "" means SQLite at
	// <DataDir>/registry.db. Components that write to the registry use it
	// unless their spec names another database.
	Registry string
	// Models is the in-process model server when the pipeline runs inside
	// `kiln serve` (a *serving.Manager); nil otherwise. The predict
	// transform asserts the interface it needs.
	Models any
	// RunID identifies the run being built ("" when only validating).
	RunID string
	// BatchSize is the preferred number of rows per batch
	// (settings.batch_size); sources use it when > 0.
	BatchSize int
	// Lineage records the model versions the run feeds (never nil when
	// the engine builds a run; may be nil when only validating).
	Lineage Lineage
	// Task is the id of the distributed task being run ("" otherwise);
	// sinks use it to name per-task outputs.
	Task string
}

// The interfaces below are optional extensions of the contract (added
// after the first version; components may implement them).

// Progresser is implemented by sources that know how far they have read:
// done and total in the same unit (bytes for files), total 0 when unknown.
// The engine polls it from another goroutine, so it must be safe for
// concurrent use. It drives the percentage of the progress display.
type Progresser interface {
	Progress() (done, total int64)
}

// ParamLoader is implemented by Fitter transforms that can take parameters
// learnt by an earlier run (what Params returned) instead of fitting again:
// `settings: {params_from_run: RUN_ID}` makes the engine call LoadParams
// before the run, after which NeedsFit must report false.
type ParamLoader interface {
	LoadParams(params map[string]any) error
}

// Lineage records which model versions a run fed (the predict transform
// and the registry sink report them); the run record keeps the list.
type Lineage interface {
	UsedModel(name, version string)
}

// ColumnUser is implemented by transforms that can tell which columns
// Apply reads and which it writes (replaces, adds or removes). A name
// ending in "*" stands for every column that starts with the rest ("*"
// alone: every column). Both nil means unknown. The engine uses it to fit
// consecutive Fitters in one pass over the source: a Fitter joins the
// pass of the Fitters before it when it reads none of the columns they
// write and they keep every row (RowKeeper).
type ColumnUser interface {
	Columns() (reads, writes []string)
}

// RowKeeper is implemented by transforms whose Apply returns every row it
// is given, in order, and rejects none, once fitted on data that holds
// those rows (standardize, min_max; not filter, sample or dedupe).
type RowKeeper interface {
	KeepsRows() bool
}

// ColumnsOverlap reports whether a column named by a may be one named by
// b, where either may be a prefix pattern ending in "*".
func ColumnsOverlap(a, b string) bool {
	pa, wa := strings.CutSuffix(a, "*")
	pb, wb := strings.CutSuffix(b, "*")
	switch {
	case wa && wb:
		return strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa)
	case wa:
		return strings.HasPrefix(b, pa)
	case wb:
		return strings.HasPrefix(a, pb)
	}
	return a == b
}

// SourceReject is one input record a source could not decode: a CSV
// record with the wrong number of fields or a field that does not parse as
// its column's type, a line that is not JSON, a JSON value of the wrong
// type, a message that cannot be decoded.
type SourceReject struct {
	// Record is the record's raw text (a CSV record, a JSON value, a
	// message body), at most MaxRejectRecord bytes of it (CopyRecord). The
	// engine owns it once handed over: the source must not reuse it.
	Record []byte
	// Input names what the record was read from: a file path, the URL of
	// a page, a subject.
	Input string
	// Line is the 1-based line of Input where the record starts (0: the
	// input is not read by lines).
	Line int64
	// Index is the record's 1-based number in Input (a CSV or NDJSON
	// record, an element of a JSON array, the record of a page, a
	// message's stream sequence); 0 when unknown.
	Index int64
	// Err says why the record was refused.
	Err error
}

// Location is where the record is: "INPUT:LINE", else "INPUT#INDEX",
// else INPUT.
func (r SourceReject) Location() string {
	switch {
	case r.Line > 0:
		return r.Input + ":" + strconv.FormatInt(r.Line, 10)
	case r.Index > 0:
		return r.Input + "#" + strconv.FormatInt(r.Index, 10)
	}
	return r.Input
}

// MaxRejectRecord bounds the raw text kept of a rejected record (an
// unterminated quote can make the rest of a file one record).
const MaxRejectRecord = 1 << 20

// CopyRecord returns a copy of a record's raw text for a SourceReject,
// cut to MaxRejectRecord bytes.
func CopyRecord(b []byte) []byte {
	return append([]byte(nil), b[:min(len(b), MaxRejectRecord)]...)
}

// RejectFunc takes records a source could not decode. It returns nil when
// the source should read on (the records are on their way to the on_error
// sink, or were logged and dropped), or the error that ends the run
// (on_error policy stop, cancellation), which Read then returns. Like
// emit, it is called from one goroutine at a time and may block while the
// dead-letter sink is behind. ack, when not nil, is called exactly once,
// also when RejectFunc returns an error: with nil once the records were
// written to the on_error sink (or dropped), else with the error that
// stopped them (a stream source acknowledges the messages that carried
// them in it, so a message that cannot be decoded is dead-lettered, then
// acknowledged, never redelivered forever).
type RejectFunc func(ctx context.Context, recs []SourceReject, ack AckFunc) error

// Rejecter is implemented by sources that can set aside records they
// cannot decode and read on. The engine calls SetReject before Read (and
// SetReject(nil) after it); the records then go where rows a transform
// rejects go: to the on_error sink as dead letters with their raw text and
// location, logged and dropped, or the end of the run, by the on_error
// policy. Without a RejectFunc (nil, or a source that does not implement
// Rejecter) such a record fails Read.
type Rejecter interface {
	SetReject(f RejectFunc)
}
