package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/registry/dataset"
)

func TestRegistryDatasets(t *testing.T) {
	mean, std, lo, hi := 5.84, 0.83, 4.3, 7.9
	training := dataset.Record{
		Model: "churn", Version: 3, Name: "customers-2026-11", Role: "training", RunID: "20261102T100000-0a1b2c3d",
		Digest: "sha256:" + strings.Repeat("ab", 32), DigestKind: "unordered", Rows: 150,
		Created: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC),
		Profile: &dataset.Profile{Rows: 150, Columns: []*dataset.Column{
			{Name: "sepal_length", Type: "float64", Kind: "numeric", Count: 149, Nulls: 1, Mean: &mean, Std: &std, Min: &lo, Max: &hi,
				Quantiles: map[string]float64{"p50": 5.8}},
			{Name: "species", Type: "utf8", Kind: "categorical", Count: 150, Distinct: 4, TopIsApprox: true,
				Top: []dataset.Category{{Value: "setosa", Count: 50}, {Value: "versicolor", Count: 49}, {Value: "virginica", Count: 48}, {Value: "other", Count: 3}}},
			{Name: "seen", Type: "timestamp[us, tz=UTC]", Kind: "temporal", Count: 150, First: "2026-01-01T00:00:00Z", Last: "2026-03-01T00:00:00Z"},
		}},
	}
	scoring := dataset.Record{
		Model: "churn", Version: 3, Name: "scoring-daily", Role: "scoring", RunID: "20261101T100000-99887766", Task: "part-0002",
		Digest: "sha256:" + strings.Repeat("cd", 32), DigestKind: "ordered", Rows: 20,
		Created: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
	}
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/models/churn/versions/3/datasets":
			var out []dataset.Record
			for _, d := range []dataset.Record{training, scoring} {
				if role := r.URL.Query().Get("role"); role != "" && d.Role != role {
					continue
				}
				if r.URL.Query().Get("profile") == "false" {
					d.Profile = nil
				}
				out = append(out, d)
			}
			_ = json.NewEncoder(w).Encode(datasetPage{Datasets: out})
		case "/api/v1/models/churn/versions/4/datasets":
			w.Write([]byte(`{"datasets":[]}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"NOT_FOUND","message":"model churn version 9 not found"}}`))
		}
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name      string
		args      []string
		wantCode  int
		wantQuery string   // what the server was asked ("-" when it must not be asked)
		want      []string // in stdout (or stderr when the exit code is not 0)
		notWant   []string
	}{
		{name: "table", args: []string{"churn", "3"}, wantQuery: "profile=false",
			want:    []string{"DATASET", "TASK", "customers-2026-11", "training", "150", "sha256:abababababab ", "20261102T100000-0a1b2c3d", "2026-11-02T10:00:00Z", "scoring-daily", "part-0002"},
			notWant: []string{"sepal_length", strings.Repeat("ab", 32)}},
		{name: "role", args: []string{"churn", "3", "--role", "training"}, wantQuery: "profile=false&role=training",
			want: []string{"customers-2026-11"}, notWant: []string{"scoring-daily", "TASK"}},
		{name: "profile", args: []string{"churn", "3", "--profile"}, wantQuery: "",
			want: []string{
				"customers-2026-11 (training): 150 rows, sha256:" + strings.Repeat("ab", 32) + " (unordered), run 20261102T100000-0a1b2c3d",
				"COLUMN", "sepal_length", "5.84", "0.83", "4.3", "5.8", "7.9",
				"species", "setosa=50, versicolor=49, virginica=48, … (approx.)",
				"seen", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z",
				"scoring-daily (scoring): 20 rows", "task part-0002", "no profile"}},
		{name: "json", args: []string{"churn", "3", "--json", "--role", "scoring"}, wantQuery: "role=scoring",
			want: []string{`"datasets": [`, `"digest_kind": "ordered"`, `"task": "part-0002"`}},
		{name: "empty", args: []string{"churn", "4"}, wantQuery: "profile=false", want: []string{"no datasets recorded for churn version 4"}},
		{name: "empty role", args: []string{"churn", "4", "--role", "test"}, wantQuery: "profile=false&role=test", want: []string{"no test datasets recorded for churn version 4"}},
		{name: "unknown version", args: []string{"churn", "9"}, wantCode: 1, wantQuery: "profile=false", want: []string{"not found", "NOT_FOUND", "404"}},
		{name: "bad version", args: []string{"churn", "three"}, wantCode: 2, wantQuery: "-", want: []string{"not a number"}},
		{name: "bad role", args: []string{"churn", "3", "--role", "train"}, wantCode: 2, wantQuery: "-", want: []string{"training, validation, test, scoring"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			queries = nil
			mu.Unlock()
			var out, errb bytes.Buffer
			code := Main(context.Background(), append([]string{"registry", "datasets", "--url", srv.URL}, tc.args...), &out, &errb)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			text := out.String()
			if code != 0 {
				text = errb.String()
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output does not mention %q:\n%s", w, text)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(text, w) {
					t.Errorf("output mentions %q:\n%s", w, text)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.wantQuery == "-" && len(queries) != 0:
				t.Errorf("the server was asked %q", queries)
			case tc.wantQuery != "-" && (len(queries) != 1 || queries[0] != tc.wantQuery):
				t.Errorf("queries %q, want %q", queries, tc.wantQuery)
			}
		})
	}
}
