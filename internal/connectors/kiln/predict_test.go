package kiln

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/grpcapi"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/serving"
)

const fakeSpec = `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}, {"name": "k", "datatype": "INT64", "shape": [-1]}],
 "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2], "from": "x"}, {"name": "z", "datatype": "INT64", "shape": [-1], "from": "k"}]}`

// newManager serves a model repository (relative path → content) with
// the given backends.
func newManager(t *testing.T, files map[string]string, backends ...inference.Backend) *serving.Manager {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir), Backends: backends, Registerer: prometheus.NewRegistry()})
	t.Cleanup(func() { _ = mgr.Close(context.Background()) })
	if err := mgr.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	return mgr
}

func fakeManager(t *testing.T) (*serving.Manager, *inferencetest.Fake) {
	fake := inferencetest.NewFake()
	mgr := newManager(t, map[string]string{
		"m/config.yaml":       "backend: fake\nmax_batch_size: 8\n",
		"m/1/model.fake.json": fakeSpec,
	}, fake)
	return mgr, fake
}

// serveGRPC serves mgr over gRPC on 127.0.0.1:0 and returns the address.
func serveGRPC(t *testing.T, mgr *serving.Manager) string {
	t.Helper()
	addr, _ := serveGRPCStoppable(t, mgr)
	return addr
}

// serveGRPCStoppable is serveGRPC that also returns a function stopping
// the server (idempotent).
func serveGRPCStoppable(t *testing.T, mgr *serving.Manager) (string, func()) {
	t.Helper()
	srv := grpcapi.New(grpcapi.Options{Manager: mgr})
	srv.SetStarted()
	gs := grpcapi.NewGRPCServer(0)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			gs.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

type lineage struct {
	mu   sync.Mutex
	used []string
}

func (l *lineage) UsedModel(name, version string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.used = append(l.used, name+"@"+version)
}

func buildPredict(t *testing.T, body string, env pipeline.Env) (pipeline.Transform, error) {
	t.Helper()
	cfg, err := pipeline.DecodeComponent(pipeline.KindTransform, "predict", []byte(body), nil)
	if err != nil {
		return nil, err
	}
	spec, _ := pipeline.LookupTransform("predict")
	tr, err := spec.Build(context.Background(), cfg, env)
	if err == nil {
		t.Cleanup(func() { _ = tr.(interface{ Close() error }).Close() })
	}
	return tr, err
}

// inputBatch has rows i = 0..n-1 with a = i, b = -i (float64), k = i
// (int64), and a null in a at nullRow (if >= 0).
func inputBatch(t *testing.T, n, nullRow int) pipeline.Batch {
	mem := memory.DefaultAllocator
	ab, bb, kb := array.NewFloat64Builder(mem), array.NewFloat64Builder(mem), array.NewInt64Builder(mem)
	defer ab.Release()
	defer bb.Release()
	defer kb.Release()
	for i := range n {
		if i == nullRow {
			ab.AppendNull()
		} else {
			ab.Append(float64(i))
		}
		bb.Append(-float64(i))
		kb.Append(int64(i))
	}
	cols := []arrow.Array{ab.NewArray(), bb.NewArray(), kb.NewArray()}
	schema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, {Name: "b", Type: arrow.PrimitiveTypes.Float64}, {Name: "k", Type: arrow.PrimitiveTypes.Int64}}, nil)
	rec := array.NewRecordBatch(schema, cols, int64(n))
	releaseAll(cols)
	t.Cleanup(rec.Release)
	return rec
}

func column(t *testing.T, b pipeline.Batch, name string) arrow.Array {
	t.Helper()
	idx := b.Schema().FieldIndices(name)
	if len(idx) == 0 {
		t.Fatalf("no column %q in %s", name, b.Schema())
	}
	return b.Column(idx[0])
}

const fakeMapping = `{model: m, inputs: {x: [a, b], k: k}, outputs: {y: [y0, y1], z: zz}, argmax: {y: best}, batch_size: 16, max_in_flight: 3}`

