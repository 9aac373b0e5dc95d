package serving_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

const fakeSpec = `{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
 "outputs":[{"name":"y","datatype":"FP32","shape":[-1,4],"from":"x"}]}`

// repo writes a model repository: files maps relative paths to contents.
func repo(t *testing.T, files map[string]string) string {
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
	return dir
}

func newManager(t *testing.T, dir string, fake *inferencetest.Fake) *serving.Manager {
	t.Helper()
	m := serving.New(serving.Options{
		Catalog:    catalog.NewRepository(dir),
		Backends:   []inference.Backend{fake},
		Registerer: prometheus.NewRegistry(),
	})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func rowsInput(rows int, base float32) tensor.Tensor {
	vals := make([]float32, rows*4)
	for i := range vals {
		vals[i] = base + float32(i)
	}
	return tensor.Tensor{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{int64(rows), 4}, Data: tensor.AsBytes(vals)}
}

func checkOutput(t *testing.T, resp *serving.Response, in tensor.Tensor) {
	t.Helper()
	if len(resp.Outputs) != 1 {
		t.Fatalf("got %d outputs, want 1", len(resp.Outputs))
	}
	want := inferencetest.Expected(in, resp.Version)
	want.Name = "y"
	if err := inferencetest.CompareTensor(resp.Outputs[0], want, 0); err != nil {
		t.Fatal(err)
	}
}

func TestLoadInferAndStates(t *testing.T) {
	dir := repo(t, map[string]string{
		"good/1/model.fake.json":    fakeSpec,
		"good/2/model.fake.json":    fakeSpec,
		"broken/config.yaml":        "max_batch_size: 4\nbogus_key: 1\n",
		"broken/1/model.fake.json":  fakeSpec,
		"badfile/1/model.fake.json": "{not json",
		"empty/README":              "no versions",
	})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	idx, err := m.Index(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]serving.IndexEntry{}
	for _, e := range idx {
		states[e.Name+"/"+e.Version] = e
	}
	tests := []struct {
		key   string
		state serving.State
	}{
		{"good/2", serving.StateReady},
		{"broken/", serving.StateUnavailable},
		{"badfile/1", serving.StateUnavailable},
		{"empty/", serving.StateUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			e, ok := states[tc.key]
			if !ok {
				t.Fatalf("index has no %s: %+v", tc.key, idx)
			}
			if e.State != tc.state {
				t.Fatalf("state %s, want %s (reason %q)", e.State, tc.state, e.Reason)
			}
			if tc.state == serving.StateUnavailable && e.Reason == "" {
				t.Fatal("unavailable without a reason")
			}
		})
	}
	if _, ok := states["good/1"]; ok {
		t.Fatal("default policy latest:1 must not serve version 1")
	}
	if m.AllReady() {
		t.Fatal("AllReady with broken models")
	}

	in := rowsInput(2, 1)
	resp, err := m.Infer(context.Background(), "good", "", &serving.Request{Inputs: []tensor.Tensor{in}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != 2 {
		t.Fatalf("served version %d, want 2", resp.Version)
	}
	checkOutput(t, resp, in)

	_, err = m.Infer(context.Background(), "good", "1", &serving.Request{Inputs: []tensor.Tensor{in}})
	if !errors.Is(err, serving.ErrModelNotFound) {
		t.Fatalf("version 1: %v, want ErrModelNotFound", err)
	}
	_, err = m.Infer(context.Background(), "nope", "", &serving.Request{Inputs: []tensor.Tensor{in}})
	if !errors.Is(err, serving.ErrModelNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
	_, err = m.Infer(context.Background(), "broken", "", &serving.Request{Inputs: []tensor.Tensor{in}})
	if !errors.Is(err, serving.ErrModelNotReady) {
		t.Fatalf("broken model: %v, want ErrModelNotReady", err)
	}
}

func TestRequestValidation(t *testing.T) {
	dir := repo(t, map[string]string{"m/1/model.fake.json": fakeSpec})
	m := newManager(t, dir, inferencetest.NewFake())
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	good := rowsInput(1, 0)
	tests := []struct {
		name string
		req  serving.Request
	}{
		{"no inputs", serving.Request{}},
		{"unknown input", serving.Request{Inputs: []tensor.Tensor{{Name: "z", DataType: tensor.FP32, Shape: tensor.Shape{1, 4}, Data: good.Data}}}},
		{"wrong datatype", serving.Request{Inputs: []tensor.Tensor{{Name: "x", DataType: tensor.FP64, Shape: tensor.Shape{1, 4}, Data: make([]byte, 32)}}}},
		{"wrong shape", serving.Request{Inputs: []tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{1, 5}, Data: make([]byte, 20)}}}},
		{"short data", serving.Request{Inputs: []tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{2, 4}, Data: good.Data}}}},
		{"too many rows", serving.Request{Inputs: []tensor.Tensor{rowsInput(65, 0)}}},
		{"zero rows", serving.Request{Inputs: []tensor.Tensor{{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{0, 4}, Data: []byte{}}}}},
		{"unknown output", serving.Request{Inputs: []tensor.Tensor{good}, Outputs: []string{"nope"}}},
		{"duplicate input", serving.Request{Inputs: []tensor.Tensor{good, good}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Infer(context.Background(), "m", "", &tc.req)
			if !errors.Is(err, inference.ErrInvalidInput) {
				t.Fatalf("got %v, want ErrInvalidInput", err)
			}
		})
	}
}

