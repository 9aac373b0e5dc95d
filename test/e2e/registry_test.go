package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mlflowCall sends one request the way MLflow's REST client does: GET with
// query parameters, other methods with a JSON body.
func mlflowCall(t *testing.T, s *server, method, endpoint string, fields map[string]any) (int, map[string]any) {
	t.Helper()
	path := "/api/2.0/mlflow/" + endpoint
	hdr := map[string]string{"User-Agent": "mlflow-python-client/3.1.0"}
	var body []byte
	if method == "GET" {
		q := url.Values{}
		for k, v := range fields {
			switch x := v.(type) {
			case []string:
				for _, s := range x {
					q.Add(k, s)
				}
			default:
				q.Set(k, fmt.Sprint(x))
			}
		}
		path += "?" + q.Encode()
	} else {
		body, _ = json.Marshal(fields)
		hdr["Content-Type"] = "application/json"
	}
	r := s.do(t, method, path, hdr, body)
	var out map[string]any
	if len(bytes.TrimSpace(r.body)) > 0 {
		r.json(t, &out)
	}
	return r.code, out
}

func mustOK(t *testing.T, what string, code int, out map[string]any) map[string]any {
	t.Helper()
	if code != 200 {
		t.Fatalf("%s: HTTP %d %v", what, code, out)
	}
	return out
}