// checkFake verifies the fake model's answers (y = 2x + 1, z = 2k + 1)
// for the kept rows of a batch made by inputBatch.
func checkFake(t *testing.T, out pipeline.Batch, skip int) {
	t.Helper()
	ks := column(t, out, "k").(*array.Int64)
	y0 := column(t, out, "y0").(*array.Float32)
	y1 := column(t, out, "y1").(*array.Float32)
	zz := column(t, out, "zz").(*array.Int64)
	best := column(t, out, "best").(*array.Int64)
	prev := int64(-1)
	for r := range int(out.NumRows()) {
		i := ks.Value(r)
		if i == int64(skip) || i <= prev {
			t.Fatalf("row %d holds input row %d (after %d): order lost or rejected row kept", r, i, prev)
		}
		prev = i
		if y0.Value(r) != float32(2*i+1) || y1.Value(r) != float32(-2*i+1) || zz.Value(r) != 2*i+1 {
			t.Fatalf("row %d: y = (%v, %v), z = %v; want (%v, %v), %v", r, y0.Value(r), y1.Value(r), zz.Value(r), 2*i+1, -2*i+1, 2*i+1)
		}
		wantBest := int64(0)
		if i == 0 {
			wantBest = 0 // equal values: the first
		}
		if best.Value(r) != wantBest {
			t.Fatalf("row %d: argmax %d, want %d", r, best.Value(r), wantBest)
		}
	}
}

