package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type mlStep struct {
	name, method, path, body string
	wantCode                 int
	wantErr                  string            // error_code of an error answer
	want                     map[string]string // JSON path (dot-separated) -> value
}

// jsonPath fetches a dot-separated path ("registered_model.name",
// "model_versions.0.version") from decoded JSON as a string.
func jsonPath(v any, path string) (string, bool) {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return "", false
			}
			v = x[i]
		default:
			return "", false
		}
	}
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, true
	default:
		b, _ := json.Marshal(x)
		return string(b), true
	}
}

func runMLSteps(t *testing.T, e *regEnv, steps []mlStep) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var hdr map[string]string
			if st.body != "" {
				hdr = map[string]string{"Content-Type": "application/json"}
			}
			r := e.do(st.method, st.path, hdr, []byte(st.body))
			if r.code != st.wantCode {
				t.Fatalf("status %d, want %d: %s", r.code, st.wantCode, r.body)
			}
			var got any
			r.decode(t, &got)
			if st.wantErr != "" {
				code, _ := jsonPath(got, "error_code")
				msg, _ := jsonPath(got, "message")
				if code != st.wantErr || msg == "" {
					t.Fatalf("error %q (message %q), want %s", code, msg, st.wantErr)
				}
			}
			for path, want := range st.want {
				v, ok := jsonPath(got, path)
				if want == "<absent>" {
					if ok {
						t.Fatalf("%s = %q, want absent: %s", path, v, r.body)
					}
					continue
				}
				if !ok || v != want {
					t.Fatalf("%s = %q, want %q: %s", path, v, want, r.body)
				}
			}
		})
	}
}

