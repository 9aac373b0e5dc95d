package serving_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

// TestLifecycleStress: 32 goroutines load, unload, reload and infer on
// the same models at once (run with -race). Every inference either
// succeeds with the right answer or fails with "not found"/"not ready";
// nothing else, and nothing is left open at the end.
func TestLifecycleStress(t *testing.T) {
	dir := repo(t, map[string]string{
		"a/config.yaml":       "max_batch_size: 8\ninstances: 2\ndynamic_batching: {max_queue_delay: 100us}\n",
		"a/1/model.fake.json": fakeSpec,
		"a/2/model.fake.json": fakeSpec,
		"b/config.yaml":       "max_batch_size: 0\n",
		"b/1/model.fake.json": `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1,4],"from":"x"}]}`,
	})
	fake := inferencetest.NewFake()
	m := newManager(t, dir, fake)
	if err := m.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for time.Now().Before(deadline) {
				name := []string{"a", "b"}[rng.IntN(2)]
				switch op := rng.IntN(20); {
				case op == 0:
					if err := m.Unload(context.Background(), name); err != nil {
						errs <- err
						return
					}
				case op == 1:
					if err := m.Load(context.Background(), name); err != nil {
						errs <- err
						return
					}
				case op == 2:
					spec := filepath.Join(dir, name, "1", "model.fake.json")
					ts := time.Now().Add(time.Duration(rng.IntN(1000)) * time.Second)
					_ = os.Chtimes(spec, ts, ts)
				case op == 3:
					_, _ = m.Index(context.Background(), false)
					_, _ = m.Statistics("", "")
				default:
					in := rowsInput(1, float32(g))
					resp, err := m.Infer(context.Background(), name, "", &serving.Request{Inputs: []tensor.Tensor{in}})
					if errors.Is(err, serving.ErrModelNotReady) || errors.Is(err, serving.ErrModelNotFound) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					want := inferencetest.Expected(in, resp.Version)
					want.Name = "y"
					if err := inferencetest.CompareTensor(resp.Outputs[0], want, 0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if open := fake.Open(); open != 0 {
		t.Fatalf("%d model instances still open after Close", open)
	}
}