// mlOK is mlflowCall that requires HTTP 200.
func mlOK(t *testing.T, s *server, what, method, endpoint string, fields map[string]any) map[string]any {
	t.Helper()
	code, out := mlflowCall(t, s, method, endpoint, fields)
	return mustOK(t, what, code, out)
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// TestMLflowClientSequence replays what MlflowClient sends for
// register_model, get_latest_versions, set/get/delete alias,
// transition_model_version_stage, search_* with page tokens and
// get_model_version_download_uri.
func TestMLflowClientSequence(t *testing.T) {
	s := startServer(t, false, "--model-repository", t.TempDir())
	const name = "e2e-iris"
	weights := [][]byte{[]byte("iris weights v1"), []byte("iris weights v2")}
	for i, w := range weights {
		// The model bytes go to Kiln's artifact store; the source is the
		// URL it is served at (an https?:// URI MLflow clients can read).
		r := s.do(t, "PUT", "/api/v1/artifacts", nil, w)
		if r.code != 201 {
			t.Fatalf("upload: %d %s", r.code, r.body)
		}
		var art struct{ Digest string }
		r.json(t, &art)
		source := s.url + "/api/v1/artifacts/" + art.Digest

		// mlflow.register_model(source, name)
		code, out := mlflowCall(t, s, "POST", "registered-models/create", map[string]any{"name": name})
		if i == 0 {
			mustOK(t, "create registered model", code, out)
		} else if code != 400 || out["error_code"] != "RESOURCE_ALREADY_EXISTS" {
			t.Fatalf("second create: HTTP %d %v (the client swallows only RESOURCE_ALREADY_EXISTS)", code, out)
		}
		out = mlOK(t, s, "create model version", "POST", "model-versions/create", map[string]any{"name": name, "source": source, "run_id": fmt.Sprintf("run%d", i)})
		version := field(out, "model_version", "version")
		if version != fmt.Sprint(i+1) {
			t.Fatalf("version %v (want the string %q)", version, fmt.Sprint(i+1))
		}
		for status := field(out, "model_version", "status"); status != "READY"; status = field(out, "model_version", "status") {
			if status != "PENDING_REGISTRATION" {
				t.Fatalf("status %v", status)
			}
			time.Sleep(100 * time.Millisecond)
			out = mlOK(t, s, "poll version", "GET", "model-versions/get", map[string]any{"name": name, "version": version})
		}
	}

	// client.get_latest_versions(name, stages=["None"])
	mlOK(t, s, "get model (prompt check)", "GET", "registered-models/get", map[string]any{"name": name})
	out := mlOK(t, s, "latest versions", "POST", "registered-models/get-latest-versions", map[string]any{"name": name, "stages": []string{"None"}})
	mvs, _ := out["model_versions"].([]any)
	if len(mvs) != 1 || field(mvs[0].(map[string]any), "version") != "2" {
		t.Fatalf("latest None versions: %v", out)
	}

	// client.set_registered_model_alias / get_model_version_by_alias
	mlOK(t, s, "get model", "GET", "registered-models/get", map[string]any{"name": name})
	mlOK(t, s, "set alias", "POST", "registered-models/alias", map[string]any{"name": name, "alias": "champion", "version": "1"})
	out = mlOK(t, s, "get alias", "GET", "registered-models/alias", map[string]any{"name": name, "alias": "champion"})
	if field(out, "model_version", "version") != "1" {
		t.Fatalf("alias resolves to %v", out)
	}
	// client.delete_registered_model_alias
	mlOK(t, s, "delete alias", "DELETE", "registered-models/alias", map[string]any{"name": name, "alias": "champion"})
	code, out := mlflowCall(t, s, "GET", "registered-models/alias", map[string]any{"name": name, "alias": "champion"})
	if code != 400 || out["error_code"] != "INVALID_PARAMETER_VALUE" {
		t.Fatalf("deleted alias: HTTP %d %v", code, out)
	}

	// client.transition_model_version_stage(name, "1", "Production"), then
	// version 2 with archive_existing_versions=True.
	for _, v := range []string{"1", "2"} {
		mlOK(t, s, "get model", "GET", "registered-models/get", map[string]any{"name": name})
		out = mlOK(t, s, "transition", "POST", "model-versions/transition-stage",
			map[string]any{"name": name, "version": v, "stage": "Production", "archive_existing_versions": v == "2"})
		if field(out, "model_version", "current_stage") != "Production" {
			t.Fatalf("after transition: %v", out)
		}
	}
	out = mlOK(t, s, "get v1", "GET", "model-versions/get", map[string]any{"name": name, "version": "1"})
	if field(out, "model_version", "current_stage") != "Archived" {
		t.Fatalf("v1 not archived: %v", out)
	}
	out = mlOK(t, s, "latest Production", "POST", "registered-models/get-latest-versions", map[string]any{"name": name, "stages": []string{"Production"}})
	if mvs, _ := out["model_versions"].([]any); len(mvs) != 1 || field(mvs[0].(map[string]any), "version") != "2" {
		t.Fatalf("latest Production: %v", out)
	}

	// client.search_registered_models(filter_string=..., max_results=1) paging.
	mlOK(t, s, "create second model", "POST", "registered-models/create", map[string]any{"name": "e2e-rose"})
	var names []string
	token := ""
	for range 5 {
		q := map[string]any{"filter": "name LIKE 'e2e-%'", "max_results": 1, "order_by": []string{"name ASC"}}
		if token != "" {
			q["page_token"] = token
		}
		out = mlOK(t, s, "search models", "GET", "registered-models/search", q)
		for _, m := range out["registered_models"].([]any) {
			names = append(names, field(m.(map[string]any), "name").(string))
		}
		tok, _ := out["next_page_token"].(string)
		if token = tok; token == "" {
			break
		}
	}
	if strings.Join(names, ",") != "e2e-iris,e2e-rose" {
		t.Fatalf("paged model search: %v", names)
	}
	// client.search_model_versions("name='e2e-iris'")
	var versions []string
	token = ""
	for range 5 {
		q := map[string]any{"filter": "name='" + name + "'", "max_results": 1}
		if token != "" {
			q["page_token"] = token
		}
		out = mlOK(t, s, "search versions", "GET", "model-versions/search", q)
		for _, v := range out["model_versions"].([]any) {
			versions = append(versions, field(v.(map[string]any), "version").(string))
		}
		tok, _ := out["next_page_token"].(string)
		if token = tok; token == "" {
			break
		}
	}
	if len(versions) != 2 {
		t.Fatalf("paged version search: %v", versions)
	}

	// client.get_model_version_download_uri, then the download itself.
	out = mlOK(t, s, "download uri", "GET", "model-versions/get-download-uri", map[string]any{"name": name, "version": "2"})
	uri, _ := out["artifact_uri"].(string)
	resp, err := http.Get(uri)
	if err != nil {
		t.Fatalf("GET %s: %v", uri, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(buf.Bytes(), weights[1]) {
		t.Fatalf("download from %s: HTTP %d %q", uri, resp.StatusCode, buf.Bytes())
	}
}

// TestRegistryCLI drives `kiln registry` against a running server:
// register (file and directory), list, show, gated promotion, alias,
// compare, history, delete refusal and download.
func TestRegistryCLI(t *testing.T) {
	s := startServer(t, false, "--model-repository", t.TempDir())
	env := []string{"KILN_URL=" + s.url}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("v1/model.onnx", "churn v1")
	v2 := write("v2/model.onnx", "churn v2")
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, env, append([]string{"registry", "--actor", "ci"}, args...)...)
		if code != wantCode {
			t.Fatalf("kiln registry %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errOut)
		}
		return out + errOut
	}
	contains(t, "register", run(0, "register", "churn", v1, "--metric", "accuracy=0.91:higher", "--metric", "latency_ms=5:lower", "--param", "epochs=10", "--description", "baseline"), "registered churn version 1")
	contains(t, "register", run(0, "register", "churn", v2, "--metric", "accuracy=0.89:higher", "--metric", "latency_ms=3:lower", "--param", "epochs=20", "--idempotency-key", "job-7"), "registered churn version 2")
	contains(t, "retried register", run(0, "register", "churn", v2, "--metric", "accuracy=0.89:higher", "--metric", "latency_ms=3:lower", "--param", "epochs=20", "--idempotency-key", "job-7"), "registered churn version 2")
	write("bert/model.onnx", "bert")
	write("bert/vocab/words.txt", "a b")
	contains(t, "register dir", run(0, "register", "bert", filepath.Join(dir, "bert")), "registered bert version 1")

	contains(t, "bad metric", run(2, "register", "churn", v1, "--metric", "accuracy=0.9"), "higher or lower")
	contains(t, "list", run(0, "list"), "churn", "bert")
	contains(t, "list versions", run(0, "list", "churn"), "accuracy=0.91", "development")
	contains(t, "show", run(0, "show", "churn", "1"), "baseline", "epochs=10", "onnx", "created:")

	before := time.Now().UTC()
	contains(t, "promote v1", run(0, "promote", "churn", "1", "--to", "production", "--reason", "first"), "now in production")
	time.Sleep(20 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	// Gate: accuracy must not drop by more than 0.01 vs production.
	contains(t, "gated promote", run(1, "promote", "churn", "2", "--to", "production", "--gate", "accuracy >= production.accuracy - 0.01"), "blocked by gate", "PRECONDITION_FAILED", "412")
	contains(t, "promote v2", run(0, "promote", "churn", "2", "--to", "production", "--archive-existing", "--gate", "latency_ms <= production.latency_ms", "--reason", "faster"), "now in production")

	contains(t, "compare", run(0, "compare", "churn", "1", "2"), "accuracy", "regressed", "latency_ms", "improved", "epochs")
	contains(t, "history", run(0, "history", "churn"), "production", "archived", "ci", "faster")
	contains(t, "history at", run(0, "history", "churn", "--at", mid.Format(time.RFC3339Nano)), "version 1 was in production")
	contains(t, "history before", run(0, "history", "churn", "--at", before.Add(-time.Hour).Format(time.RFC3339)), "no version of churn was in production")

	contains(t, "alias", run(0, "alias", "set", "churn", "champion", "2"), "churn@champion -> version 2")
	contains(t, "alias CAS", run(1, "alias", "set", "churn", "champion", "1", "--expected-version", "1"), "PRECONDITION_FAILED")
	contains(t, "alias get", run(0, "alias", "get", "churn", "champion"), "version 2")
	contains(t, "alias history", run(0, "alias", "history", "churn", "champion"), "ci", "2")
	contains(t, "alias before", run(0, "alias", "history", "churn", "champion", "--at", before.Add(-time.Hour).Format(time.RFC3339)), "did not exist")
	contains(t, "delete refused", run(1, "delete", "churn", "2"), "champion", "409")
	contains(t, "unknown", run(1, "show", "nope"), "NOT_FOUND")

	out := filepath.Join(dir, "downloaded.onnx")
	run(0, "download", "churn", "2", "-o", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != "churn v2" {
		t.Fatalf("downloaded %q %v", b, err)
	}
	h := sha256.Sum256([]byte("churn v2"))
	contains(t, "show json", run(0, "show", "churn", "2", "--json"), hex.EncodeToString(h[:]))
	run(0, "alias", "delete", "churn", "champion")
	contains(t, "delete", run(0, "delete", "churn", "1"), "deleted churn version 1")
}
