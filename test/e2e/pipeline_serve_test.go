package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

type pipeIrisRow struct {
	ID          int64   `json:"id"`
	SepalLength float64 `json:"sepal_length"`
	SepalWidth  float64 `json:"sepal_width"`
	PetalLength float64 `json:"petal_length"`
	PetalWidth  float64 `json:"petal_width"`
	Species     string  `json:"species"`
}

// irisRows reads the example data, skipping rows with a missing value.
func pipeIrisRows(t *testing.T) []pipeIrisRow {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(), "examples", "pipelines", "data", "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []pipeIrisRow
	for _, r := range recs[1:] {
		if r[2] == "" {
			continue
		}
		num := func(s string) float64 {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		id, _ := strconv.ParseInt(r[0], 10, 64)
		out = append(out, pipeIrisRow{ID: id, SepalLength: num(r[1]), SepalWidth: num(r[2]), PetalLength: num(r[3]), PetalWidth: num(r[4]), Species: r[5]})
	}
	return out
}

// TestPipelineInsideServe submits a pipeline to kiln serve: an HTTP JSON
// API (paged) → predict with the server's own iris model, in-process → an
// HTTP endpoint; then reads the run back over the API.
func TestPipelineInsideServe(t *testing.T) {
	requireORT(t)
	rows := pipeIrisRows(t)
	var mu sync.Mutex
	var got []map[string]any
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/iris":
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			lo := min(max(page-1, 0)*40, len(rows))
			hi := min(lo+40, len(rows))
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"items": rows[lo:hi], "total": len(rows)})
		case "/scores":
			b, _ := io.ReadAll(r.Body)
			var batch []map[string]any
			if err := json.Unmarshal(b, &batch); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			mu.Lock()
			got = append(got, batch...)
			mu.Unlock()
			w.WriteHeader(204)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()

	s := startServer(t, true, "--model-repository", "models")
	spec := fmt.Sprintf(`name: serve-iris
source:
  http: {url: "%[1]s/iris", records: items, pagination: {type: page, page_param: page, size_param: per_page, size: 40, total_field: total}}
transforms:
  - predict: {model: iris, inputs: {input: [sepal_length, sepal_width, petal_length, petal_width]}, outputs: {label: predicted}}
sinks:
  - http: {url: "%[1]s/scores", batch_size: 50}
`, api.URL)
	res := s.do(t, "POST", "/api/v1/pipelines/runs?wait=true", map[string]string{"Content-Type": "application/yaml"}, []byte(spec))
	if res.code != 200 {
		t.Fatalf("submit: %d %s", res.code, res.body)
	}
	var rec struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Error   string `json:"error"`
		RowsIn  int    `json:"rows_in"`
		RowsOut int    `json:"rows_out"`
		Lineage []struct {
			Model   string `json:"model"`
			Version string `json:"version"`
		} `json:"lineage"`
	}
	res.json(t, &rec)
	if rec.Status != "succeeded" || rec.RowsIn != len(rows) || rec.RowsOut != len(rows) {
		t.Fatalf("run: %s", res.body)
	}
	if len(rec.Lineage) != 1 || rec.Lineage[0].Model != "iris" || rec.Lineage[0].Version != "1" {
		t.Errorf("lineage: %s", res.body)
	}
	names := []string{"setosa", "versicolor", "virginica"}
	correct := 0
	mu.Lock()
	if len(got) != len(rows) {
		t.Fatalf("endpoint got %d rows, want %d", len(got), len(rows))
	}
	for _, r := range got {
		p, ok := r["predicted"].(float64)
		if !ok || p < 0 || p > 2 {
			t.Fatalf("row without a prediction: %v", r)
		}
		if names[int(p)] == r["species"] {
			correct++
		}
	}
	mu.Unlock()
	if acc := float64(correct) / float64(len(rows)); acc < 0.9 {
		t.Errorf("accuracy %.3f: predictions do not follow the model", acc)
	}

	one := s.get(t, "/api/v1/pipelines/runs/"+rec.ID)
	if one.code != 200 || !strings.Contains(string(one.body), `"stages"`) {
		t.Errorf("get run: %d %s", one.code, one.body)
	}
	list := s.get(t, "/api/v1/pipelines/runs")
	if list.code != 200 || !strings.Contains(string(list.body), rec.ID) {
		t.Errorf("list runs: %d %s", list.code, list.body)
	}
	bad := s.do(t, "POST", "/api/v1/pipelines/runs", nil, []byte("source: {http: {url: x, pagination: {type: pages}}}\nsinks: [{http: {url: y}}]\n"))
	if bad.code != 400 || !strings.Contains(bad.errorMessage(t), "request:1:") {
		t.Errorf("bad spec: %d %s", bad.code, bad.body)
	}
}
