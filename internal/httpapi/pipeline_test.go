package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/httpapi"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/runstore"
	"github.com/kilnai/kiln/internal/serving"
)

// Test components: a source of n int64 rows that can block until
// cancelled, and a sink counting rows.
type apiSourceConfig struct {
	Rows  int  `yaml:"rows"`
	Block bool `yaml:"block"`
}

type apiSource struct{ cfg *apiSourceConfig }

var apiSchema = arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int64}}, nil)

func (s *apiSource) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := range s.cfg.Rows {
		b.Append(int64(i))
	}
	col := b.NewArray()
	defer col.Release()
	if err := emit(ctx, array.NewRecordBatch(apiSchema, []arrow.Array{col}, int64(s.cfg.Rows)), nil); err != nil {
		return err
	}
	if s.cfg.Block {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
func (s *apiSource) Close() error { return nil }

type apiSinkConfig struct{}
type apiSink struct{}

var apiRows struct {
	sync.Mutex
	n int64
}

func (apiSink) Write(_ context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	apiRows.Lock()
	apiRows.n += b.NumRows()
	apiRows.Unlock()
	return nil, nil
}
func (apiSink) Close(context.Context, error) error { return nil }

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{Name: "api_rows", Summary: "test rows", Config: func() any { return &apiSourceConfig{Rows: 5} }},
		Build: func(_ context.Context, cfg any, _ pipeline.Env) (pipeline.Source, error) {
			return &apiSource{cfg: cfg.(*apiSourceConfig)}, nil
		},
	})
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec:  pipeline.Spec{Name: "api_sink", Summary: "test sink", Config: func() any { return &apiSinkConfig{} }},
		Build: func(context.Context, any, pipeline.Env) (pipeline.Sink, error) { return apiSink{}, nil },
	})
}

func pipelineServer(t *testing.T) (*httptest.Server, *pipeline.Service) {
	t.Helper()
	dir := t.TempDir()
	store, err := runstore.Open(context.Background(), runstore.DefaultDSN(dir))
	if err != nil {
		t.Fatal(err)
	}
	svc := pipeline.NewService(&pipeline.Engine{DataDir: dir, Runs: store}, nil, 2)
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir)})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Manager: mgr, Pipelines: svc}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
		store.Close()
	})
	return srv, svc
}

func call(t *testing.T, method, url, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not JSON: %s", method, url, b)
	}
	return resp.StatusCode, m
}

func TestPipelineAPI(t *testing.T) {
	srv, _ := pipelineServer(t)
	base := srv.URL + "/api/v1/pipelines/runs"
	spec := "name: api\nsource: {api_rows: {rows: 7}}\nsinks: [api_sink: {}]\n"

	code, rec := call(t, "POST", base+"?wait=true", "application/yaml", spec)
	if code != 200 || rec["status"] != "succeeded" || rec["rows_in"] != 7.0 {
		t.Fatalf("submit wait: %d %v", code, rec)
	}
	id := rec["id"].(string)

	js, _ := json.Marshal(map[string]any{"spec": spec, "no_cache": true})
	code, rec2 := call(t, "POST", base+"?wait=1", "application/json", string(js))
	if code != 200 || rec2["status"] != "succeeded" {
		t.Fatalf("submit JSON: %d %v", code, rec2)
	}

	code, got := call(t, "GET", base+"/"+id, "", "")
	if code != 200 || got["id"] != id || got["pipeline"] != "api" {
		t.Errorf("get: %d %v", code, got)
	}
	code, list := call(t, "GET", base+"?limit=1", "", "")
	if runs, _ := list["runs"].([]any); code != 200 || len(runs) != 1 {
		t.Errorf("list: %d %v", code, list)
	}

	bad := []struct {
		name, method, url, ctype, body string
		code                           int
		msg                            string
	}{
		{"spec error", "POST", base, "application/yaml", "source: {api_rowz: {}}\nsinks: [api_sink: {}]\n", 400, "request:1:10: unknown source \"api_rowz\""},
		{"empty", "POST", base, "", "  ", 400, "empty pipeline spec"},
		{"bad json", "POST", base, "application/json", `{"spec": 3}`, 400, "JSON body"},
		{"bad wait", "POST", base + "?wait=soon", "", spec, 400, "not a boolean"},
		{"too large", "POST", base, "", strings.Repeat("#", 1<<20+1), 413, "over"},
		{"unknown run", "GET", base + "/nope", "", "", 404, "not found"},
		{"bad limit", "GET", base + "?limit=0", "", "", 400, "limit"},
		{"cancel unknown", "POST", base + "/nope/cancel", "", "", 404, "not found"},
		{"cancel finished", "POST", base + "/" + id + "/cancel", "", "", 409, "not in progress"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, m := call(t, tt.method, tt.url, tt.ctype, tt.body)
			if code != tt.code || !strings.Contains(m["error"].(string), tt.msg) {
				t.Errorf("%d %v, want %d %q", code, m, tt.code, tt.msg)
			}
		})
	}
}

func TestPipelineAPICancel(t *testing.T) {
	srv, _ := pipelineServer(t)
	base := srv.URL + "/api/v1/pipelines/runs"
	code, rec := call(t, "POST", base, "", "source: {api_rows: {block: true}}\nsinks: [api_sink: {}]\n")
	if code != 202 || rec["status"] != "running" {
		t.Fatalf("submit: %d %v", code, rec)
	}
	id := rec["id"].(string)
	if code, m := call(t, "POST", base+"/"+id+"/cancel", "", ""); code != 202 {
		t.Fatalf("cancel: %d %v", code, m)
	}
	for {
		_, got := call(t, "GET", base+"/"+id, "", "")
		if got["status"] == "cancelled" {
			break
		}
		if got["status"] != "running" {
			t.Fatalf("status %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The limit of concurrent runs answers 429.
	body := []byte("source: {api_rows: {block: true}}\nsinks: [api_sink: {}]\n")
	for i := range 3 {
		resp, err := http.Post(base, "application/yaml", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 429, false: 202}[i == 2]; resp.StatusCode != want {
			t.Errorf("submission %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
}