func TestMLflowAPI(t *testing.T) {
	e := newRegEnv(t)
	d := e.upload("sklearn model")
	const p = "/api/2.0/mlflow"
	runMLSteps(t, e, []mlStep{
		{name: "create model", method: "POST", path: p + "/registered-models/create", body: `{"name":"iris","description":"flowers","tags":[{"key":"team","value":"ml"}]}`,
			wantCode: 200, want: map[string]string{"registered_model.name": "iris", "registered_model.tags.0.key": "team", "registered_model.description": "flowers"}},
		{name: "duplicate is 400 RESOURCE_ALREADY_EXISTS", method: "POST", path: p + "/registered-models/create", body: `{"name":"iris"}`, wantCode: 400, wantErr: "RESOURCE_ALREADY_EXISTS"},
		{name: "missing name", method: "POST", path: p + "/registered-models/create", body: `{}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "malformed JSON", method: "POST", path: p + "/registered-models/create", body: `{"name":`, wantCode: 400, wantErr: "BAD_REQUEST"},
		{name: "invalid name", method: "POST", path: p + "/registered-models/create", body: `{"name":"a b"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "get with query parameters", method: "GET", path: p + "/registered-models/get?name=iris", wantCode: 200,
			want: map[string]string{"registered_model.name": "iris", "registered_model.latest_versions": "<absent>"}},
		{name: "get unknown", method: "GET", path: p + "/registered-models/get?name=rose", wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "create version from a kiln digest", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris","source":"` + d + `","run_id":"abc"}`,
			wantCode: 200, want: map[string]string{"model_version.version": "1", "model_version.status": "READY", "model_version.current_stage": "None", "model_version.source": d, "model_version.run_id": "abc"}},
		{name: "create version from an external URI", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris","source":"s3://bucket/iris/2","tags":[{"key":"k","value":"v"}]}`,
			wantCode: 200, want: map[string]string{"model_version.version": "2", "model_version.source": "s3://bucket/iris/2", "model_version.tags.0.value": "v"}},
		{name: "create version of unknown model", method: "POST", path: p + "/model-versions/create", body: `{"name":"rose","source":"s3://b/x"}`, wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "source with ..", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris","source":"s3://b/../x"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "local source refused", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris","source":"file:///etc/passwd"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "missing kiln blob", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris","source":"` + digestOf("absent") + `"}`, wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "missing source", method: "POST", path: p + "/model-versions/create", body: `{"name":"iris"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "get version (number as JSON number)", method: "GET", path: p + "/model-versions/get?name=iris&version=2", wantCode: 200, want: map[string]string{"model_version.version": "2"}},
		{name: "get version not a number", method: "GET", path: p + "/model-versions/get?name=iris&version=two", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "get unknown version", method: "GET", path: p + "/model-versions/get?name=iris&version=9", wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "download uri of a kiln artifact", method: "GET", path: p + "/model-versions/get-download-uri?name=iris&version=1", wantCode: 200,
			want: map[string]string{"artifact_uri": "http://example.com/api/v1/artifacts/" + d}},
		{name: "download uri of an external source", method: "GET", path: p + "/model-versions/get-download-uri?name=iris&version=2", wantCode: 200,
			want: map[string]string{"artifact_uri": "s3://bucket/iris/2"}},
		{name: "transition to Staging", method: "POST", path: p + "/model-versions/transition-stage", body: `{"name":"iris","version":"1","stage":"staging","archive_existing_versions":false}`,
			wantCode: 200, want: map[string]string{"model_version.current_stage": "Staging"}},
		{name: "transition with archive_existing_versions", method: "POST", path: p + "/model-versions/transition-stage", body: `{"name":"iris","version":2,"stage":"Staging","archive_existing_versions":true}`,
			wantCode: 200, want: map[string]string{"model_version.current_stage": "Staging"}},
		{name: "archived by the transition", method: "GET", path: p + "/model-versions/get?name=iris&version=1", wantCode: 200, want: map[string]string{"model_version.current_stage": "Archived"}},
		{name: "invalid stage", method: "POST", path: p + "/model-versions/transition-stage", body: `{"name":"iris","version":"1","stage":"Live","archive_existing_versions":false}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "archive flag with an inactive stage is a 400, not a 500", method: "POST", path: p + "/model-versions/transition-stage", body: `{"name":"iris","version":"1","stage":"Archived","archive_existing_versions":true}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "archive flag required", method: "POST", path: p + "/model-versions/transition-stage", body: `{"name":"iris","version":"1","stage":"Staging"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "latest versions (POST)", method: "POST", path: p + "/registered-models/get-latest-versions", body: `{"name":"iris","stages":["Staging"]}`,
			wantCode: 200, want: map[string]string{"model_versions.0.version": "2", "model_versions.1": "<absent>"}},
		{name: "latest versions (GET, all stages)", method: "GET", path: p + "/registered-models/get-latest-versions?name=iris", wantCode: 200,
			want: map[string]string{"model_versions.0.current_stage": "Staging", "model_versions.1.current_stage": "Archived"}},
		{name: "latest versions bad stage", method: "POST", path: p + "/registered-models/get-latest-versions", body: `{"name":"iris","stages":["Live"]}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "set alias", method: "POST", path: p + "/registered-models/alias", body: `{"name":"iris","alias":"champion","version":"2"}`, wantCode: 200},
		{name: "reserved alias", method: "POST", path: p + "/registered-models/alias", body: `{"name":"iris","alias":"v3","version":"2"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "alias to a missing version", method: "POST", path: p + "/registered-models/alias", body: `{"name":"iris","alias":"x","version":"9"}`, wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "get by alias", method: "GET", path: p + "/registered-models/alias?name=iris&alias=champion", wantCode: 200,
			want: map[string]string{"model_version.version": "2", "model_version.aliases.0": "champion"}},
		{name: "unknown alias is 400", method: "GET", path: p + "/registered-models/alias?name=iris&alias=nobody", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "model shows aliases", method: "GET", path: p + "/registered-models/get?name=iris", wantCode: 200,
			want: map[string]string{"registered_model.aliases.0.alias": "champion", "registered_model.aliases.0.version": "2"}},
		{name: "delete aliased version refused", method: "DELETE", path: p + "/model-versions/delete", body: `{"name":"iris","version":"2"}`, wantCode: 409, wantErr: "RESOURCE_CONFLICT"},
		{name: "delete alias", method: "DELETE", path: p + "/registered-models/alias", body: `{"name":"iris","alias":"champion"}`, wantCode: 200},
		{name: "delete missing alias is a no-op", method: "DELETE", path: p + "/registered-models/alias?name=iris&alias=champion", wantCode: 200},
		{name: "model tag set", method: "POST", path: p + "/registered-models/set-tag", body: `{"name":"iris","key":"owner","value":"ana"}`, wantCode: 200},
		{name: "version tag set", method: "POST", path: p + "/model-versions/set-tag", body: `{"name":"iris","version":"1","key":"reviewed","value":"yes"}`, wantCode: 200},
		{name: "search models by tag", method: "GET", path: p + "/registered-models/search?filter=tags.owner%3D%27ana%27", wantCode: 200,
			want: map[string]string{"registered_models.0.name": "iris", "next_page_token": "<absent>"}},
		{name: "search models LIKE", method: "GET", path: p + "/registered-models/search?filter=name+LIKE+%27ir%25%27&max_results=1", wantCode: 200, want: map[string]string{"registered_models.0.name": "iris"}},
		{name: "search ordered by timestamp", method: "GET", path: p + "/registered-models/search?order_by=timestamp+DESC", wantCode: 200, want: map[string]string{"registered_models.0.name": "iris"}},
		{name: "search bad order_by", method: "GET", path: p + "/registered-models/search?order_by=size", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "search bad filter", method: "GET", path: p + "/registered-models/search?filter=name+%3D%3D%3D", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "search max_results over limit", method: "GET", path: p + "/registered-models/search?max_results=5000", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "search bad page token", method: "GET", path: p + "/registered-models/search?page_token=nope", wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "search versions paged", method: "GET", path: p + "/model-versions/search?filter=name%3D%27iris%27&max_results=1&order_by=version_number+ASC", wantCode: 200,
			want: map[string]string{"model_versions.0.version": "1", "model_versions.0.tags.0.key": "reviewed"}},
		{name: "search versions by run_id", method: "GET", path: p + "/model-versions/search?filter=run_id%3D%27abc%27", wantCode: 200, want: map[string]string{"model_versions.0.version": "1", "model_versions.1": "<absent>"}},
		{name: "version tag delete", method: "DELETE", path: p + "/model-versions/delete-tag", body: `{"name":"iris","version":"1","key":"reviewed"}`, wantCode: 200},
		{name: "update version", method: "PATCH", path: p + "/model-versions/update", body: `{"name":"iris","version":"1","description":"first"}`, wantCode: 200, want: map[string]string{"model_version.description": "first"}},
		{name: "update model", method: "PATCH", path: p + "/registered-models/update", body: `{"name":"iris","description":"new"}`, wantCode: 200, want: map[string]string{"registered_model.description": "new"}},
		{name: "model tag delete", method: "DELETE", path: p + "/registered-models/delete-tag", body: `{"name":"iris","key":"owner"}`, wantCode: 200},
		{name: "rename", method: "POST", path: p + "/registered-models/rename", body: `{"name":"iris","new_name":"iris2"}`, wantCode: 200, want: map[string]string{"registered_model.name": "iris2"}},
		{name: "rename missing new_name", method: "POST", path: p + "/registered-models/rename", body: `{"name":"iris2"}`, wantCode: 400, wantErr: "INVALID_PARAMETER_VALUE"},
		{name: "renamed versions follow", method: "GET", path: p + "/model-versions/get?name=iris2&version=1", wantCode: 200, want: map[string]string{"model_version.name": "iris2"}},
		{name: "delete version", method: "DELETE", path: p + "/model-versions/delete", body: `{"name":"iris2","version":"1"}`, wantCode: 200},
		{name: "deleted version is gone", method: "GET", path: p + "/model-versions/get?name=iris2&version=1", wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "delete model", method: "DELETE", path: p + "/registered-models/delete", body: `{"name":"iris2"}`, wantCode: 200},
		{name: "deleted model is gone", method: "GET", path: "/ajax-api/2.0/mlflow/registered-models/get?name=iris2", wantCode: 404, wantErr: "RESOURCE_DOES_NOT_EXIST"},
		{name: "unknown endpoint", method: "POST", path: p + "/registered-models/list", body: `{}`, wantCode: 404, wantErr: "ENDPOINT_NOT_FOUND"},
		{name: "wrong method", method: "GET", path: p + "/registered-models/create?name=x", wantCode: 404, wantErr: "ENDPOINT_NOT_FOUND"},
	})
}

func TestMLflowDownloadURIBehindProxy(t *testing.T) {
	e := newRegEnv(t)
	d := e.upload("m")
	e.json("POST", "/api/2.0/mlflow/registered-models/create", `{"name":"m"}`)
	e.json("POST", "/api/2.0/mlflow/model-versions/create", `{"name":"m","source":"kiln-artifacts:/`+d+`"}`)
	req := httptest.NewRequest("GET", "https://kiln.example/api/2.0/mlflow/model-versions/get-download-uri?name=m&version=1", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	var out struct {
		ArtifactURI string `json:"artifact_uri"`
	}
	json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code != http.StatusOK || out.ArtifactURI != "https://kiln.example/api/v1/artifacts/"+d {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func FuzzDecodeMLflow(f *testing.F) {
	f.Add("GET", "name=iris&version=2&stages=Staging&stages=Production&max_results=10&archive_existing_versions=true", []byte(nil))
	f.Add("POST", "", []byte(`{"name":"iris","version":3,"max_results":"100","archive_existing_versions":"false","tags":[{"key":"a","value":"b"}],"stages":["None"]}`))
	f.Add("DELETE", "name=x", []byte(`  `))
	f.Add("POST", "", []byte(`{"version":{},"max_results":1e99}`))
	f.Fuzz(func(t *testing.T, method, query string, body []byte) {
		if method != "GET" && method != "POST" && method != "DELETE" && method != "PATCH" {
			method = "POST"
		}
		req, err := http.NewRequest(method, "/x", strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.URL.RawQuery = query
		var in struct {
			Name    string      `json:"name"`
			Version flexString  `json:"version"`
			Stages  []string    `json:"stages"`
			Max     flexInt     `json:"max_results"`
			Archive flexBool    `json:"archive_existing_versions"`
			Tags    []mlflowTag `json:"tags"`
		}
		err = decodeMLflow(req, &in)
		if err != nil {
			if code, _ := mlflowStatusOf(err); code != http.StatusBadRequest {
				t.Fatalf("decode error %v maps to %d, want 400", err, code)
			}
			return
		}
		if in.Version != "" {
			_, _ = parseMLflowVersion(in.Version)
		}
	})
}

func FuzzKilnArtifactRef(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("a", 64))
	f.Add("kiln-artifacts:/sha256:" + strings.Repeat("b", 64))
	f.Add("http://h/api/v1/artifacts/sha256:" + strings.Repeat("c", 64))
	f.Add("s3://bucket/key")
	f.Fuzz(func(t *testing.T, source string) {
		d, ok, err := kilnArtifactRef(source)
		if err != nil && !ok {
			t.Fatalf("error without a Kiln reference: %v", err)
		}
		if ok && err == nil && (len(d) != 71 || !strings.HasPrefix(string(d), "sha256:")) {
			t.Fatalf("accepted digest %q from %q", d, source)
		}
	})
}
