package sqlstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kilnai/kiln/internal/registry"
)

func TestDecodeImmutable(t *testing.T) {
	docs := []immutableJSON{
		{},
		{Metrics: map[string]registry.Metric{}, Params: map[string]string{}},
		{Metrics: map[string]registry.Metric{"acc": {Value: 0.93, Direction: registry.HigherIsBetter}, "lat": {Value: -1e-300, Direction: "lower"}},
			Params: map[string]string{"lr": "0.1", "ünï": "\"quoted\"\n"},
			Signature: &registry.Signature{Inputs: []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}, {Name: "m"}},
				Outputs: []registry.TensorSpec{{Name: "y", Shape: []int64{}}}},
			Lineage: &registry.Lineage{PipelineRunID: "run-1", DatasetDigests: []string{"sha256:aa", ""}}},
		{Signature: &registry.Signature{}, Lineage: &registry.Lineage{}},
	}
	for i, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeImmutable(b)
		if err != nil {
			t.Fatalf("doc %d %s: %v", i, b, err)
		}
		var want immutableJSON
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("doc %d %s:\n got %#v\nwant %#v", i, b, got, want)
		}
	}
	for _, bad := range []string{``, `[]`, `{"metrics":[]}`, `{"metrics":{"a":{"value":"x"}}}`, `{"params":{"a":1}}`,
		`{"signature":{"inputs":[{"shape":[1.5]}]}}`, `{"signature":{"inputs":{}}}`, `{"lineage":{"dataset_digests":[1]}}`, `{"metrics":{"a":3}}`} {
		if _, err := decodeImmutable([]byte(bad)); err == nil {
			t.Errorf("decodeImmutable(%s) succeeded", bad)
		}
	}
}

// FuzzDecodeImmutable checks the fast decoder against encoding/json: it
// never panics on any input, and on every document encoding/json writes
// (the only kind stored in a row) it decodes exactly what encoding/json does.
func FuzzDecodeImmutable(f *testing.F) {
	f.Add([]byte(`{"metrics":{"acc":{"value":0.5,"direction":"higher"}},"params":{"lr":"0.1"},"signature":{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}]},"lineage":{"pipeline_run_id":"r","dataset_digests":["d"]}}`))
	f.Add([]byte(`{"metrics":null,"params":{},"signature":null}`))
	f.Add([]byte(`{"signature":{"outputs":[{"shape":null}]},"lineage":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeImmutable(b) // must not panic
		var want immutableJSON
		if json.Unmarshal(b, &want) != nil {
			return
		}
		canon, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		want = immutableJSON{}
		if err := json.Unmarshal(canon, &want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeImmutable(canon)
		if err != nil {
			t.Fatalf("%s: %v", canon, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", canon, got, want)
		}
	})
}

func TestImmCache(t *testing.T) {
	full := immutableJSON{
		Metrics:   map[string]registry.Metric{"acc": {Value: 0.9, Direction: registry.HigherIsBetter}},
		Params:    map[string]string{"lr": "0.1"},
		Signature: &registry.Signature{Inputs: []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}}},
		Lineage:   &registry.Lineage{PipelineRunID: "r", DatasetDigests: []string{"sha256:aa"}},
	}
	other := immutableJSON{Metrics: map[string]registry.Metric{"f1": {Value: 0.5, Direction: registry.HigherIsBetter}}, Params: map[string]string{}}
	raw := func(d immutableJSON) []byte {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var c immCache
	steps := []struct {
		name string
		id   int64
		doc  immutableJSON
	}{
		{"miss", 1, full},
		{"hit", 1, full},
		{"same id, other document (reused row id)", 1, other},
		{"back to the first document", 1, full},
		{"other id", 2, other},
	}
	for _, st := range steps {
		got, err := c.decode(st.id, raw(st.doc))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		want, err := decodeImmutable(raw(st.doc))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %#v\nwant %#v", st.name, got, want)
		}
		// what a caller does to its copy must not reach the next reader
		got.Metrics["acc"] = registry.Metric{Value: -1}
		got.Params["lr"] = "changed"
		if got.Signature != nil {
			got.Signature.Inputs[0].Shape[1] = 99
			got.Signature.Inputs[0].Name = "changed"
		}
		if got.Lineage != nil {
			got.Lineage.DatasetDigests[0] = "changed"
		}
	}
	if _, err := c.decode(3, []byte(`{"metrics":[]}`)); err == nil {
		t.Fatal("a bad document decoded")
	}
	if _, ok := c.m[3]; ok {
		t.Fatal("a bad document was cached")
	}
}
