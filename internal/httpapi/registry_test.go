package httpapi

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/kilnai/kiln/internal/artifact"
	"github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
)

// regEnv is an HTTP API over a real registry (SQLite) and blob store.
type regEnv struct {
	t     testing.TB
	srv   *Server
	blobs *artifact.Store
}

func newRegEnv(t testing.TB) *regEnv {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "registry.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := artifact.Open(filepath.Join(dir, "blobs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(store, registry.Options{})
	srv := New(Options{Registry: svc, Artifacts: blobs, MaxUploadSize: 4096})
	return &regEnv{t: t, srv: srv, blobs: blobs}
}

type regResp struct {
	code   int
	header http.Header
	body   []byte
}

func (r regResp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer is not JSON (%v): %s", err, r.body)
	}
}

// errCode returns the native error code of an error answer.
func (r regResp) errCode(t testing.TB) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.decode(t, &e)
	if e.Error.Message == "" {
		t.Fatalf("error answer without a message: %s", r.body)
	}
	return e.Error.Code
}

func (e *regEnv) do(method, path string, hdr map[string]string, body []byte) regResp {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	return regResp{code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (e *regEnv) json(method, path, body string) regResp {
	e.t.Helper()
	return e.do(method, path, map[string]string{"Content-Type": "application/json"}, []byte(body))
}

func (e *regEnv) upload(content string) string {
	e.t.Helper()
	r := e.do("PUT", "/api/v1/artifacts", nil, []byte(content))
	if r.code != 201 {
		e.t.Fatalf("upload: %d %s", r.code, r.body)
	}
	var a artifactView
	r.decode(e.t, &a)
	return a.Digest
}

func (e *regEnv) register(model, content string, metrics string) versionView {
	e.t.Helper()
	d := e.upload(content)
	r := e.json("POST", "/api/v1/models/"+model+"/versions", fmt.Sprintf(`{"artifact":{"digest":%q,"format":"onnx"},"metrics":%s}`, d, metrics))
	if r.code != 201 {
		e.t.Fatalf("register: %d %s", r.code, r.body)
	}
	var v versionView
	r.decode(e.t, &v)
	return v
}

func digestOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestRegistryErrors(t *testing.T) {
	e := newRegEnv(t)
	if r := e.json("POST", "/api/v1/models", `{"name":"churn"}`); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	good := e.upload("weights")
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		raw                      []byte
		wantCode                 int
		wantErr                  string
	}{
		{name: "duplicate model", method: "POST", path: "/api/v1/models", body: `{"name":"churn"}`, wantCode: 409, wantErr: "ALREADY_EXISTS"},
		{name: "invalid name", method: "POST", path: "/api/v1/models", body: `{"name":"bad/name"}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "name too long", method: "POST", path: "/api/v1/models", body: `{"name":"` + strings.Repeat("a", 257) + `"}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "unknown field", method: "POST", path: "/api/v1/models", body: `{"name":"x","nme":"y"}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "malformed JSON", method: "POST", path: "/api/v1/models", body: `{"name":`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "empty body", method: "POST", path: "/api/v1/models", body: ``, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "unknown model", method: "GET", path: "/api/v1/models/nope", wantCode: 404, wantErr: "NOT_FOUND"},
		{name: "unknown version", method: "GET", path: "/api/v1/models/churn/versions/7", wantCode: 404, wantErr: "NOT_FOUND"},
		{name: "bad version", method: "GET", path: "/api/v1/models/churn/versions/x", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "unknown alias", method: "GET", path: "/api/v1/models/churn/aliases/champion", wantCode: 404, wantErr: "NOT_FOUND"},
		{name: "bad filter", method: "GET", path: "/api/v1/models?filter=name%20%3D%3D%3D", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "bad page token", method: "GET", path: "/api/v1/models?page_token=zzz", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "bad max_results", method: "GET", path: "/api/v1/models?max_results=-1", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "oversized upload", method: "PUT", path: "/api/v1/artifacts", raw: bytes.Repeat([]byte("x"), 5000), wantCode: 413, wantErr: "TOO_LARGE"},
		{name: "digest mismatch", method: "PUT", path: "/api/v1/artifacts?digest=" + digestOf("other"), raw: []byte("weights"), wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "digest mismatch header", method: "PUT", path: "/api/v1/artifacts", hdr: map[string]string{"X-Kiln-Digest": digestOf("other")}, raw: []byte("weights"), wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "bad tar", method: "PUT", path: "/api/v1/artifacts?format=tar", raw: []byte("not a tar"), wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "bad format", method: "PUT", path: "/api/v1/artifacts?format=zip", raw: []byte("x"), wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "missing blob", method: "POST", path: "/api/v1/models/churn/versions", body: `{"artifact":{"digest":"` + digestOf("never uploaded") + `"}}`, wantCode: 412, wantErr: "PRECONDITION_FAILED"},
		{name: "no digest", method: "POST", path: "/api/v1/models/churn/versions", body: `{"artifact":{}}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "metric without direction", method: "POST", path: "/api/v1/models/churn/versions", body: `{"artifact":{"digest":"` + good + `"},"metrics":{"acc":{"value":1}}}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "version of unknown model", method: "POST", path: "/api/v1/models/nope/versions", body: `{"artifact":{"digest":"` + good + `"}}`, wantCode: 404, wantErr: "NOT_FOUND"},
		{name: "unknown artifact", method: "GET", path: "/api/v1/artifacts/" + digestOf("nothing"), wantCode: 404, wantErr: "NOT_FOUND"},
		{name: "malformed digest", method: "GET", path: "/api/v1/artifacts/sha256:xyz", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "bad stage", method: "POST", path: "/api/v1/models/churn/versions/1/transition", body: `{"stage":"live"}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "compare without b", method: "GET", path: "/api/v1/models/churn/compare?a=1", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "history bad time", method: "GET", path: "/api/v1/models/churn/history?at=yesterday", wantCode: 400, wantErr: "INVALID_ARGUMENT"},
		{name: "reserved alias", method: "PUT", path: "/api/v1/models/churn/aliases/latest", body: `{"version":1}`, wantCode: 400, wantErr: "INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			r := e.do(tc.method, tc.path, tc.hdr, body)
			if r.code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", r.code, tc.wantCode, r.body)
			}
			if got := r.errCode(t); got != tc.wantErr {
				t.Fatalf("code %s, want %s: %s", got, tc.wantErr, r.body)
			}
		})
	}
	// Nothing a failed upload sent became a blob.
	if ok, _ := e.blobs.Has(context.Background(), artifact.Digest(digestOf(strings.Repeat("x", 5000)))); ok {
		t.Fatal("an oversized upload was stored")
	}
}

