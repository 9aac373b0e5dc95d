package transform

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/kilnai/kiln/internal/pipeline"
)

// passCounter counts the engine's "fitting pass" log records.
type passCounter struct {
	slog.Handler
	n *atomic.Int32
}

func (h passCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h passCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "fitting pass" {
		h.n.Add(1)
	}
	return nil
}

func (h passCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h passCounter) WithGroup(string) slog.Handler      { return h }

// runCounted runs a pipeline of the generated source through transforms
// and returns the rows out, the run record and how many passes the run
// made over the data (fitting passes + the main pass). The source must
// have been read once whatever the passes: later passes replay the spill
// of the one before.
func runCounted(t *testing.T, key, transforms string) ([]map[string]any, *pipeline.RunRecord, int) {
	t.Helper()
	resetCollected(key)
	genReads.Lock()
	delete(genReads.n, key)
	genReads.Unlock()
	spec := fmt.Sprintf(`
source:
  transformtest_gen: {batches: 6, rows: 400, key: %[1]s}
transforms:
%[2]s
sinks:
  - transformtest_collect: {key: %[1]s}
settings: {parallelism: 3, ordered: true}
`, key, transforms)
	plan, err := pipeline.Parse("fitpass.yaml", []byte(spec), nil)
	if err != nil {
		t.Fatal(err)
	}
	var passes atomic.Int32
	log := slog.New(passCounter{Handler: slog.DiscardHandler, n: &passes})
	rec, err := (&pipeline.Engine{DataDir: t.TempDir(), Logger: log}).Run(context.Background(), plan, pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	collected.Lock()
	out := collected.rows[key]
	collected.Unlock()
	genReads.Lock()
	n := genReads.n[key]
	genReads.Unlock()
	if n != 1 {
		t.Errorf("source read %d times, want once", n)
	}
	return out, rec, int(passes.Load()) + 1
}

// TestFittersShareOnePass: the benchmark's shape (filter, standardize,
// one_hot) makes two passes, one fitting pass and the main pass,
// with the results of fitting each transform in a pass of its own (made
// here by an identity filter between them, which keeps them apart).
func TestFittersShareOnePass(t *testing.T) {
	cases := []struct {
		name                    string
		together, apart         string
		passesTogether, passesA int
	}{
		{
			name: "standardize+one_hot",
			together: `  - filter: "amount >= 10"
  - standardize: {columns: [amount]}
  - one_hot: {column: country}`,
			apart: `  - filter: "amount >= 10"
  - standardize: {columns: [amount]}
  - filter: "true"
  - one_hot: {column: country}`,
			passesTogether: 2, passesA: 3,
		},
		{
			name: "min_max+standardize+one_hot+sample",
			together: `  - min_max: {columns: [id]}
  - standardize: {columns: [amount]}
  - one_hot: {column: country, unknown: reject}
  - sample: {n: 500, seed: 7, by: [id]}`,
			apart: `  - min_max: {columns: [id]}
  - filter: "true"
  - standardize: {columns: [amount]}
  - filter: "true"
  - one_hot: {column: country, unknown: reject}
  - filter: "true"
  - sample: {n: 500, seed: 7, by: [id]}`,
			// sample hashes id, which min_max rewrites: a pass of its own.
			passesTogether: 3, passesA: 5,
		},
		{
			name: "a fitter reading what the one before writes",
			together: `  - standardize: {columns: [amount]}
  - min_max: {columns: [amount]}`,
			apart: `  - standardize: {columns: [amount]}
  - filter: "true"
  - min_max: {columns: [amount]}`,
			passesTogether: 3, passesA: 3,
		},
		{
			name: "one_hot keeping its column, then a fitter on it",
			together: `  - one_hot: {column: country, drop_original: false}
  - sample: {n: 100, seed: 3, by: [country, id]}`,
			apart: `  - one_hot: {column: country, drop_original: false}
  - filter: "true"
  - sample: {n: 100, seed: 3, by: [country, id]}`,
			passesTogether: 2, passesA: 3,
		},
		{
			name: "sample of whole rows after a fitter",
			together: `  - standardize: {columns: [amount]}
  - sample: {n: 100, seed: 3}`,
			apart: `  - standardize: {columns: [amount]}
  - filter: "true"
  - sample: {n: 100, seed: 3}`,
			passesTogether: 3, passesA: 3,
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outT, recT, nT := runCounted(t, fmt.Sprintf("fitpass-%d-together", i), c.together)
			outA, recA, nA := runCounted(t, fmt.Sprintf("fitpass-%d-apart", i), c.apart)
			if nT != c.passesTogether || nA != c.passesA {
				t.Errorf("%d and %d passes, want %d and %d", nT, nA, c.passesTogether, c.passesA)
			}
			if len(outT) == 0 || !reflect.DeepEqual(outT, outA) {
				t.Fatalf("outputs differ: %d rows vs %d rows", len(outT), len(outA))
			}
			// The same parameters, by component, in order.
			byName := func(r *pipeline.RunRecord) []map[string]any {
				var ps []map[string]any
				for _, s := range r.Stages {
					if p, ok := r.Params[s.Stage]; ok {
						ps = append(ps, p)
					}
				}
				return ps
			}
			if pT, pA := byName(recT), byName(recA); len(pT) == 0 || !reflect.DeepEqual(pT, pA) {
				t.Errorf("parameters differ:\n%v\n%v", pT, pA)
			}
		})
	}
}