// TestBatchedCounts: a request of 1 row and one of 8 rows that share a
// batch count inferences=9, executions=1, and each gets its own rows back.
func TestBatchedCounts(t *testing.T) {
	dir := repo(t, map[string]string{
		"m/config.yaml":       "max_batch_size: 16\ndynamic_batching: {max_queue_delay: 10s, preferred_batch_sizes: [9]}\n",
		"m/1/model.fake.json": fakeSpec,
	})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, rows := range []int{1, 8} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := rowsInput(rows, float32(rows*100))
			resp, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{in}})
			if err != nil {
				t.Error(err)
				return
			}
			checkOutput(t, resp, in)
		}()
	}
	wg.Wait()
	st, err := m.Statistics("m", "1")
	if err != nil {
		t.Fatal(err)
	}
	if st[0].InferenceCount != 9 || st[0].ExecutionCount != 1 {
		t.Fatalf("inference_count %d execution_count %d, want 9 and 1", st[0].InferenceCount, st[0].ExecutionCount)
	}
	if st[0].Success.Count != 2 || len(st[0].Batches) != 1 || st[0].Batches[0].BatchSize != 9 {
		t.Fatalf("stats %+v", st[0])
	}
	if got := fake.BatchSizes(); len(got) != 1 || got[0] != 9 {
		t.Fatalf("backend saw batches %v, want [9]", got)
	}
}

// TestReloadUnderLoad: reloading a model whose file changed swaps versions
// while clients keep sending; no request fails.
func TestReloadUnderLoad(t *testing.T) {
	dir := repo(t, map[string]string{
		"m/config.yaml":       "max_batch_size: 8\ninstances: 2\n",
		"m/1/model.fake.json": fakeSpec,
	})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				in := rowsInput(1, float32(c))
				resp, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{in}})
				if err != nil {
					failed.Add(1)
					t.Errorf("infer during reload: %v", err)
					return
				}
				checkOutput(t, resp, in)
				ok.Add(1)
			}
		}()
	}
	spec := filepath.Join(dir, "m", "1", "model.fake.json")
	for i := 0; i < 30; i++ {
		// Touch the model file so the reload cannot keep the old version.
		now := time.Now().Add(time.Duration(i+1) * time.Second)
		if err := os.Chtimes(spec, now, now); err != nil {
			t.Fatal(err)
		}
		if err := m.Load(context.Background(), "m"); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during reloads", failed.Load())
	}
	if fake.Loads() < 31*2 {
		t.Fatalf("backend loads %d: the reloads did not load new versions", fake.Loads())
	}
	// Every replaced version was closed: only the serving instances stay open.
	if open := fake.Open(); open != 2 {
		t.Fatalf("%d fake models open, want the 2 instances of the serving version", open)
	}
	t.Logf("%d requests succeeded across 30 reloads", ok.Load())
}

// TestFailedReloadKeepsOldVersion: a reload whose load fails leaves the
// previous version serving and reports why.
func TestFailedReloadKeepsOldVersion(t *testing.T) {
	dir := repo(t, map[string]string{"m/1/model.fake.json": fakeSpec})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "m", "1", "model.fake.json"), []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background(), "m"); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	in := rowsInput(1, 0)
	resp, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{in}})
	if err != nil {
		t.Fatalf("old version stopped serving: %v", err)
	}
	checkOutput(t, resp, in)
	idx, _ := m.Index(context.Background(), false)
	if len(idx) != 1 || idx[0].State != serving.StateReady || idx[0].Reason == "" {
		t.Fatalf("index %+v: want READY with the failure as reason", idx)
	}
}