func TestRegistryLifecycle(t *testing.T) {
	e := newRegEnv(t)
	ctx := map[string]string{"Content-Type": "application/json", "X-Kiln-Actor": "alice"}
	if r := e.do("POST", "/api/v1/models", ctx, []byte(`{"name":"churn","gates":{"production":["accuracy >= production.accuracy - 0.01"]}}`)); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	v1 := e.register("churn", "v1 weights", `{"accuracy":{"value":0.90,"direction":"higher"},"latency_ms":{"value":5,"direction":"lower"}}`)
	if v1.Version != 1 || v1.Stage != registry.StageDevelopment || v1.Artifact.Size != int64(len("v1 weights")) || v1.Artifact.Kind != "file" {
		t.Fatalf("v1 = %+v", v1)
	}

	t.Run("idempotency", func(t *testing.T) {
		d := e.upload("v2 weights")
		body := fmt.Sprintf(`{"artifact":{"digest":%q},"metrics":{"accuracy":{"value":0.95,"direction":"higher"},"latency_ms":{"value":4,"direction":"lower"}},"params":{"epochs":"20"}}`, d)
		hdr := map[string]string{"Content-Type": "application/json", "Idempotency-Key": "run-42"}
		first := e.do("POST", "/api/v1/models/churn/versions", hdr, []byte(body))
		again := e.do("POST", "/api/v1/models/churn/versions", hdr, []byte(body))
		var a, b versionView
		first.decode(t, &a)
		again.decode(t, &b)
		if first.code != 201 || again.code != 201 || a.Version != 2 || b.Version != 2 {
			t.Fatalf("retry made another version: %d %d %d %d", first.code, again.code, a.Version, b.Version)
		}
		if again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("replay not marked")
		}
		other := e.do("POST", "/api/v1/models/churn/versions", hdr, []byte(strings.Replace(body, "20", "30", 1)))
		if other.code != 409 || other.errCode(t) != "CONFLICT" {
			t.Fatalf("same key, other content: %d %s", other.code, other.body)
		}
	})

	t.Run("promotion gates", func(t *testing.T) {
		r := e.json("POST", "/api/v1/models/churn/versions/1/transition", `{"stage":"production","reason":"first"}`)
		if r.code != 200 {
			t.Fatalf("promote v1: %d %s", r.code, r.body)
		}
		v3 := e.register("churn", "v3 weights", `{"accuracy":{"value":0.80,"direction":"higher"}}`)
		r = e.json("POST", fmt.Sprintf("/api/v1/models/churn/versions/%d/transition", v3.Version), `{"stage":"production","archive_existing":true}`)
		if r.code != 412 || r.errCode(t) != "PRECONDITION_FAILED" {
			t.Fatalf("worse version promoted: %d %s", r.code, r.body)
		}
		var e412 struct {
			Error struct {
				Gates []registry.GateResult `json:"gates"`
			} `json:"error"`
		}
		r.decode(t, &e412)
		if len(e412.Error.Gates) != 1 || e412.Error.Gates[0].Passed || e412.Error.Gates[0].Left != 0.80 {
			t.Fatalf("gate details: %s", r.body)
		}
		// A per-call rule on a lower-is-better metric.
		r = e.json("POST", "/api/v1/models/churn/versions/2/transition", `{"stage":"production","archive_existing":true,"gates":["latency_ms <= production.latency_ms"],"reason":"faster"}`)
		if r.code != 200 {
			t.Fatalf("promote v2: %d %s", r.code, r.body)
		}
		var v2 versionView
		r.decode(t, &v2)
		if v2.Stage != registry.StageProduction {
			t.Fatalf("v2 stage %s", v2.Stage)
		}
		r = e.do("GET", "/api/v1/models/churn/versions/1", nil, nil)
		var old versionView
		r.decode(t, &old)
		if old.Stage != registry.StageArchived {
			t.Fatalf("v1 not archived: %s", old.Stage)
		}
	})

	t.Run("compare", func(t *testing.T) {
		r := e.do("GET", "/api/v1/models/churn/compare?a=1&b=2", nil, nil)
		if r.code != 200 {
			t.Fatalf("compare: %d %s", r.code, r.body)
		}
		var c registry.Comparison
		r.decode(t, &c)
		verdict := map[string]string{}
		for _, m := range c.Metrics {
			verdict[m.Name] = m.Verdict
		}
		if verdict["accuracy"] != "improved" || verdict["latency_ms"] != "improved" || len(c.Params) != 1 || c.Params[0].Name != "epochs" {
			t.Fatalf("comparison: %s", r.body)
		}
	})

	t.Run("history", func(t *testing.T) {
		r := e.do("GET", "/api/v1/models/churn/history?stage=production", nil, nil)
		var h struct {
			Transitions []transitionView `json:"transitions"`
		}
		r.decode(t, &h)
		if len(h.Transitions) != 3 {
			t.Fatalf("production transitions: %s", r.body)
		}
		first := h.Transitions[0]
		if first.Version != 1 || first.To != registry.StageProduction || first.Actor != "anonymous" || first.Reason != "first" {
			t.Fatalf("first transition %+v", first)
		}
		// Between v1's and v2's promotions, v1 was production.
		mid := h.Transitions[0].At.Add(time.Duration(h.Transitions[1].At.Sub(h.Transitions[0].At) / 2))
		if !h.Transitions[1].At.After(h.Transitions[0].At) {
			mid = h.Transitions[0].At
		}
		r = e.do("GET", "/api/v1/models/churn/history?at="+mid.Format(time.RFC3339Nano), nil, nil)
		var at struct {
			Version *int64 `json:"version"`
			Stage   string `json:"stage"`
		}
		r.decode(t, &at)
		if at.Version == nil || *at.Version != 1 || at.Stage != "production" {
			t.Fatalf("production at %s: %s", mid, r.body)
		}
		r = e.do("GET", "/api/v1/models/churn/history?at=2000-01-01T00:00:00Z", nil, nil)
		r.decode(t, &at)
		if at.Version != nil {
			t.Fatalf("production before anything: %s", r.body)
		}
	})

	t.Run("aliases and delete refusal", func(t *testing.T) {
		r := e.json("PUT", "/api/v1/models/churn/aliases/champion", `{"version":2,"expected_version":0}`)
		if r.code != 200 {
			t.Fatalf("set alias: %d %s", r.code, r.body)
		}
		r = e.json("PUT", "/api/v1/models/churn/aliases/champion", `{"version":3,"expected_version":1}`)
		if r.code != 412 || r.errCode(t) != "PRECONDITION_FAILED" {
			t.Fatalf("CAS with a stale expectation: %d %s", r.code, r.body)
		}
		r = e.do("GET", "/api/v1/models/churn/aliases/champion", nil, nil)
		var v versionView
		r.decode(t, &v)
		if v.Version != 2 {
			t.Fatalf("alias points at %d", v.Version)
		}
		r = e.do("GET", "/api/v1/models/churn/aliases/champion/history", nil, nil)
		var ah struct {
			Events []aliasEventView `json:"events"`
		}
		r.decode(t, &ah)
		if r.code != 200 || len(ah.Events) != 1 || ah.Events[0].From != 0 || ah.Events[0].To != 2 {
			t.Fatalf("alias history: %d %s", r.code, r.body)
		}
		created := ah.Events[0].At
		r = e.do("GET", "/api/v1/models/churn/aliases/champion/history?at="+created.Format(time.RFC3339Nano), nil, nil)
		var aat struct {
			Version *int64 `json:"version"`
		}
		r.decode(t, &aat)
		if aat.Version == nil || *aat.Version != 2 {
			t.Fatalf("alias at creation: %s", r.body)
		}
		r = e.do("GET", "/api/v1/models/churn/aliases/champion/history?at="+created.Add(-time.Second).Format(time.RFC3339Nano), nil, nil)
		aat.Version = nil
		r.decode(t, &aat)
		if aat.Version != nil {
			t.Fatalf("alias before it existed: %s", r.body)
		}
		r = e.do("DELETE", "/api/v1/models/churn/versions/2", nil, nil)
		if r.code != 409 || r.errCode(t) != "CONFLICT" || !strings.Contains(string(r.body), "champion") {
			t.Fatalf("delete of an aliased version: %d %s", r.code, r.body)
		}
		r = e.do("DELETE", "/api/v1/models/churn", nil, nil)
		if r.code != 409 {
			t.Fatalf("delete of a model with aliases: %d %s", r.code, r.body)
		}
		if r = e.do("DELETE", "/api/v1/models/churn/aliases/champion", nil, nil); r.code != 204 {
			t.Fatalf("delete alias: %d %s", r.code, r.body)
		}
		if r = e.do("DELETE", "/api/v1/models/churn/versions/2", nil, nil); r.code != 204 {
			t.Fatalf("delete version: %d %s", r.code, r.body)
		}
		if r = e.do("GET", "/api/v1/models/churn/versions/2", nil, nil); r.code != 404 {
			t.Fatalf("deleted version still there: %d", r.code)
		}
	})

	t.Run("update and list", func(t *testing.T) {
		r := e.json("PATCH", "/api/v1/models/churn", `{"description":"churn model","set_tags":{"team":"growth"}}`)
		var m modelView
		r.decode(t, &m)
		if r.code != 200 || m.Description != "churn model" || m.Tags["team"] != "growth" || m.UpdatedBy != "anonymous" {
			t.Fatalf("update: %d %s", r.code, r.body)
		}
		r = e.json("PATCH", "/api/v1/models/churn/versions/1", `{"set_tags":{"note":"baseline"}}`)
		if r.code != 200 {
			t.Fatalf("update version: %d %s", r.code, r.body)
		}
		r = e.do("GET", "/api/v1/models?filter="+urlQuery("tags.team = 'growth'"), nil, nil)
		var page struct {
			Models []modelView `json:"models"`
		}
		r.decode(t, &page)
		if len(page.Models) != 1 || page.Models[0].Name != "churn" {
			t.Fatalf("search by tag: %s", r.body)
		}
		// Paging through versions one at a time visits each once.
		seen := map[int64]bool{}
		token := ""
		for range 10 {
			r = e.do("GET", "/api/v1/models/churn/versions?max_results=1&page_token="+token, nil, nil)
			var vp struct {
				Versions      []versionView `json:"versions"`
				NextPageToken string        `json:"next_page_token"`
			}
			r.decode(t, &vp)
			for _, v := range vp.Versions {
				if seen[v.Version] {
					t.Fatalf("version %d on two pages", v.Version)
				}
				seen[v.Version] = true
			}
			if token = vp.NextPageToken; token == "" {
				break
			}
		}
		if len(seen) != 2 || !seen[1] || !seen[3] {
			t.Fatalf("paged versions %v", seen)
		}
		r = e.do("GET", "/api/v1/versions?filter="+urlQuery("metrics.accuracy < 0.85"), nil, nil)
		var vp struct {
			Versions []versionView `json:"versions"`
		}
		r.decode(t, &vp)
		if len(vp.Versions) != 1 || vp.Versions[0].Version != 3 {
			t.Fatalf("metric search: %s", r.body)
		}
	})
}

