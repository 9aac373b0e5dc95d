package dataset

import (
	"encoding/json"
	"testing"
	"time"
)

func TestValidRole(t *testing.T) {
	for _, tc := range []struct {
		role string
		want bool
	}{
		{"training", true}, {"validation", true}, {"test", true}, {"scoring", true},
		{"", false}, {"Training", false}, {"train", false},
	} {
		if got := ValidRole(tc.role); got != tc.want {
			t.Errorf("ValidRole(%q) = %v, want %v", tc.role, got, tc.want)
		}
	}
}

// TestRecordJSON pins the field names of a record: they are the REST
// API's (api/openapi.yaml, schema Dataset) and the pipeline_datasets
// table's profile column.
func TestRecordJSON(t *testing.T) {
	mean := 1.5
	r := Record{
		Model: "churn", Version: 3, Name: "customers", Role: "training", RunID: "r1", Digest: "sha256:00",
		DigestKind: "unordered", Rows: 2, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Profile: &Profile{Rows: 2, Columns: []*Column{
			{Name: "x", Type: "float64", Kind: "numeric", Count: 2, Mean: &mean, Quantiles: map[string]float64{"p50": 1.5},
				Histogram: &Histogram{Edges: []float64{1, 2}, Fractions: []float64{1}}},
			{Name: "c", Type: "utf8", Kind: "categorical", Count: 1, Nulls: 1, Distinct: 1, Top: []Category{{Value: "a", Count: 1}}, TopIsApprox: true},
			{Name: "t", Type: "date32", Kind: "temporal", Count: 2, First: "2026-01-01T00:00:00Z", Last: "2026-01-02T00:00:00Z"},
		}},
	}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"model":"churn","version":3,"dataset":"customers","role":"training","run_id":"r1","digest":"sha256:00",` +
		`"digest_kind":"unordered","rows":2,"profile":{"rows":2,"columns":[` +
		`{"name":"x","type":"float64","kind":"numeric","count":2,"nulls":0,"mean":1.5,"quantiles":{"p50":1.5},"histogram":{"edges":[1,2],"fractions":[1]}},` +
		`{"name":"c","type":"utf8","kind":"categorical","count":1,"nulls":1,"distinct_estimate":1,"top":[{"value":"a","count":1}],"top_approximate":true},` +
		`{"name":"t","type":"date32","kind":"temporal","count":2,"nulls":0,"first":"2026-01-01T00:00:00Z","last":"2026-01-02T00:00:00Z"}]},` +
		`"created":"2026-01-02T03:04:05Z"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var back Record
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != want {
		t.Fatalf("round trip: %s", again)
	}
}
