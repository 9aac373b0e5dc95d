package batching

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInstanceExclusive: whether a request runs inline in its caller or
// through the queue, an instance never runs two executions at once, and
// every caller gets its own answer.
func TestInstanceExclusive(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBatchSize: 8, Instances: 2},
		{MaxBatchSize: 1, Instances: 3},
		{MaxBatchSize: 8, Instances: 1, MaxQueueDelay: 200 * time.Microsecond},
	} {
		var active [3]atomic.Int32
		var overlap atomic.Bool
		exec := func(ctx context.Context, instance int, items []Item[int]) ([]int, error) {
			if active[instance].Add(1) > 1 {
				overlap.Store(true)
			}
			time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
			active[instance].Add(-1)
			out := make([]int, len(items))
			for i, it := range items {
				out[i] = it.Value * 3
			}
			return out, nil
		}
		b, err := New(cfg, exec)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					v := g*1000 + i
					got, _, err := b.Submit(context.Background(), v, Options{})
					if err != nil || got != v*3 {
						t.Errorf("Submit(%d) = %d, %v", v, got, err)
						return
					}
					if rand.IntN(4) == 0 {
						time.Sleep(time.Duration(rand.IntN(100)) * time.Microsecond)
					}
				}
			}()
		}
		wg.Wait()
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if overlap.Load() {
			t.Fatalf("%+v: an instance ran two executions at once", cfg)
		}
	}
}

// TestCloseWaitsForInline: Close returns only after an execution running
// inline in a caller's goroutine has finished.
func TestCloseWaitsForInline(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{})
	b, err := New(Config{MaxBatchSize: 4}, func(ctx context.Context, _ int, items []Item[int]) ([]int, error) {
		close(entered)
		<-gate
		return []int{items[0].Value}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, _, err := b.Submit(context.Background(), 7, Options{})
		res <- err
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an execution was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Submit(context.Background(), 1, Options{}); err == nil {
		t.Fatal("Submit after Close succeeded")
	}
}

// TestExecReusesResultSlice: ExecFunc may reuse its result slice on its
// next call for the same instance. Every caller must still get its own
// answer, on the inline path and through the queue alike. (Under -race, a
// caller that reads the slice after releasing its instance is reported
// even when the interleaving does not corrupt an answer.)
func TestExecReusesResultSlice(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBatchSize: 8, Instances: 1},
		{MaxBatchSize: 8, Instances: 2},
		{MaxBatchSize: 1, Instances: 1},
		{MaxBatchSize: 8, Instances: 1, MaxQueueDelay: 100 * time.Microsecond},
	} {
		var bufs [2][]int
		exec := func(ctx context.Context, instance int, items []Item[int]) ([]int, error) {
			out := bufs[instance][:0]
			for _, it := range items {
				out = append(out, it.Value+1)
			}
			bufs[instance] = out
			runtime.Gosched() // let a racing caller read the slice now
			return out, nil
		}
		b, err := New(cfg, exec)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var wrong atomic.Int32
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					v := g*10000 + i
					got, _, err := b.Submit(context.Background(), v, Options{})
					if err != nil {
						t.Errorf("Submit(%d): %v", v, err)
						return
					}
					if got != v+1 {
						wrong.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := wrong.Load(); n > 0 {
			t.Errorf("%+v: %d callers got another request's answer", cfg, n)
		}
	}
}