func urlQuery(s string) string {
	return strings.NewReplacer(" ", "%20", "'", "%27", "=", "%3D", "<", "%3C", ">", "%3E", "%", "%25").Replace(s)
}

func TestRegistryConcurrentPromotions(t *testing.T) {
	e := newRegEnv(t)
	e.json("POST", "/api/v1/models", `{"name":"m"}`)
	const n = 6
	for i := range n {
		e.register("m", fmt.Sprintf("w%d", i), `{}`)
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.json("POST", fmt.Sprintf("/api/v1/models/m/versions/%d/transition", i+1), `{"stage":"production","archive_existing":true}`)
			codes[i] = r.code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 && c != 409 {
			t.Fatalf("promotion %d: status %d (want 200 or a clear 409)", i+1, c)
		}
	}
	r := e.do("GET", "/api/v1/models/m/versions?filter="+urlQuery("stage = 'production'"), nil, nil)
	var vp struct {
		Versions []versionView `json:"versions"`
	}
	r.decode(t, &vp)
	if len(vp.Versions) != 1 {
		t.Fatalf("%d versions in production after concurrent promotions with archive_existing: %s", len(vp.Versions), r.body)
	}
}

func TestRegistryUploadAndDownload(t *testing.T) {
	e := newRegEnv(t)
	e.json("POST", "/api/v1/models", `{"name":"bert"}`)

	// One-shot multipart upload of a directory (tar) and registration.
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for name, content := range map[string]string{"model.onnx": "onnx", "vocab/words.txt": "a b c"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: int64(len(content)), Mode: 0o644})
		tw.Write([]byte(content))
	}
	tw.Close()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	meta, _ := mw.CreateFormField("metadata")
	meta.Write([]byte(`{"artifact":{"format":"onnx"},"description":"bert base"}`))
	part, _ := mw.CreateFormFile("artifact_tar", "bert.tar")
	part.Write(tarBuf.Bytes())
	mw.Close()
	r := e.do("POST", "/api/v1/models/bert/versions", map[string]string{"Content-Type": mw.FormDataContentType()}, body.Bytes())
	if r.code != 201 {
		t.Fatalf("multipart register: %d %s", r.code, r.body)
	}
	var v versionView
	r.decode(t, &v)
	if v.Artifact.Kind != "directory" || v.Artifact.Size != int64(len("onnx")+len("a b c")) || v.Description != "bert base" {
		t.Fatalf("version %+v", v)
	}
	r = e.do("GET", "/api/v1/models/bert/versions/1/artifact?format=tar", nil, nil)
	if r.code != 200 || r.header.Get("X-Kiln-Digest") != v.Artifact.Digest {
		t.Fatalf("download tar: %d %s", r.code, r.header)
	}
	tr := tar.NewReader(bytes.NewReader(r.body))
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
	}
	if files["model.onnx"] != "onnx" || files["vocab/words.txt"] != "a b c" {
		t.Fatalf("tar round trip: %v", files)
	}

	// Multipart with the artifact before the metadata is refused.
	body.Reset()
	mw = multipart.NewWriter(&body)
	part, _ = mw.CreateFormFile("artifact", "m.onnx")
	part.Write([]byte("x"))
	mw.Close()
	r = e.do("POST", "/api/v1/models/bert/versions", map[string]string{"Content-Type": mw.FormDataContentType()}, body.Bytes())
	if r.code != 400 {
		t.Fatalf("artifact before metadata: %d %s", r.code, r.body)
	}

	// A blob corrupted on disk is reported, never served as 200.
	d := e.upload("fragile")
	p := filepath.Join(e.blobs.Dir(), "sha256", d[7:9], d[7:])
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("fragilE"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.do("GET", "/api/v1/artifacts/"+d, nil, nil)
	if r.code != 500 || r.errCode(t) != "DATA_LOSS" {
		t.Fatalf("corrupt blob: %d %s", r.code, r.body)
	}
}