func TestVersionPolicies(t *testing.T) {
	files := func(policy string) map[string]string {
		f := map[string]string{}
		for v := 1; v <= 3; v++ {
			f[fmt.Sprintf("m/%d/model.fake.json", v)] = fakeSpec
		}
		if policy != "" {
			f["m/config.yaml"] = "version_policy: " + policy + "\n"
		}
		return f
	}
	tests := []struct {
		policy string
		want   []string
	}{
		{"", []string{"3"}},
		{"{latest: 2}", []string{"2", "3"}},
		{"all", []string{"1", "2", "3"}},
		{"{specific: [1, 3]}", []string{"1", "3"}},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			m := newManager(t, repo(t, files(tc.policy)), inferencetest.NewFake())
			if err := m.Load(context.Background(), "m"); err != nil {
				t.Fatal(err)
			}
			idx, _ := m.Index(context.Background(), true)
			var got []string
			for _, e := range idx {
				got = append(got, e.Version)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("served %v, want %v", got, tc.want)
			}
			for _, v := range tc.want {
				if _, err := m.Infer(context.Background(), "m", v, &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}}); err != nil {
					t.Fatalf("version %s: %v", v, err)
				}
			}
		})
	}
}

// TestUnloadWaitsForInFlight: unload returns only after the running
// request finished, and that request succeeds.
func TestUnloadWaitsForInFlight(t *testing.T) {
	dir := repo(t, map[string]string{"m/1/model.fake.json": fakeSpec})
	fake := inferencetest.NewFake()
	gate := make(chan struct{})
	entered := make(chan inferencetest.Call, 1)
	fake.SetGate(gate)
	fake.SetEntered(entered)
	m := newManager(t, dir, fake)
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}})
		res <- err
	}()
	<-entered
	unloaded := make(chan error, 1)
	go func() { unloaded <- m.Unload(context.Background(), "m") }()
	// New requests are refused at once while the unload drains.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready, err := m.Ready("m", "")
		if err != nil {
			t.Fatal(err)
		}
		if !ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("model still ready after unload started")
		}
		time.Sleep(time.Millisecond)
	}
	_, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}})
	if !errors.Is(err, serving.ErrModelNotReady) {
		t.Fatalf("infer during unload: %v, want ErrModelNotReady", err)
	}
	select {
	case err := <-unloaded:
		t.Fatalf("unload returned (%v) while a request was in flight", err)
	default:
	}
	close(gate)
	if err := <-res; err != nil {
		t.Fatalf("in-flight request failed: %v", err)
	}
	if err := <-unloaded; err != nil {
		t.Fatal(err)
	}
	if fake.Open() != 0 {
		t.Fatalf("%d models still open after unload", fake.Open())
	}
}

// loadCounter is a serving.LoadObserver that records what it is told.
type loadCounter struct {
	mu                sync.Mutex
	in, peak, entered int
	exited            int
}

func (l *loadCounter) Enter() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.in++
	l.entered++
	l.peak = max(l.peak, l.in)
}

func (l *loadCounter) Exit() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.in--
	l.exited++
}

// TestLoadObserver checks that every Infer call, answered or failed, is
// announced and retired once, and that concurrent calls overlap.
func TestLoadObserver(t *testing.T) {
	dir := repo(t, map[string]string{"good/1/model.fake.json": fakeSpec})
	fake := inferencetest.NewFake()
	load := &loadCounter{}
	m := serving.New(serving.Options{
		Catalog:    catalog.NewRepository(dir),
		Backends:   []inference.Backend{fake},
		Registerer: prometheus.NewRegistry(),
		Load:       load,
	})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if err := m.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	in := rowsInput(1, 0)
	if _, err := m.Infer(context.Background(), "good", "", &serving.Request{Inputs: []tensor.Tensor{in}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(context.Background(), "nope", "", &serving.Request{Inputs: []tensor.Tensor{in}}); err == nil {
		t.Fatal("inference on a missing model succeeded")
	}
	fake.SetDelay(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := m.Infer(context.Background(), "good", "", &serving.Request{Inputs: []tensor.Tensor{in}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	load.mu.Lock()
	defer load.mu.Unlock()
	if load.entered != 6 || load.exited != 6 || load.in != 0 {
		t.Errorf("entered %d, exited %d, in flight %d; want 6, 6, 0", load.entered, load.exited, load.in)
	}
	if load.peak < 2 {
		t.Errorf("peak in flight %d with 4 concurrent slow calls, want at least 2", load.peak)
	}
}
