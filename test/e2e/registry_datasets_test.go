package e2e

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// datasetRecord is a record of GET .../versions/{version}/datasets (the
// fields this test checks).
type datasetRecord struct {
	Model      string `json:"model"`
	Version    int64  `json:"version"`
	Name       string `json:"dataset"`
	Role       string `json:"role"`
	RunID      string `json:"run_id"`
	Digest     string `json:"digest"`
	DigestKind string `json:"digest_kind"`
	Rows       int64  `json:"rows"`
	Profile    *struct {
		Rows    int64 `json:"rows"`
		Columns []struct {
			Name  string   `json:"name"`
			Kind  string   `json:"kind"`
			Count int64    `json:"count"`
			Nulls int64    `json:"nulls"`
			Mean  *float64 `json:"mean"`
			Top   []struct {
				Value string `json:"value"`
				Count int64  `json:"count"`
			} `json:"top"`
		} `json:"columns"`
	} `json:"profile"`
}

// sinkReport is what a run's registry sink logged when it recorded its
// dataset.
type sinkReport struct {
	Dataset string `json:"dataset"`
	Role    string `json:"role"`
	Digest  string `json:"digest"`
	Rows    int64  `json:"rows"`
}

// sinkReports picks the registry sinks' "dataset recorded" lines out of
// JSON logs, by dataset name.
func sinkReports(t *testing.T, logs string) map[string]sinkReport {
	t.Helper()
	out := map[string]sinkReport{}
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			sinkReport
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "dataset recorded for the model version" {
			out[line.Dataset] = line.sinkReport
		}
	}
	return out
}

