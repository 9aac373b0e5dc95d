package batching

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSubmit measures the batcher's own overhead: concurrent submitters
// and a trivial execute function that echoes into a reused slice.
func BenchmarkSubmit(b *testing.B) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"nobatch", Config{}},
		{"batch64", Config{MaxBatchSize: 64}},
		{"batch64-2inst", Config{MaxBatchSize: 64, Instances: 2}},
		{"batch64-delay100us", Config{MaxBatchSize: 64, MaxQueueDelay: 100 * time.Microsecond}},
		{"batch64-ordered", Config{MaxBatchSize: 64, Instances: 2, PreserveOrdering: true}},
	}
	for _, c := range cases {
		for _, submitters := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/submitters=%d", c.name, submitters), func(b *testing.B) {
				benchSubmit(b, c.cfg, submitters, context.Background())
			})
		}
	}
	// A cancellable context per request costs context.AfterFunc
	// registrations for the batch's execute context.
	b.Run("batch64-cancelctx/submitters=64", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		benchSubmit(b, Config{MaxBatchSize: 64}, 64, ctx)
	})
}

func benchSubmit(b *testing.B, cfg Config, submitters int, ctx context.Context) {
	outs := make([][]int, max(cfg.Instances, 1))
	exec := func(_ context.Context, instance int, items []Item[int]) ([]int, error) {
		o := outs[instance][:0]
		for _, it := range items {
			o = append(o, it.Value)
		}
		outs[instance] = o
		return o, nil
	}
	bt, err := New(cfg, exec)
	if err != nil {
		b.Fatal(err)
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		items atomic.Int64
		calls atomic.Int64
	)
	b.ReportAllocs()
	b.ResetTimer()
	for range submitters {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				v, info, err := bt.Submit(ctx, int(i), Options{})
				if err != nil || v != int(i) {
					b.Errorf("Submit(%d) = %d, %v", i, v, err)
					return
				}
				items.Add(1)
				calls.Add(int64(1e6 / info.BatchItems)) // sums to 1e6 per batch
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if n := calls.Load(); n > 0 {
		b.ReportMetric(float64(items.Load())/(float64(n)/1e6), "items/batch")
	}
	if err := bt.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
}
