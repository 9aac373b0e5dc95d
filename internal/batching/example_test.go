package batching_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/kilnai/kiln/internal/batching"
)

func Example() {
	// The execute function answers a whole batch at once.
	upper := func(_ context.Context, _ int, items []batching.Item[string]) ([]string, error) {
		outs := make([]string, len(items))
		for i, it := range items {
			outs[i] = strings.ToUpper(it.Value)
		}
		return outs, nil
	}
	b, err := batching.New(batching.Config{MaxBatchSize: 16, Instances: 2}, upper)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close(context.Background())

	out, info, err := b.Submit(context.Background(), "hello", batching.Options{Rows: 1, ShapeKey: "[3]"})
	fmt.Println(out, info.BatchItems, err)
	// Output: HELLO 1 <nil>
}