// TestOpenAPICoversRoutes checks that api/openapi.yaml is valid YAML and
// documents every native registry route with its method.
func TestOpenAPICoversRoutes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	e := newRegEnv(t)
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	for _, r := range e.srv.registryRoutes() {
		method, path, _ := strings.Cut(r.pattern, " ")
		t.Run(r.pattern, func(t *testing.T) {
			var ops map[string]any
			for p, o := range doc.Paths {
				if param.ReplaceAllString(p, "{}") == param.ReplaceAllString(path, "{}") {
					ops = o
				}
			}
			if ops == nil {
				t.Fatalf("path %s is not documented", path)
			}
			if _, ok := ops[strings.ToLower(method)]; !ok {
				t.Fatalf("%s %s is not documented", method, path)
			}
		})
	}
}

// FuzzRegistryRequests sends arbitrary bodies to the registry's write
// endpoints (JSON and multipart); nothing may panic or answer 5xx.
func FuzzRegistryRequests(f *testing.F) {
	f.Add(0, "application/json", []byte(`{"artifact":{"digest":"sha256:`+strings.Repeat("0", 64)+`"},"metrics":{"a":{"value":1,"direction":"higher"}}}`))
	f.Add(0, "multipart/form-data; boundary=XX", []byte("--XX\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}\r\n--XX\r\nContent-Disposition: form-data; name=\"artifact\"\r\n\r\nabc\r\n--XX--\r\n"))
	f.Add(1, "application/json", []byte(`{"stage":"production","gates":["accuracy >= production.accuracy"]}`))
	f.Add(2, "application/json", []byte(`{"version":1,"expected_version":0}`))
	f.Add(3, "application/json", []byte(`{"name":"m2","gates":{"staging":["x > 1"]}}`))
	f.Add(4, "application/json", []byte(`{"description":"d","set_tags":{"a":"b"},"delete_tags":["c"]}`))
	e := newRegEnv(f)
	if r := e.json("POST", "/api/v1/models", `{"name":"fz"}`); r.code != 201 {
		f.Fatalf("create: %d %s", r.code, r.body)
	}
	f.Fuzz(func(t *testing.T, which int, contentType string, body []byte) {
		e.t = t
		paths := []struct{ method, path string }{
			{"POST", "/api/v1/models/fz/versions"},
			{"POST", "/api/v1/models/fz/versions/1/transition"},
			{"PUT", "/api/v1/models/fz/aliases/a"},
			{"POST", "/api/v1/models"},
			{"PATCH", "/api/v1/models/fz"},
		}
		if which < 0 {
			which = -which
		}
		p := paths[which%len(paths)]
		r := e.do(p.method, p.path, map[string]string{"Content-Type": contentType}, body)
		if r.code >= 500 {
			t.Fatalf("%s %s answered %d: %s", p.method, p.path, r.code, r.body)
		}
	})
}
