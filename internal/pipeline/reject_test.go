package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// test_rejecting is a source of x = 0..rows-1 (batches of batch rows) that
// cannot decode the records with x % every == every-1: it hands them to
// the engine's RejectFunc (input "mem", line x+1, record text "bad X"),
// one call per batch, each with an ack counted in the state like the
// batches'.
type rejSourceConfig struct {
	State string `yaml:"state" required:"true" doc:"test state id"`
	Rows  int    `yaml:"rows"`
	Batch int    `yaml:"batch"`
	Every int    `yaml:"every" doc:"reject every n-th record"`
}

type rejSource struct {
	cfg    *rejSourceConfig
	st     *memState
	reject RejectFunc
}

var (
	_ Rejecter      = (*rejSource)(nil)
	_ Fingerprinter = (*rejSource)(nil)
)

func (s *rejSource) SetReject(f RejectFunc) { s.reject = f }
func (s *rejSource) Close() error           { return nil }
func (s *rejSource) Fingerprint(context.Context) (string, error) {
	return fmt.Sprintf("rej/%d/%d/%s", s.cfg.Rows, s.cfg.Every, s.st.fp), nil
}

func (s *rejSource) ack(ctx context.Context, err error) error {
	if err != nil {
		s.st.ackErrs.Add(1)
	} else {
		s.st.acks.Add(1)
	}
	return nil
}