// TestRegistryDatasetsFromPipelines records datasets for a model version
// with real pipeline runs — the registry example run by the CLI into the
// database kiln serve uses, and two specs submitted to kiln serve — then
// reads the records back over REST and with `kiln registry datasets`,
// checking digests and row counts against what the runs report and the
// profile against the CSV file itself.
func TestRegistryDatasetsFromPipelines(t *testing.T) {
	dataDir := t.TempDir()
	s := startServer(t, false, "--model-repository", t.TempDir(), "--data-dir", dataDir)
	env := []string{"KILN_URL=" + s.url}
	weights := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(weights, []byte("iris weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, env, "registry", "register", "iris", weights); code != 0 {
		t.Fatalf("register: exit %d\n%s%s", code, out, errOut)
	}

	// What the CSV holds, read independently of Kiln.
	f, err := os.Open(filepath.Join(repoRoot(), "examples", "pipelines", "data", "iris.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	header, rows := recs[0], recs[1:]
	nulls := map[string]int64{}
	setosa := int64(0)
	for _, r := range rows {
		for i, v := range r {
			if v == "" {
				nulls[header[i]]++
			}
		}
		if r[5] == "setosa" {
			setosa++
		}
	}

	type runRecord struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		RowsOut int64  `json:"rows_out"`
		Lineage []struct {
			Model   string `json:"model"`
			Version string `json:"version"`
		} `json:"lineage"`
	}
	checkRun := func(what string, run runRecord, wantRows int64) {
		t.Helper()
		if run.Status != "succeeded" || run.RowsOut != wantRows || len(run.Lineage) != 1 || run.Lineage[0].Model != "iris" || run.Lineage[0].Version != "1" {
			t.Fatalf("%s run: %+v (want succeeded, %d rows out, lineage iris 1)", what, run, wantRows)
		}
	}

	// 1. The example, run by the CLI, into the registry database of kiln serve.
	dsn := "sqlite:" + filepath.Join(dataDir, "registry.db")
	out, errOut, code := runCLI(t, append(env, "REGISTRY_DSN="+dsn), "pipeline", "run", "examples/pipelines/file-to-registry.yaml",
		"--registry", dsn, "--data-dir", t.TempDir(), "--progress", "log", "--json")
	if code != 0 {
		t.Fatalf("pipeline run: exit %d\n%s%s", code, out, errOut)
	}
	var training runRecord
	if err := json.Unmarshal([]byte(out), &training); err != nil {
		t.Fatalf("run record: %v\n%s", err, out)
	}
	checkRun("example", training, int64(len(rows)))
	reports := sinkReports(t, errOut)

	// 2 and 3. Specs submitted to kiln serve: the same rows as test data,
	// and the setosa rows as validation data, without a profile.
	submit := func(spec string) runRecord {
		t.Helper()
		res := s.do(t, "POST", "/api/v1/pipelines/runs?wait=true", map[string]string{"Content-Type": "application/yaml"}, []byte(spec))
		if res.code != 200 {
			t.Fatalf("submit: %d %s", res.code, res.body)
		}
		var rec runRecord
		res.json(t, &rec)
		return rec
	}
	test := submit(`name: iris-test
source: {file: {path: examples/pipelines/data/iris.csv}}
sinks: [{registry: {model: iris, version: 1, dataset: iris-150-copy, role: test}}]
`)
	checkRun("test", test, int64(len(rows)))
	validation := submit(`name: iris-setosa
source: {file: {path: examples/pipelines/data/iris.csv}}
transforms: [{filter: 'species == "setosa"'}]
sinks: [{registry: {model: iris, version: 1, dataset: iris-setosa, role: validation, profile: false}}]
`)
	checkRun("validation", validation, setosa)
	for k, v := range sinkReports(t, s.logs.String()) {
		reports[k] = v
	}
	runs := map[string]runRecord{"iris-150": training, "iris-150-copy": test, "iris-setosa": validation}
	for name, run := range runs {
		rep, ok := reports[name]
		if !ok || rep.Rows != run.RowsOut || !strings.HasPrefix(rep.Digest, "sha256:") || len(rep.Digest) != len("sha256:")+64 {
			t.Fatalf("%s: the sink reported %+v (found %v) for a run of %d rows", name, rep, ok, run.RowsOut)
		}
	}
	if reports["iris-150"].Digest != reports["iris-150-copy"].Digest {
		t.Errorf("the same rows, read by the CLI and by the server, have two digests: %s and %s", reports["iris-150"].Digest, reports["iris-150-copy"].Digest)
	}
	if reports["iris-setosa"].Digest == reports["iris-150"].Digest {
		t.Errorf("a third of the rows has the digest of all of them")
	}

	// Over REST.
	res := s.get(t, "/api/v1/models/iris/versions/1/datasets")
	if res.code != 200 {
		t.Fatalf("datasets: %d %s", res.code, res.body)
	}
	var page struct {
		Datasets []datasetRecord `json:"datasets"`
	}
	res.json(t, &page)
	if len(page.Datasets) != 3 {
		t.Fatalf("%d records, want 3: %s", len(page.Datasets), res.body)
	}
	// Newest first.
	if got := []string{page.Datasets[0].Name, page.Datasets[1].Name, page.Datasets[2].Name}; strings.Join(got, ",") != "iris-setosa,iris-150-copy,iris-150" {
		t.Errorf("order %v, want newest first", got)
	}
	for _, d := range page.Datasets {
		run, rep := runs[d.Name], reports[d.Name]
		if d.Model != "iris" || d.Version != 1 || d.RunID != run.ID || d.Rows != run.RowsOut || d.Digest != rep.Digest || d.Role != rep.Role || d.DigestKind != "unordered" {
			t.Errorf("record %+v; the run reported %+v and the sink %+v", d, run, rep)
		}
	}
	prof := page.Datasets[2].Profile
	if prof == nil || prof.Rows != int64(len(rows)) || len(prof.Columns) != len(header) {
		t.Fatalf("training profile: %s", res.body)
	}
	for i, c := range prof.Columns {
		if c.Name != header[i] || c.Count+c.Nulls != int64(len(rows)) || c.Nulls != nulls[c.Name] {
			t.Errorf("column %d: %+v; the CSV has %s with %d empty values in %d rows", i, c, header[i], nulls[header[i]], len(rows))
		}
		if c.Name == "sepal_length" && (c.Kind != "numeric" || c.Mean == nil) {
			t.Errorf("sepal_length: %+v", c)
		}
		if c.Name == "species" {
			found := false
			for _, top := range c.Top {
				found = found || top.Value == "setosa" && top.Count == setosa
			}
			if c.Kind != "categorical" || !found {
				t.Errorf("species: %+v, want setosa counted %d times", c, setosa)
			}
		}
	}
	if page.Datasets[0].Profile != nil {
		t.Errorf("the validation data was recorded with profile: false, yet has a profile")
	}
	var version struct {
		Tags map[string]string `json:"tags"`
	}
	s.get(t, "/api/v1/models/iris/versions/1").json(t, &version)
	if version.Tags["kiln.dataset.training.digest"] != reports["iris-150"].Digest || version.Tags["kiln.dataset.validation.run"] != validation.ID {
		t.Errorf("version tags %v", version.Tags)
	}
	if r := s.get(t, "/api/v1/models/iris/versions/1/datasets?role=training&profile=false"); r.code != 200 ||
		strings.Count(string(r.body), `"run_id"`) != 1 || !strings.Contains(string(r.body), training.ID) || strings.Contains(string(r.body), `"profile"`) {
		t.Errorf("role filter: %d %s", r.code, r.body)
	}
	if r := s.get(t, "/api/v1/models/iris/versions/2/datasets"); r.code != 404 || !strings.Contains(string(r.body), "NOT_FOUND") {
		t.Errorf("unknown version: %d %s", r.code, r.body)
	}

	// With the CLI.
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, env, append([]string{"registry", "datasets"}, args...)...)
		if code != wantCode {
			t.Fatalf("kiln registry datasets %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}
	contains(t, "table", cli(0, "iris", "1"), "DATASET", "iris-150 ", "iris-150-copy", "iris-setosa", "training", "validation",
		reports["iris-150"].Digest[:19], training.ID, test.ID, validation.ID)
	contains(t, "profile", cli(0, "iris", "1", "--role", "training", "--profile"), reports["iris-150"].Digest, "sepal_width", "setosa=")
	var fromCLI struct {
		Datasets []datasetRecord `json:"datasets"`
	}
	jsonOut := cli(0, "iris", "1", "--role", "validation", "--json")
	if err := json.Unmarshal([]byte(jsonOut), &fromCLI); err != nil {
		t.Fatalf("--json: %v\n%s", err, jsonOut)
	}
	if len(fromCLI.Datasets) != 1 || fromCLI.Datasets[0].Digest != reports["iris-setosa"].Digest || fromCLI.Datasets[0].Rows != setosa {
		t.Errorf("--json: %s", jsonOut)
	}
	contains(t, "no records", cli(0, "iris", "1", "--role", "scoring"), "no scoring datasets recorded for iris version 1")
	contains(t, "unknown version", cli(1, "iris", "2"), "NOT_FOUND", "404")
}
