package serving_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/serving/respcache"
	"github.com/kilnai/kiln/internal/tensor"
)

func TestWarmup(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		files   map[string]string
		wantErr string
		calls   []int64 // batch sizes the backend saw during load
	}{
		{name: "zeros and random on 2 instances", config: `
max_batch_size: 8
instances: 2
warmup:
  - {name: zeros, batch_size: 4, count: 2}
  - {name: random, batch_size: 1, inputs: {x: {random_data: true}}}
`, calls: []int64{4, 4, 4, 4, 1, 1}},
		{name: "file", config: `
max_batch_size: 8
warmup: [{name: file, batch_size: 1, inputs: {x: {input_data_file: warmup/x.bin}}}]
`, files: map[string]string{"m/warmup/x.bin": "0123456789abcdef"}, calls: []int64{1}},
		{name: "file of the wrong size", config: `
max_batch_size: 8
warmup: [{name: file, batch_size: 2, inputs: {x: {input_data_file: warmup/x.bin}}}]
`, files: map[string]string{"m/warmup/x.bin": "0123456789abcdef"}, wantErr: "data bytes"},
		{name: "file outside the model", config: `
warmup: [{name: escape, inputs: {x: {input_data_file: ../../etc/passwd}}}]
`, wantErr: "input_data_file"},
		{name: "unknown input", config: `
warmup: [{name: w, inputs: {nope: {zero_data: true}}}]
`, wantErr: "no input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"m/1/model.fake.json": fakeSpec, "m/config.yaml": tc.config}
			for k, v := range tc.files {
				files[k] = v
			}
			fake := inferencetest.NewFake()
			m := newManager(t, repo(t, files), fake)
			err := m.Load(context.Background(), "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("load error %v, want %q", err, tc.wantErr)
				}
				if ready, _ := m.Ready("m", ""); ready {
					t.Fatal("model READY although warm-up failed")
				}
				if fake.Open() != 0 {
					t.Fatalf("%d instances left open after a failed warm-up", fake.Open())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fake.BatchSizes()
			if len(got) != len(tc.calls) {
				t.Fatalf("warm-up calls %v, want %v", got, tc.calls)
			}
			for i := range got {
				if got[i] != tc.calls[i] {
					t.Fatalf("warm-up calls %v, want %v", got, tc.calls)
				}
			}
			// Warm-up is not traffic.
			st, _ := m.Statistics("m", "")
			if st[0].InferenceCount != 0 {
				t.Fatalf("warm-up counted as inference: %+v", st[0])
			}
		})
	}
}

// TestFailedWarmupKeepsOldVersion: a new incarnation whose warm-up fails
// never replaces the serving one.
func TestFailedWarmupKeepsOldVersion(t *testing.T) {
	dir := repo(t, map[string]string{"m/1/model.fake.json": fakeSpec, "m/config.yaml": "max_batch_size: 4\n"})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	bad := "max_batch_size: 4\nwarmup: [{name: w, inputs: {x: {input_data_file: missing.bin}}}]\n"
	if err := os.WriteFile(filepath.Join(dir, "m", "config.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background(), "m"); err == nil {
		t.Fatal("load with failing warm-up succeeded")
	}
	if _, err := m.Infer(context.Background(), "m", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}}); err != nil {
		t.Fatalf("old version stopped serving: %v", err)
	}
}

func TestSync(t *testing.T) {
	dir := repo(t, map[string]string{"a/1/model.fake.json": fakeSpec, "b/1/model.fake.json": fakeSpec})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	loads := fake.Loads()
	// Nothing changed: nothing reloads.
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fake.Loads() != loads {
		t.Fatalf("sync without changes loaded %d models", fake.Loads()-loads)
	}
	// A new version appears, a model disappears, a new model appears.
	for p, c := range map[string]string{"a/2/model.fake.json": fakeSpec, "c/1/model.fake.json": fakeSpec} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, err := m.Infer(context.Background(), "a", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}})
	if err != nil || resp.Version != 2 {
		t.Fatalf("a after sync: %v %+v", err, resp)
	}
	if _, err := m.Infer(context.Background(), "c", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}}); err != nil {
		t.Fatalf("c after sync: %v", err)
	}
	if _, err := m.Infer(context.Background(), "b", "", &serving.Request{Inputs: []tensor.Tensor{rowsInput(1, 0)}}); !errors.Is(err, serving.ErrModelNotFound) {
		t.Fatalf("b after removal: %v", err)
	}
	// An explicitly unloaded model stays unloaded across syncs.
	if err := m.Unload(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ready, _ := m.Ready("c", ""); ready {
		t.Fatal("sync reloaded an explicitly unloaded model")
	}
	if open := fake.Open(); open != 1 {
		t.Fatalf("%d instances open, want only a's version 2", open)
	}
}

func TestResponseCache(t *testing.T) {
	dir := repo(t, map[string]string{
		"m/config.yaml":       "max_batch_size: 8\nresponse_cache: true\n",
		"m/1/model.fake.json": fakeSpec,
		"m/2/model.fake.json": fakeSpec,
		"n/1/model.fake.json": fakeSpec, // caching off
	})
	fake := inferencetest.NewFake()
	m := serving.New(serving.Options{
		Catalog:  catalog.NewRepository(dir),
		Backends: []inference.Backend{fake},
		Cache:    respcache.NewLRU(1 << 20),
	})
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if err := m.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	in := rowsInput(2, 7)
	infer := func(model string) *serving.Response {
		t.Helper()
		resp, err := m.Infer(context.Background(), model, "", &serving.Request{Inputs: []tensor.Tensor{in}})
		if err != nil {
			t.Fatal(err)
		}
		checkOutput(t, resp, in)
		return resp
	}
	infer("m")
	infer("m")
	infer("n")
	infer("n")
	calls := len(fake.Calls())
	if calls != 3 {
		t.Fatalf("backend ran %d times, want 3 (m once, n twice)", calls)
	}
	st, _ := m.Statistics("m", "2")
	if st[0].CacheHit.Count != 1 || st[0].CacheMiss.Count != 1 || st[0].Success.Count != 2 || st[0].InferenceCount != 2 {
		t.Fatalf("stats %+v", st[0])
	}
	// Another version never answers from version 2's entries.
	if err := os.WriteFile(filepath.Join(dir, "m", "config.yaml"), []byte("max_batch_size: 8\nresponse_cache: true\nversion_policy: {specific: [1]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	if resp := infer("m"); resp.Version != 1 {
		t.Fatalf("version %d", resp.Version)
	}
	if len(fake.Calls()) != calls+1 {
		t.Fatal("version 1 was answered from version 2's cache entry")
	}
	// A reload of the same version number with a changed file misses too.
	spec := filepath.Join(dir, "m", "1", "model.fake.json")
	if err := os.WriteFile(spec, []byte(fakeSpec+" "), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	infer("m")
	if len(fake.Calls()) != calls+2 {
		t.Fatal("a changed model file was answered from the old file's cache entry")
	}
}