func (s *rejSource) Read(ctx context.Context, emit EmitFunc) error {
	s.st.reads.Add(1)
	for lo := 0; lo < s.cfg.Rows; lo += s.cfg.Batch {
		hi := min(lo+s.cfg.Batch, s.cfg.Rows)
		b := array.NewInt64Builder(memory.DefaultAllocator)
		var bad []SourceReject
		for x := lo; x < hi; x++ {
			if x%s.cfg.Every == s.cfg.Every-1 {
				bad = append(bad, SourceReject{Record: fmt.Appendf(nil, "bad %d", x), Input: "mem", Line: int64(x + 1), Index: int64(x + 1), Err: fmt.Errorf("bad record %d", x)})
				continue
			}
			b.Append(int64(x))
		}
		col := b.NewArray()
		b.Release()
		if len(bad) > 0 {
			if s.reject == nil {
				col.Release()
				return fmt.Errorf("%s: %v", bad[0].Location(), bad[0].Err)
			}
			if err := s.reject(ctx, bad, s.ack); err != nil {
				col.Release()
				return err
			}
		}
		batch := array.NewRecordBatch(xSchema, []arrow.Array{col}, int64(col.Len()))
		col.Release()
		err := emit(ctx, batch, s.ack)
		batch.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// test_deadletters records what it is given as "_stage|_error|LOCATION|_record"
// (source dead letters) or "_stage|_error|x" (rows a stage rejected).
type deadConfig struct {
	State string `yaml:"state" required:"true"`
}

type deadSink struct{ st *memState }

func (s *deadSink) Write(_ context.Context, b Batch) ([]RowError, error) {
	col := func(name string) int {
		for i, f := range b.Schema().Fields() {
			if f.Name == name {
				return i
			}
		}
		return -1
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	stage := b.Column(col(StageColumn)).(*array.String)
	msg := b.Column(col(ErrorColumn)).(*array.String)
	for i := range int(b.NumRows()) {
		if rc := col(RecordColumn); rc >= 0 {
			re := SourceReject{Input: b.Column(col(InputColumn)).(*array.String).Value(i)}
			if l := b.Column(col(LineColumn)).(*array.Int64); l.IsValid(i) {
				re.Line = l.Value(i)
			}
			if x := b.Column(col(IndexColumn)).(*array.Int64); x.IsValid(i) {
				re.Index = x.Value(i)
			}
			s.st.dlq = append(s.st.dlq, fmt.Sprintf("%s|%s|%s|%s", stage.Value(i), msg.Value(i), re.Location(), b.Column(rc).(*array.String).Value(i)))
			continue
		}
		s.st.dlq = append(s.st.dlq, fmt.Sprintf("%s|%s|%d", stage.Value(i), msg.Value(i), b.Column(col("x")).(*array.Int64).Value(i)))
	}
	return nil, nil
}

func (s *deadSink) Close(context.Context, error) error { return nil }

func init() {
	RegisterSource(SourceSpec{
		Spec: Spec{Name: "test_rejecting", Summary: "in-memory rows, some undecodable", Config: func() any { return &rejSourceConfig{Rows: 20, Batch: 3, Every: 4} }},
		Build: func(_ context.Context, cfg any, _ Env) (Source, error) {
			c := cfg.(*rejSourceConfig)
			return &rejSource{cfg: c, st: stateOf(c.State)}, nil
		},
	})
	RegisterSink(SinkSpec{
		Spec: Spec{Name: "test_deadletters", Summary: "records dead letters", Config: func() any { return &deadConfig{} }},
		Build: func(_ context.Context, cfg any, _ Env) (Sink, error) {
			return &deadSink{st: stateOf(cfg.(*deadConfig).State)}, nil
		},
	})
}

// sourceDead are the dead letters test_rejecting makes of rows [0, n)
// rejecting every 4th.
func sourceDead(n int) []string {
	var out []string
	for x := 3; x < n; x += 4 {
		out = append(out, fmt.Sprintf("source|bad record %d|mem:%d|bad %d", x, x+1, x))
	}
	return out
}

// TestSourceRejects: records the source cannot decode go where rows a
// transform rejects go — dead letters with their location, a warning, or
// the end of the run — and count as the source's rejected rows.
func TestSourceRejects(t *testing.T) {
	tests := []struct {
		name       string
		transforms string
		onError    string
		wantErr    string
		wantDLQ    []string
		warnings   int
	}{
		{"to the dead-letter sink", "", "on_error: {test_deadletters: {state: %[1]s}}", "", sourceDead(20), 0},
		{"with a rejecting transform ordered in parallel", "transforms: [test_filter: {reject: 8}]\nsettings: {ordered: true, parallelism: 3}",
			"on_error: {test_deadletters: {state: %[1]s}}", "", append(sourceDead(20), "transforms[0].test_filter|bad value 8|8"), 0},
		{"through a fitting pass", "transforms: [test_center: {}]", "on_error: {test_deadletters: {state: %[1]s}}", "", sourceDead(20), 0},
		{"continue without a sink logs at most five", "", "on_error: {policy: continue}", "", nil, maxRejectWarnings},
		{"stop by default", "", "", "source rejected a record (on_error policy stop): mem:4: bad record 3", nil, 0},
		{"explicit stop", "", "on_error: {sink: {test_deadletters: {state: %[1]s}}, policy: stop}", "mem:4: bad record 3", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, st := newTestState(t)
			spec := fmt.Sprintf(`source: {test_rejecting: {state: %[1]s, rows: 20, batch: 3, every: 4}}
`+tt.transforms+`
sinks: [{test_sink: {state: %[1]s, id: a}}]
`+tt.onError+"\n", id)
			var logs bytes.Buffer
			e := &Engine{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			rec, err := e.Run(context.Background(), mustParse(t, spec), RunOptions{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if rec.Status != StatusFailed || st.committed["a"] {
					t.Errorf("status %s, committed %v", rec.Status, st.committed)
				}
				if st.ackErrs.Load() == 0 {
					t.Error("the rejected records were not acknowledged with the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			keep := func(i int) bool { return i%4 != 3 }
			if strings.Contains(tt.transforms, "test_filter") {
				keep = func(i int) bool { return i%4 != 3 && i != 8 }
			}
			wantRows := seq(0, 20, keep)
			if strings.Contains(tt.transforms, "test_center") {
				// Centred on the mean of the rows read: 0..19 without
				// 3, 7, 11, 15 and 19, 135/15.
				for i := range wantRows {
					wantRows[i] -= 9
				}
			}
			if got := sorted(st.rows["a"]); !slices.Equal(got, wantRows) {
				t.Errorf("sink got %v, want %v", got, wantRows)
			}
			slices.Sort(st.dlq)
			want := slices.Clone(tt.wantDLQ)
			slices.Sort(want)
			if !slices.Equal(st.dlq, want) {
				t.Errorf("dead letters\n%q\nwant\n%q", st.dlq, want)
			}
			src := rec.Stages[0]
			if src.Stage != "source" || src.RowsRejected != 5 || src.RowsOut != 15 {
				t.Errorf("source stage %+v, want 15 out, 5 rejected", src)
			}
			if rec.RowsIn != 20 || rec.RowsRejected < 5 {
				t.Errorf("run: %d in, %d rejected", rec.RowsIn, rec.RowsRejected)
			}
			if tt.onError != "on_error: {policy: continue}" {
				dlq := rec.Stages[len(rec.Stages)-1]
				if dlq.RowsIn != int64(len(tt.wantDLQ)) {
					t.Errorf("on_error stage %+v, want %d rows", dlq, len(tt.wantDLQ))
				}
			}
			if n := strings.Count(logs.String(), "record rejected (no on_error sink: dropped)"); n != tt.warnings {
				t.Errorf("%d warnings, want %d:\n%s", n, tt.warnings, logs.String())
			}
			if tt.warnings > 0 && !strings.Contains(logs.String(), "at=mem:4") {
				t.Errorf("the warning does not name the location:\n%s", logs.String())
			}
			// Every batch and every call with rejected records was
			// acknowledged, none with an error: 7 batches, 5 calls.
			if st.acks.Load() != 12 || st.ackErrs.Load() != 0 {
				t.Errorf("acks %d, with errors %d; want 12, 0", st.acks.Load(), st.ackErrs.Load())
			}
		})
	}
}

// TestSourceRejectsCached: a cached run replays the source's dead letters
// into the on_error sink without reading the source.
func TestSourceRejectsCached(t *testing.T) {
	id, st := newTestState(t)
	dir := t.TempDir()
	spec := fmt.Sprintf(`source: {test_rejecting: {state: %[1]s, rows: 20, batch: 3, every: 4}}
sinks: [{test_sink: {state: %[1]s, id: a}}]
on_error: {test_deadletters: {state: %[1]s}}
cache: {ttl: 1h}
`, id)
	want := sourceDead(20)
	slices.Sort(want)
	for i, status := range []string{StatusSucceeded, StatusCached} {
		st.dlq, st.rows["a"] = nil, nil
		rec, err := (&Engine{DataDir: dir}).Run(context.Background(), mustParse(t, spec), RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(st.dlq)
		if rec.Status != status || st.reads.Load() != 1 || !slices.Equal(st.dlq, want) || len(st.rows["a"]) != 15 {
			t.Fatalf("run %d: status %s, %d reads, %d rows, dead letters %q", i+1, rec.Status, st.reads.Load(), len(st.rows["a"]), st.dlq)
		}
	}
}

// TestSourceDeadLetters checks the columns of a source's dead letters.
func TestSourceDeadLetters(t *testing.T) {
	long := bytes.Repeat([]byte("x"), MaxRejectRecord+10)
	b := SourceDeadLetters([]SourceReject{
		{Record: []byte("a,b,c"), Input: "data/in.csv", Line: 7, Index: 6, Err: fmt.Errorf("3 fields, want 2")},
		{Record: long, Input: "orders.new", Index: 42},
	}, "source")
	defer b.Release()
	if got := b.Schema().String(); !strings.Contains(got, "_record: type=utf8") || !strings.Contains(got, "_line: type=int64, nullable") {
		t.Fatalf("schema %s", got)
	}
	rec := b.Column(0).(*array.String)
	line := b.Column(2).(*array.Int64)
	idx := b.Column(3).(*array.Int64)
	msg := b.Column(4).(*array.String)
	if rec.Value(0) != "a,b,c" || line.Value(0) != 7 || idx.Value(0) != 6 || msg.Value(0) != "3 fields, want 2" {
		t.Errorf("row 0: %q %d %d %q", rec.Value(0), line.Value(0), idx.Value(0), msg.Value(0))
	}
	if len(rec.Value(1)) != MaxRejectRecord || line.IsValid(1) || idx.Value(1) != 42 || msg.Value(1) != "rejected" {
		t.Errorf("row 1: %d bytes, line valid %v, index %d, %q", len(rec.Value(1)), line.IsValid(1), idx.Value(1), msg.Value(1))
	}
	for _, tc := range []struct {
		r    SourceReject
		want string
	}{
		{SourceReject{Input: "a.csv", Line: 3, Index: 2}, "a.csv:3"},
		{SourceReject{Input: "a.json", Index: 2}, "a.json#2"},
		{SourceReject{Input: "subject"}, "subject"},
	} {
		if got := tc.r.Location(); got != tc.want {
			t.Errorf("Location() = %q, want %q", got, tc.want)
		}
	}
}
