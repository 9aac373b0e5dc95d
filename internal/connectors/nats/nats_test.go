package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	_ "github.com/kilnai/kiln/internal/connectors/http"
	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

// natsURL returns $KILN_TEST_NATS, skipping the test when it is unset
// unless KILN_REQUIRE_SERVICES=1.
func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_NATS")
	if u == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_NATS is unset and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_NATS is unset (e.g. nats://127.0.0.1:4222)")
	}
	return u
}

// testStream creates a stream of its own (subjects NAME.>) for one test
// and deletes it afterwards.
func testStream(t *testing.T, url string) (jetstream.JetStream, string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "KILN_TEST_" + strings.ToUpper(hex.EncodeToString(b[:]))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), name)
		nc.Close()
	})
	return js, name
}

func publish(t *testing.T, js jetstream.JetStream, subject string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := js.Publish(context.Background(), subject, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
}

func noVars(string) (string, bool) { return "", false }

func buildSource(t *testing.T, body string) *source {
	t.Helper()
	cfg, err := pipeline.DecodeComponent(pipeline.KindSource, "nats", []byte(body), noVars)
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return newSource(cfg.(*SourceConfig), pipeline.Env{})
}

// drain reads with stop_when_idle, acknowledging (or failing) each batch
// as a sink would, and returns the rows as JSON.
func drain(t *testing.T, s *source, ackErr error) []string {
	t.Helper()
	rows, err := drainErr(s, ackErr)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func drainErr(s *source, ackErr error) ([]string, error) {
	defer s.Close()
	var rows []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.Read(ctx, func(ctx context.Context, b pipeline.Batch, ack pipeline.AckFunc) error {
		for r := range int(b.NumRows()) {
			rows = append(rows, string(jsonbatch.AppendRow(nil, b, r)))
		}
		if err := ack(ctx, ackErr); err != nil {
			return err
		}
		return ackErr
	})
	if err != nil && !errors.Is(err, ackErr) {
		return nil, err
	}
	return rows, nil
}

func TestSourceReadsAndAcks(t *testing.T) {
	url := natsURL(t)
	js, stream := testStream(t, url)
	publish(t, js, stream+".a", `{"id": 1, "v": "x"}`, `[{"id": 2, "v": "y"}, {"id": 3}]`)
	publish(t, js, stream+".b", `{"id": 4, "v": "other subject"}`)
	publish(t, js, stream+".a", `not json`, `{"id": 5, "v": "z", "extra": true}`)

	body := fmt.Sprintf(`{url: %q, stream: %s, subject: %s.a, durable: reader, stop_when_idle: true, batch_size: 2, max_wait: 200ms}`, url, stream, stream)
	rows := drain(t, buildSource(t, body), nil)
	want := []string{`{"id":1,"v":"x"}`, `{"id":2,"v":"y"}`, `{"id":3,"v":null}`, `{"id":5,"v":"z"}`}
	if strings.Join(rows, " ") != strings.Join(want, " ") {
		t.Fatalf("rows %v, want %v (the undecodable message dropped, the other subject filtered out)", rows, want)
	}
	// Everything was acknowledged: the durable consumer has nothing left,
	// and the undecodable message was terminated, not redelivered.
	if again := drain(t, buildSource(t, body), nil); len(again) != 0 {
		t.Fatalf("second run read %v", again)
	}
	publish(t, js, stream+".a", `{"id": 6, "v": "new"}`)
	if again := drain(t, buildSource(t, body), nil); len(again) != 1 || again[0] != `{"id":6,"v":"new"}` {
		t.Fatalf("third run read %v, want only the new message", again)
	}
}

func TestSourceRedeliversFailedBatches(t *testing.T) {
	url := natsURL(t)
	js, stream := testStream(t, url)
	publish(t, js, stream+".in", `{"id": 1}`, `{"id": 2}`, `{"id": 3}`)
	body := fmt.Sprintf(`{url: %q, stream: %s, durable: d, stop_when_idle: true, max_wait: 200ms, ack_wait: 1s}`, url, stream)

	t.Run("nak on a failed batch", func(t *testing.T) {
		if rows := drain(t, buildSource(t, body), errors.New("sink failed")); len(rows) != 3 {
			t.Fatalf("first run saw %d rows", len(rows))
		}
		if rows := drain(t, buildSource(t, body), nil); len(rows) != 3 {
			t.Fatalf("after a nak the next run read %v, want all 3 rows again", rows)
		}
	})
	t.Run("never acknowledged (process died)", func(t *testing.T) {
		publish(t, js, stream+".in", `{"id": 4}`)
		s := buildSource(t, body)
		ctx, cancel := context.WithCancel(context.Background())
		err := s.Read(ctx, func(context.Context, pipeline.Batch, pipeline.AckFunc) error {
			cancel() // the run ends before any sink wrote the batch
			return context.Canceled
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		s.Close()
		// The unacknowledged message comes back after ack_wait; the
		// idle check waits for it rather than stopping.
		if rows := drain(t, buildSource(t, body), nil); len(rows) != 1 || rows[0] != `{"id":4}` {
			t.Fatalf("rows %v, want the redelivered message", rows)
		}
	})
}

// TestEngineAcksAfterSinks runs the nats source through the engine into an
// http sink: while the sink fails the run fails and nothing is
// acknowledged; the next run, with the sink working, gets every message.
func TestEngineAcksAfterSinks(t *testing.T) {
	url := natsURL(t)
	js, stream := testStream(t, url)
	for i := range 5 {
		publish(t, js, stream+".orders", fmt.Sprintf(`{"order": %d}`, i))
	}
	var fail atomic.Bool
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got.Add(int64(strings.Count(string(body), `"order"`)))
	}))
	defer srv.Close()
	spec := fmt.Sprintf(`name: nats-to-http
source:
  nats: {url: %q, stream: %s, durable: engine, stop_when_idle: true, max_wait: 200ms, batch_size: 2}
sinks:
  - http: {url: %q, retries: 0, retry_wait_min: 1ms, retry_wait_max: 1ms}
`, url, stream, srv.URL)
	plan, err := pipeline.Parse("nats-to-http.yaml", []byte(spec), noVars)
	if err != nil {
		t.Fatal(err)
	}
	eng := &pipeline.Engine{DataDir: t.TempDir()}
	ctx := context.Background()
	fail.Store(true)
	if _, err := eng.Run(ctx, plan, pipeline.RunOptions{}); err == nil {
		t.Fatal("run with a failing sink succeeded")
	}
	fail.Store(false)
	rec, err := eng.Run(ctx, plan, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Load() != 5 || rec.RowsIn != 5 {
		t.Fatalf("sink got %d rows, run read %d; want 5 (every message redelivered)", got.Load(), rec.RowsIn)
	}
	rec, err = eng.Run(ctx, plan, pipeline.RunOptions{})
	if err != nil || rec.RowsIn != 0 {
		t.Fatalf("third run read %d rows (err %v), want 0: the second run acknowledged all", rec.RowsIn, err)
	}
}

func batchOf(t *testing.T) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "region", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i, r := range []string{"eu", "us.east", "eu", ""} {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if r == "" {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(r)
		}
	}
	return b.NewRecordBatch()
}

func buildSink(t *testing.T, body, runID string) *sink {
	t.Helper()
	cfg, err := pipeline.DecodeComponent(pipeline.KindSink, "nats", []byte(body), noVars)
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	s, err := newSink(cfg.(*SinkConfig), pipeline.Env{RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out[m.Subject] = append(out[m.Subject], string(m.Data))
	}
	return out
}

func TestSink(t *testing.T) {
	url := natsURL(t)
	ctx := context.Background()
	b := batchOf(t)
	defer b.Release()

	t.Run("fixed subject, ids from run and position", func(t *testing.T) {
		js, stream := testStream(t, url)
		body := fmt.Sprintf(`{url: %q, subject: %s.scores}`, url, stream)
		for range 2 { // the same run writing again (a retried task) is deduplicated
			s := buildSink(t, body, "run-1")
			if rej, err := s.Write(ctx, b); err != nil || len(rej) != 0 {
				t.Fatalf("rej %v err %v", rej, err)
			}
			if err := s.Close(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		msgs := streamMsgs(t, js, stream)[stream+".scores"]
		if len(msgs) != 4 || msgs[1] != `{"id":1,"region":"us.east"}` {
			t.Fatalf("stream holds %v", msgs)
		}
		s := buildSink(t, body, "run-2")
		if _, err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(ctx, nil)
		if n := len(streamMsgs(t, js, stream)[stream+".scores"]); n != 8 {
			t.Fatalf("another run's rows: stream holds %d messages, want 8", n)
		}
	})
	t.Run("subject template and key", func(t *testing.T) {
		js, stream := testStream(t, url)
		s := buildSink(t, fmt.Sprintf(`{url: %q, subject: "%s.{region}.new", key: [region]}`, url, stream), "r")
		defer s.Close(ctx, nil)
		rej, err := s.Write(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(rej) != 1 || rej[0].Row != 3 || !strings.Contains(rej[0].Err.Error(), "null") {
			t.Fatalf("rej = %v, want row 3 (null region)", rej)
		}
		msgs := streamMsgs(t, js, stream)
		// Rows 0 and 2 share the key "eu": stored once.
		if len(msgs[stream+".eu.new"]) != 1 || len(msgs[stream+".us_east.new"]) != 1 {
			t.Fatalf("stream holds %v", msgs)
		}
	})
	t.Run("no stream for the subject", func(t *testing.T) {
		s := buildSink(t, fmt.Sprintf(`{url: %q, subject: kiln_no_such_stream_subject.x, ack_timeout: 5s}`, url), "r")
		defer s.Close(ctx, nil)
		if _, err := s.Write(ctx, b); err == nil || !strings.Contains(err.Error(), "no JetStream stream") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("creates its stream, then a source reads it", func(t *testing.T) {
		_, stream := testStream(t, url) // only for a unique name; deleted at cleanup
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		own := stream + "_OWN"
		empty := own + "_EMPTY"
		t.Cleanup(func() {
			_ = js.DeleteStream(context.Background(), own)
			_ = js.DeleteStream(context.Background(), empty)
			nc.Close()
		})
		s := buildSink(t, fmt.Sprintf(`{url: %q, subject: "%s.{region}", stream: %s}`, url, strings.ToLower(own), own), "r")
		if _, err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		_ = s.Close(ctx, nil)
		rows := drain(t, buildSource(t, fmt.Sprintf(`{url: %q, stream: %s, durable: r, stop_when_idle: true, max_wait: 200ms, create_stream: true}`, url, own)), nil)
		if len(rows) != 3 {
			t.Fatalf("read back %v, want the 3 rows with a region", rows)
		}
		if rows := drain(t, buildSource(t, fmt.Sprintf(`{url: %q, stream: %s, durable: r, stop_when_idle: true, max_wait: 100ms, create_stream: true}`, url, empty)), nil); len(rows) != 0 {
			t.Fatalf("a new stream had rows: %v", rows)
		}
	})
	t.Run("missing column", func(t *testing.T) {
		s := buildSink(t, fmt.Sprintf(`{url: %q, subject: "x.{nope}"}`, url), "r")
		defer s.Close(ctx, nil)
		if _, err := s.Write(ctx, b); err == nil || !strings.Contains(err.Error(), `column "nope"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		kind pipeline.Kind
		body string
		want string
	}{
		{pipeline.KindSource, `{url: u, stream: S, durable: d, format: xml}`, "want json, ndjson or csv"},
		{pipeline.KindSource, `{url: u, stream: "a.b", durable: d}`, `stream "a.b"`},
		{pipeline.KindSource, `{url: u, stream: S}`, "missing required field durable"},
		{pipeline.KindSource, `{url: u, stream: S, durable: d, ack_wait: 10ms}`, "ack_wait"},
		{pipeline.KindSource, `{url: u, stream: S, durable: d, schema: [{name: a, type: blob}]}`, "unknown type"},
		{pipeline.KindSink, `{url: u, subject: "a.>"}`, "wildcards"},
		{pipeline.KindSink, `{url: u, subject: "a.{x"}`, "unclosed"},
		{pipeline.KindSink, `{url: u, subject: "a..b"}`, "empty token"},
		{pipeline.KindSink, `{url: u, subject: a, max_pending: 0}`, "max_pending"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			_, err := pipeline.DecodeComponent(tc.kind, "nats", []byte(tc.body), noVars)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		format, in string
		want       []string
		err        string
	}{
		{formatJSON, `{"a": 1}`, []string{`{"a":1}`}, ""},
		{formatJSON, `[{"a": 1}, {"a": 2}]`, []string{`{"a":1}`, `{"a":2}`}, ""},
		{formatJSON, `[1]`, nil, "want a JSON object"},
		{formatNDJSON, "{\"a\": 1}\n{\"a\": 2}\n", []string{`{"a":1}`, `{"a":2}`}, ""},
		{formatCSV, "a,b,c\n1,x,2.5\n,true,\"q,r\"\n", []string{`{"a":1,"b":"x","c":"2.5"}`, `{"a":null,"b":"true","c":"q,r"}`}, ""},
		{formatCSV, "a,a\n1,2\n", nil, "repeated column"},
		{formatCSV, "a,b\n1\n", nil, "wrong number of fields"},
	}
	for _, tc := range tests {
		t.Run(tc.format+" "+tc.in, func(t *testing.T) {
			order := &jsonbatch.KeyOrder{}
			recs, err := decode([]byte(tc.in), tc.format, order)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := jsonbatch.Build(nil, jsonbatch.Infer(recs, order.Keys), recs, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Release()
			var got []string
			for r := range int(b.NumRows()) {
				got = append(got, string(jsonbatch.AppendRow(nil, b, r)))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzDecode: any message body decodes or fails cleanly, and what decodes
// builds a batch with its inferred schema.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("a,b\n1,x\n2,\"y\"\"z\"\n"), uint8(2))
	f.Add([]byte(`[{"a": 1}, {"a": 2.5, "b": [true]}]`), uint8(0))
	f.Add([]byte("{\"a\": 1}\n{\"b\": null}"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		format := []string{formatJSON, formatNDJSON, formatCSV}[int(which)%3]
		order := &jsonbatch.KeyOrder{}
		recs, err := decode(data, format, order)
		if err != nil || len(recs) == 0 {
			return
		}
		b, err := jsonbatch.Build(nil, jsonbatch.Infer(recs, order.Keys), recs, 0)
		if err != nil {
			t.Fatalf("%s %q: inferred schema does not fit: %v", format, data, err)
		}
		b.Release()
	})
}

// FuzzParseSubject: any subject template parses or fails cleanly; a
// parsed one renders without wildcards and with its literal parts intact.
func FuzzParseSubject(f *testing.F) {
	f.Add("orders.{region}.scored")
	f.Add("a.{x}{y}.b")
	f.Add("{")
	f.Add("a..b}")
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := parseSubject(s)
		if err != nil {
			return
		}
		var lit strings.Builder
		for _, p := range parts {
			if p.col == "" && p.lit == "" {
				t.Fatalf("%q: empty part", s)
			}
			lit.WriteString(p.lit)
		}
		if strings.ContainsAny(lit.String(), "*> ") {
			t.Fatalf("%q: literal parts %q hold a wildcard or space", s, lit.String())
		}
	})
}

// Two readers of one durable consumer share the stream: every message
// goes to one of them, and both stop when it is drained.
func TestSharedDurable(t *testing.T) {
	url := natsURL(t)
	js, stream := testStream(t, url)
	const n = 200
	for i := range n {
		publish(t, js, stream+".e", fmt.Sprintf(`{"i": %d}`, i))
	}
	body := fmt.Sprintf(`{url: %q, stream: %s, durable: shared, stop_when_idle: true, batch_size: 7, max_wait: 200ms}`, url, stream)
	type result struct {
		rows []string
		err  error
	}
	got := make(chan result, 2)
	for range 2 {
		s := buildSource(t, body)
		go func() {
			rows, err := drainErr(s, nil)
			got <- result{rows, err}
		}()
	}
	seen := map[string]bool{}
	for range 2 {
		res := <-got
		if res.err != nil {
			t.Fatal(res.err)
		}
		for _, r := range res.rows {
			if seen[r] {
				t.Fatalf("row %s read twice", r)
			}
			seen[r] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("read %d distinct rows, want %d", len(seen), n)
	}
}

// BenchmarkSinkSource publishes b.N rows through the sink and reads them
// back through the source (real JetStream).
func BenchmarkSinkSource(b *testing.B) {
	url := os.Getenv("KILN_TEST_NATS")
	if url == "" {
		b.Skip("KILN_TEST_NATS is unset")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	stream := "KILN_BENCH_" + strings.ToUpper(hex.EncodeToString(rb[:]))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		b.Fatal(err)
	}
	defer js.DeleteStream(ctx, stream)
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "v", Type: arrow.PrimitiveTypes.Float64}}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	for i := range b.N {
		bld.Field(0).(*array.Int64Builder).Append(int64(i))
		bld.Field(1).(*array.Float64Builder).Append(float64(i) / 3)
	}
	batch := bld.NewRecordBatch()
	bld.Release()
	defer batch.Release()
	cfg := defaultSinkConfig()
	cfg.URL, cfg.Subject, cfg.MaxPending = url, stream+".rows", 4096
	s, err := newSink(cfg, pipeline.Env{RunID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	if _, err := s.Write(ctx, batch); err != nil {
		b.Fatal(err)
	}
	_ = s.Close(ctx, nil)
	pub := time.Since(start)
	src := newSource(&SourceConfig{URL: url, Stream: stream, Durable: "bench", Format: formatJSON, BatchSize: 1000, MaxWait: 200 * time.Millisecond, AckWait: 30 * time.Second, StopWhenIdle: true}, pipeline.Env{})
	start = time.Now()
	rows, err := drainErr(src, nil)
	if err != nil || len(rows) != b.N {
		b.Fatalf("read %d rows: %v", len(rows), err)
	}
	b.ReportMetric(float64(b.N)/pub.Seconds(), "published-rows/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "read-rows/s")
}