func TestPredictInProcess(t *testing.T) {
	mgr, fake := fakeManager(t)
	lin := &lineage{}
	tr, err := buildPredict(t, fakeMapping, pipeline.Env{Models: mgr, Lineage: lin})
	if err != nil {
		t.Fatal(err)
	}
	in := inputBatch(t, 100, 17)
	out, rej, err := tr.Apply(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if len(rej) != 1 || rej[0].Row != 17 || !strings.Contains(rej[0].Err.Error(), `"a" is null`) {
		t.Fatalf("rejected %v, want row 17 (null input)", rej)
	}
	if out.NumRows() != 99 {
		t.Fatalf("%d rows out, want 99", out.NumRows())
	}
	checkFake(t, out, 17)
	for _, n := range fake.BatchSizes() {
		if n > 8 {
			t.Errorf("a call of %d rows exceeds the model's max_batch_size 8", n)
		}
	}
	if got := fake.MaxConcurrent(); got > 3 {
		t.Errorf("%d calls in flight at once, max_in_flight is 3", got)
	}
	if len(lin.used) != 1 || lin.used[0] != "m@1" {
		t.Errorf("lineage %v, want [m@1]", lin.used)
	}
}

func TestPredictRemote(t *testing.T) {
	mgr, _ := fakeManager(t)
	addr := serveGRPC(t, mgr)
	lin := &lineage{}
	tr, err := buildPredict(t, strings.Replace(fakeMapping, "model: m,", "model: m, remote: \""+addr+"\", headers: {x-test: yes},", 1), pipeline.Env{Lineage: lin})
	if err != nil {
		t.Fatal(err)
	}
	in := inputBatch(t, 50, -1)
	out, rej, err := tr.Apply(context.Background(), in)
	if err != nil || len(rej) != 0 {
		t.Fatalf("err %v, rejected %v", err, rej)
	}
	defer out.Release()
	if out.NumRows() != 50 {
		t.Fatalf("%d rows", out.NumRows())
	}
	checkFake(t, out, -1)
	if len(lin.used) != 1 || lin.used[0] != "m@1" {
		t.Errorf("lineage %v", lin.used)
	}
}

func TestPredictFailures(t *testing.T) {
	mgr, fake := fakeManager(t)
	boom := errors.New("boom")
	fake.SetInferError(boom)
	tr, err := buildPredict(t, `{model: m, inputs: {x: [a, b], k: k}, outputs: {z: zz}, retries: 1}`, pipeline.Env{Models: mgr})
	if err != nil {
		t.Fatal(err)
	}
	in := inputBatch(t, 20, -1)
	out, rej, err := tr.Apply(context.Background(), in)
	if err != nil || out != nil || len(rej) != 20 || !strings.Contains(rej[0].Err.Error(), "boom") {
		t.Fatalf("out %v, %d rejected (%v), err %v; want every row rejected with the reason", out, len(rej), rej, err)
	}
	if calls := len(fake.BatchSizes()); calls != 6 { // 3 calls of ≤ 8 rows, each tried twice
		t.Errorf("%d calls, want 6 (one retry each)", calls)
	}
	stop, err := buildPredict(t, `{model: m, inputs: {x: [a, b], k: k}, outputs: {z: zz}, retries: 0, on_failure: error}`, pipeline.Env{Models: mgr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := stop.Apply(context.Background(), in); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("on_failure error: err = %v", err)
	}
}

func TestPredictBadMappings(t *testing.T) {
	mgr, _ := fakeManager(t)
	cases := []struct{ body, want string }{
		{`{model: nope, inputs: {x: [a, b], k: k}, outputs: {z: zz}}`, "not found"},
		{`{model: m, inputs: {x: [a, b], k: k, w: a}, outputs: {z: zz}}`, `no input "w"`},
		{`{model: m, inputs: {x: [a, b]}, outputs: {z: zz}}`, `model input "k" is not mapped`},
		{`{model: m, inputs: {x: [a], k: k}, outputs: {z: zz}}`, "takes 2 values per row"},
		{`{model: m, inputs: {x: [a, b], k: k}, outputs: {q: zz}}`, `no output "q"`},
		{`{model: m, inputs: {x: [a, b], k: k}, outputs: {y: [c0, c1, c2]}}`, "2 values per row"},
		{`{model: m, inputs: {x: [a, b], k: k}}`, "at least one output"},
		{`{model: m, inputs: {x: [a, b], k: k}, outputs: {z: o, y: o}}`, "written by both"},
		{`{model: m, version: latest, inputs: {x: [a, b], k: k}, outputs: {z: o}}`, "positive integer"},
		{`{model: m, inputs: {x: [a, b], k: k}, outputs: {z: o}, batch_size: 0}`, "batch_size"},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			_, err := buildPredict(t, tc.body, pipeline.Env{Models: mgr})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := buildPredict(t, `{model: m, inputs: {x: [a, b], k: k}, outputs: {z: o}}`, pipeline.Env{}); err == nil || !strings.Contains(err.Error(), "no model server") {
		t.Errorf("no server and no remote: err = %v", err)
	}

	// Column problems show on the first batch.
	mem := memory.DefaultAllocator
	sb := array.NewStringBuilder(mem)
	sb.AppendValues([]string{"x"}, nil)
	s := sb.NewArray()
	sb.Release()
	kb := array.NewInt64Builder(mem)
	kb.Append(1)
	k := kb.NewArray()
	kb.Release()
	b := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.BinaryTypes.String}, {Name: "b", Type: arrow.BinaryTypes.String}, {Name: "k", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{s, s, k}, 1)
	s.Release()
	k.Release()
	defer b.Release()
	tr, err := buildPredict(t, `{model: m, inputs: {x: [a, b], k: k}, outputs: {z: o}}`, pipeline.Env{Models: mgr})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Apply(context.Background(), b); err == nil || !strings.Contains(err.Error(), "cannot feed a FP32 tensor") {
		t.Errorf("string column into FP32: err = %v", err)
	}
	tr2, _ := buildPredict(t, `{model: m, inputs: {x: [a, "nope*"], k: k}, outputs: {z: o}}`, pipeline.Env{Models: mgr})
	if _, _, err := tr2.Apply(context.Background(), b); err == nil || !strings.Contains(err.Error(), `no column matches "nope*"`) {
		t.Errorf("glob matching nothing: err = %v", err)
	}
}

func TestPredictRemoteErrors(t *testing.T) {
	mgr, _ := fakeManager(t)
	addr := serveGRPC(t, mgr)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	cases := []struct{ remote, model, want string }{
		{closed, "m", "remote " + closed},
		{addr, "nope", "NotFound"},
	}
	for _, tc := range cases {
		t.Run(tc.remote+"/"+tc.model, func(t *testing.T) {
			body := `{model: ` + tc.model + `, remote: "` + tc.remote + `", timeout: 2s, inputs: {x: [a, b], k: k}, outputs: {z: zz}}`
			_, err := buildPredict(t, body, pipeline.Env{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPredictRemoteServerGone(t *testing.T) {
	mgr, _ := fakeManager(t)
	addr, stop := serveGRPCStoppable(t, mgr)
	tr, err := buildPredict(t, `{model: m, remote: "`+addr+`", timeout: 2s, retries: 1, inputs: {x: [a, b], k: k}, outputs: {z: zz}}`, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	out, rej, err := tr.Apply(context.Background(), inputBatch(t, 10, -1))
	if err != nil || out != nil || len(rej) != 10 || !strings.Contains(rej[0].Err.Error(), "Unavailable") {
		t.Fatalf("out %v, rejected %d (%v), err %v; want every row rejected as unavailable", out, len(rej), rej, err)
	}
}
