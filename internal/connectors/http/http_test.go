package http

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

// decodeSource decodes a source body as a spec would (defaults, strict
// keys, Validate) and builds the source.
func decodeSource(t *testing.T, body string) *source {
	t.Helper()
	cfg, err := pipeline.DecodeComponent(pipeline.KindSource, "http", []byte(body), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	s, err := newSource(cfg.(*SourceConfig), pipeline.Env{BatchSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAll runs Read and returns the rows as JSON objects plus the schema.
func readAll(t *testing.T, s *source) ([]string, *arrow.Schema, error) {
	t.Helper()
	var rows []string
	var schema *arrow.Schema
	err := s.Read(context.Background(), func(_ context.Context, b pipeline.Batch, ack pipeline.AckFunc) error {
		schema = b.Schema()
		for r := range int(b.NumRows()) {
			rows = append(rows, string(jsonbatch.AppendRow(nil, b, r)))
		}
		return nil
	})
	return rows, schema, err
}

// items returns records id 0..n-1.
func items(from, to int) []map[string]any {
	var out []map[string]any
	for i := from; i < to; i++ {
		out = append(out, map[string]any{"id": i, "name": "n" + strconv.Itoa(i)})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func TestSourcePagination(t *testing.T) {
	const total = 10
	mux := http.NewServeMux()
	// cursor: ?cursor=N starts at record N, 4 per page.
	mux.HandleFunc("/cursor", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		to := min(from+4, total)
		var next any
		if to < total {
			next = strconv.Itoa(to)
		}
		writeJSON(w, map[string]any{"data": map[string]any{"items": items(from, to)}, "meta": map[string]any{"next_cursor": next}})
	})
	// page: page/per_page until an empty page.
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		n, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
		from := min((p-1)*n, total)
		writeJSON(w, map[string]any{"orders": items(from, min(from+n, total))})
	})
	// page with a total: the last page is never followed by an empty one.
	var totalCalls atomic.Int32
	mux.HandleFunc("/total", func(w http.ResponseWriter, r *http.Request) {
		totalCalls.Add(1)
		p, _ := strconv.Atoi(r.URL.Query().Get("pg"))
		from := min(p*5, total)
		if from >= total {
			http.Error(w, "no such page", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"items": items(from, min(from+5, total)), "total": total})
	})
	// link: a Link header with rel="next" (relative URL) among others.
	mux.HandleFunc("/link", func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("after"))
		to := min(from+3, total)
		if to < total {
			w.Header().Add("Link", `</link?after=0>; rel="first", </link?after=`+strconv.Itoa(to)+`>; rel="next"`)
		}
		writeJSON(w, items(from, to))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name string
		body string
	}{
		{"cursor", `{url: "` + srv.URL + `/cursor", records: data.items, pagination: {type: cursor, cursor_field: meta.next_cursor}}`},
		{"page", `{url: "` + srv.URL + `/page", records: orders, pagination: {type: page, size: 3}}`},
		{"page_total", `{url: "` + srv.URL + `/total", records: items, pagination: {type: page, page_param: pg, start_page: 0, size_param: "", size: 5, total_field: total}}`},
		{"link", `{url: "` + srv.URL + `/link", pagination: {type: link}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, schema, err := readAll(t, decodeSource(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != total {
				t.Fatalf("got %d rows, want %d: %v", len(rows), total, rows)
			}
			for i, r := range rows {
				want := fmt.Sprintf(`{"id":%d,"name":"n%d"}`, i, i)
				if r != want {
					t.Errorf("row %d = %s, want %s", i, r, want)
				}
			}
			if !arrow.TypeEqual(schema.Field(0).Type, arrow.PrimitiveTypes.Int64) || !arrow.TypeEqual(schema.Field(1).Type, arrow.BinaryTypes.String) {
				t.Errorf("schema %v", schema)
			}
		})
	}
	if n := totalCalls.Load(); n != 2 {
		t.Errorf("page with total made %d requests, want 2", n)
	}

	t.Run("max_pages", func(t *testing.T) {
		rows, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/link", pagination: {type: link}, max_pages: 2}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 6 {
			t.Fatalf("got %d rows, want 6", len(rows))
		}
	})
}

func TestSourceRetries(t *testing.T) {
	var calls atomic.Int32
	var retryAfterSeen sync.Map
	mux := http.NewServeMux()
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "upstream down", http.StatusBadGateway)
			return
		}
		writeJSON(w, items(0, 2))
	})
	var limited atomic.Int32
	var first time.Time
	mux.HandleFunc("/limited", func(w http.ResponseWriter, r *http.Request) {
		if limited.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		retryAfterSeen.Store("waited", time.Since(first) >= time.Second)
		writeJSON(w, items(0, 1))
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "always down", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("5xx twice then success", func(t *testing.T) {
		rows, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/flaky", retry_wait_min: 1ms, retry_wait_max: 5ms}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || calls.Load() != 3 {
			t.Fatalf("rows %d, calls %d; want 2 rows after 3 calls", len(rows), calls.Load())
		}
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		rows, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/limited", retry_wait_min: 1ms, retry_wait_max: 5s}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || limited.Load() != 2 {
			t.Fatalf("rows %d, calls %d", len(rows), limited.Load())
		}
		if w, _ := retryAfterSeen.Load("waited"); w != true {
			t.Error("the retry came before Retry-After's second had passed")
		}
	})
	t.Run("gives up", func(t *testing.T) {
		_, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/down", retries: 2, retry_wait_min: 1ms, retry_wait_max: 2ms}`))
		if err == nil || !strings.Contains(err.Error(), "status 503") || !strings.Contains(err.Error(), "always down") {
			t.Fatalf("err = %v, want the final 503 with its body", err)
		}
	})
}

func TestSourceHeadersAndErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" || r.URL.Query().Get("region") != "eu" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		writeJSON(w, items(0, 1))
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != `{"q":1}` || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		writeJSON(w, items(0, 1))
	})
	mux.HandleFunc("/badjson", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"items": [{"id": 1}, {"id": 2,]}`)
	})
	mux.HandleFunc("/notarray", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"items": {"id": 1}}`)
	})
	mux.HandleFunc("/mixed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `[{"id": 1, "v": 2}, {"id": 2, "v": 2.5, "when": "2026-01-02T03:04:05Z"}, {"id": 3, "v": null, "tags": ["a"], "ok": true}]`)
	})
	mux.HandleFunc("/typed", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `[{"id": 1, "extra": 1}, {"id": "x"}]`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("auth header and params sent", func(t *testing.T) {
		rows, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/auth", headers: {Authorization: "Bearer s3cret"}, params: {region: eu}}`))
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %v, err %v", rows, err)
		}
	})
	t.Run("post body", func(t *testing.T) {
		rows, _, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/post", method: post, body: '{"q":1}'}`))
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows %v, err %v", rows, err)
		}
	})
	t.Run("inference widens and keeps nested JSON", func(t *testing.T) {
		rows, schema, err := readAll(t, decodeSource(t, `{url: "`+srv.URL+`/mixed"}`))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"id:int64", "v:float64", "when:timestamp[us, tz=UTC]", "tags:utf8", "ok:bool"}
		for i, f := range schema.Fields() {
			if got := f.Name + ":" + f.Type.String(); i >= len(want) || got != want[i] {
				t.Errorf("field %d = %s, want %v", i, got, want)
			}
		}
		if rows[2] != `{"id":3,"v":null,"when":null,"tags":"[\"a\"]","ok":true}` {
			t.Errorf("row 2 = %s", rows[2])
		}
	})
	errs := []struct{ name, body, want string }{
		{"status", `{url: "` + srv.URL + `/auth"}`, "status 401"},
		{"bad json", `{url: "` + srv.URL + `/badjson", records: items}`, "invalid JSON"},
		{"not an array", `{url: "` + srv.URL + `/notarray", records: items}`, "want a JSON array"},
		{"missing records", `{url: "` + srv.URL + `/notarray", records: data.items}`, `no "data.items"`},
		{"explicit schema type mismatch", `{url: "` + srv.URL + `/typed", schema: [{name: id, type: int64}]}`, `record 1, column "id": "x" is not an integer`},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll(t, decodeSource(t, tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestSourceConfigErrors(t *testing.T) {
	bad := []struct{ body, want string }{
		{`{url: "ftp://x/y"}`, "want an absolute http"},
		{`{url: "http://x", method: DELETE}`, "want GET or POST"},
		{`{url: "http://x", body: "{}"}`, "body needs method POST"},
		{`{url: "http://x", pagination: {type: cursor}}`, "cursor_field"},
		{`{url: "http://x", pagination: {type: pages}}`, `pagination type "pages"`},
		{`{url: "http://x", pagination: {type: link, nxt: 1}}`, "unknown"},
		{`{url: "http://x", retry_wait_min: 2s, retry_wait_max: 1s}`, "retry_wait_min"},
		{`{url: "http://x", schema: [{name: a, type: decimal}]}`, `unknown type "decimal"`},
		{`{url: "http://x", timeout: soon}`, `invalid duration "soon"`},
	}
	for _, tc := range bad {
		t.Run(tc.body, func(t *testing.T) {
			_, err := pipeline.DecodeComponent(pipeline.KindSource, "http", []byte(tc.body), func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("defaults survive a partial pagination block", func(t *testing.T) {
		s := decodeSource(t, `{url: "http://x", pagination: {type: page}}`)
		p := s.cfg.Pagination
		if p.PageParam != "page" || p.SizeParam != "per_page" || p.Size != 100 || p.StartPage != 1 || s.cfg.Retries != 4 {
			t.Fatalf("defaults lost: %+v retries %d", p, s.cfg.Retries)
		}
	})
}

func TestFingerprintHidesHeaderValues(t *testing.T) {
	a := decodeSource(t, `{url: "http://x/a", headers: {Authorization: "Bearer one"}}`)
	b := decodeSource(t, `{url: "http://x/a", headers: {Authorization: "Bearer two"}}`)
	c := decodeSource(t, `{url: "http://x/a", params: {k: v}, headers: {Authorization: "Bearer two"}}`)
	fa, _ := a.Fingerprint(context.Background())
	fb, _ := b.Fingerprint(context.Background())
	fc, _ := c.Fingerprint(context.Background())
	if fa != fb {
		t.Error("fingerprint depends on a header value")
	}
	if fb == fc {
		t.Error("fingerprint ignores query parameters")
	}
}

func TestNextLink(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{`<https://a/x?p=2>; rel="next"`}, "https://a/x?p=2"},
		{[]string{`<https://a/1>; rel="prev", <https://a/3>; rel="next last"`}, "https://a/3"},
		{[]string{`<https://a/1,2>; title="a, b"; rel=next`}, "https://a/1,2"},
		{[]string{`<https://a/1>; rel="prev"`}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, "|"), func(t *testing.T) {
			if got := nextLink(tc.in); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"3", 3 * time.Second, true},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, ok := retryAfter(tc.in, now)
			if d != tc.want || ok != tc.ok {
				t.Fatalf("got %v %v, want %v %v", d, ok, tc.want, tc.ok)
			}
		})
	}
}

// testBatch has columns id (int64) and name (string) with n rows.
func testBatch(n int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "name", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%4 == 3 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append("n" + strconv.Itoa(i))
		}
	}
	return b.NewRecordBatch()
}

func decodeSink(t *testing.T, body string) *sink {
	t.Helper()
	cfg, err := pipeline.DecodeComponent(pipeline.KindSink, "http", []byte(body), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return newSink(cfg.(*SinkConfig), pipeline.Env{})
}

func TestSink(t *testing.T) {
	var mu sync.Mutex
	var got []map[string]any
	var bodies []string
	var fails atomic.Int32
	mux := http.NewServeMux()
	collect := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, string(b))
		if r.Header.Get("X-Key") != "k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if strings.HasPrefix(string(b), "[") {
			var rows []map[string]any
			if err := dec.Decode(&rows); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			got = append(got, rows...)
		} else {
			for dec.More() {
				var row map[string]any
				if err := dec.Decode(&row); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				got = append(got, row)
			}
		}
		w.WriteHeader(http.StatusAccepted)
	}
	mux.HandleFunc("/in", collect)
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if fails.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		collect(w, r)
	})
	mux.HandleFunc("/picky", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"id":2,`) {
			http.Error(w, "id 2 is not welcome", http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := testBatch(5)
	defer b.Release()
	reset := func() {
		mu.Lock()
		got, bodies = nil, nil
		mu.Unlock()
	}

	t.Run("json batches", func(t *testing.T) {
		reset()
		s := decodeSink(t, `{url: "`+srv.URL+`/in", headers: {X-Key: k}, batch_size: 2}`)
		rej, err := s.Write(context.Background(), b)
		if err != nil || len(rej) != 0 {
			t.Fatalf("rej %v err %v", rej, err)
		}
		if len(bodies) != 3 || len(got) != 5 {
			t.Fatalf("%d requests with %d rows, want 3 with 5", len(bodies), len(got))
		}
		if bodies[0] != `[{"id":0,"name":"n0"},{"id":1,"name":"n1"}]` || got[3]["name"] != nil {
			t.Errorf("bodies %q", bodies)
		}
		if err := s.Close(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ndjson with retries", func(t *testing.T) {
		reset()
		s := decodeSink(t, `{url: "`+srv.URL+`/flaky", headers: {X-Key: k}, format: ndjson, retry_wait_min: 1ms, retry_wait_max: 2ms}`)
		if _, err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		if len(got) != 5 || !strings.HasSuffix(bodies[0], "}\n") {
			t.Fatalf("got %d rows, body %q", len(got), bodies)
		}
	})
	t.Run("4xx dead-letters the batch's rows", func(t *testing.T) {
		s := decodeSink(t, `{url: "`+srv.URL+`/picky", batch_size: 2}`)
		rej, err := s.Write(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		if len(rej) != 2 || rej[0].Row != 2 || rej[1].Row != 3 || !strings.Contains(rej[0].Err.Error(), "status 422") ||
			!strings.Contains(rej[0].Err.Error(), "not welcome") {
			t.Fatalf("rej = %v", rej)
		}
	})
	t.Run("5xx after retries stops", func(t *testing.T) {
		s := decodeSink(t, `{url: "`+srv.URL+`/down", retries: 1, retry_wait_min: 1ms, retry_wait_max: 2ms}`)
		_, err := s.Write(context.Background(), b)
		if err == nil || !strings.Contains(err.Error(), "status 502") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		u := dead.URL
		dead.Close()
		s := decodeSink(t, `{url: "`+u+`", retries: 1, retry_wait_min: 1ms, retry_wait_max: 2ms}`)
		if _, err := s.Write(context.Background(), b); err == nil {
			t.Fatal("no error from a closed server")
		}
	})
}

func TestSinkConfigErrors(t *testing.T) {
	bad := []struct{ body, want string }{
		{`{url: "http://x", format: xml}`, "want json or ndjson"},
		{`{url: "http://x", method: GET}`, "want POST, PUT or PATCH"},
		{`{url: "http://x", batch_size: 0}`, "batch_size"},
		{`{url: "http://x", success_codes: [700]}`, "not an HTTP status"},
		{`{}`, "missing required field url"},
	}
	for _, tc := range bad {
		t.Run(tc.body, func(t *testing.T) {
			_, err := pipeline.DecodeComponent(pipeline.KindSink, "http", []byte(tc.body), func(string) (string, bool) { return "", false })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzNextLink: any Link header parses without panicking, and a found
// target is one of the <...> references of the header.
func FuzzNextLink(f *testing.F) {
	f.Add(`<https://a/1>; rel="prev", <https://a/3>; rel="next last"`)
	f.Add(`<https://a/1,2>; title="a, b"; rel=next`)
	f.Add(`<<>>; rel=next, "<x>`)
	f.Fuzz(func(t *testing.T, v string) {
		if got := nextLink([]string{v}); got != "" && !strings.Contains(v, "<"+got+">") {
			t.Fatalf("next %q is not a reference of %q", got, v)
		}
	})
}

// FuzzRetryAfter: any Retry-After value parses to a non-negative wait or
// is rejected.
func FuzzRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add("-5")
	f.Fuzz(func(t *testing.T, v string) {
		if d, ok := retryAfter(v, time.Now()); ok && d < 0 {
			t.Fatalf("%q: negative wait %v", v, d)
		}
	})
}

// TestSecretsStayOutOfErrors: query values (API keys) and credentials in
// URLs never appear in error messages.
func TestSecretsStayOutOfErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	defer srv.Close()
	for _, u := range []string{srv.URL + "/x?api_key=topsecret", strings.Replace(deadURL, "http://", "http://user:topsecret@", 1) + "/y?token=topsecret"} {
		_, _, err := readAll(t, decodeSource(t, `{url: "`+u+`", retries: 1, retry_wait_min: 1ms, retry_wait_max: 1ms}`))
		if err == nil || strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "=…") {
			t.Errorf("err = %v", err)
		}
	}
	if got := safeURL(mustURL(t, "https://u:p@h/p?b=2&a=1#f")); got != "https://h/p?a=…&b=…" {
		t.Errorf("safeURL = %q", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
