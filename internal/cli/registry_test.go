package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    map[string]metricFlag
		wantErr string
	}{
		{in: []string{"accuracy=0.93:higher", "latency_ms=4.5:lower"}, want: map[string]metricFlag{"accuracy": {0.93, "higher"}, "latency_ms": {4.5, "lower"}}},
		{in: []string{"accuracy=0.93"}, wantErr: "higher or lower"},
		{in: []string{"accuracy=0.93:up"}, wantErr: "higher or lower"},
		{in: []string{"accuracy=high:higher"}, wantErr: "not a finite number"},
		{in: []string{"accuracy=NaN:higher"}, wantErr: "not a finite number"},
		{in: []string{"=1:higher"}, wantErr: "want name=value"},
		{in: []string{"a=1:higher", "a=2:higher"}, wantErr: "given twice"},
	} {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			got, err := parseMetrics(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("%s = %+v, want %+v", k, got[k], v)
				}
			}
		})
	}
}

func TestParsePairs(t *testing.T) {
	got, err := parsePairs("tag", []string{"team=growth", "note=a=b"})
	if err != nil || got["team"] != "growth" || got["note"] != "a=b" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range [][]string{{"noequals"}, {"=v"}, {"k=1", "k=2"}} {
		if _, err := parsePairs("tag", bad); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
}

func TestWriteDirTar(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("m"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "v.txt"), []byte("vv"), 0o600)
	var buf bytes.Buffer
	if err := writeDirTar(dir, &buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	if len(got) != 2 || got["model.onnx"] != "m" || got["sub/v.txt"] != "vv" {
		t.Fatalf("tar holds %v", got)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err == nil {
		if err := writeDirTar(dir, io.Discard); err == nil {
			t.Fatal("a symlink was archived")
		}
	}
}

func TestRegistryCallErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/native":
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":"CONFLICT","message":"churn version 2 is aliased as champion"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream down"))
		}
	}))
	defer srv.Close()
	c := newClient(srv.URL)
	err := c.registryCall(context.Background(), "DELETE", "/native", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "aliased as champion") || !strings.Contains(err.Error(), "409") {
		t.Fatalf("native error: %v", err)
	}
	err = c.registryCall(context.Background(), "GET", "/other", nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "upstream down") {
		t.Fatalf("plain error: %v", err)
	}
}

func TestRegistryCommandUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"registry", "promote", "churn", "2"}, "--to is required"},
		{[]string{"registry", "show", "churn", "two"}, "not a number"},
		{[]string{"registry", "register", "churn", "/does/not/exist"}, "no such file"},
		{[]string{"registry", "history", "churn", "--at", "yesterday"}, "RFC 3339"},
		{[]string{"registry", "alias", "set", "churn", "champion", "x"}, "not a number"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append(tc.args, "--url", "http://127.0.0.1:1"), &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, errb.String(), tc.want)
			}
		})
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("accuracy=0.93:higher")
	f.Add("a=1e9:lower")
	f.Add("x=:")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMetrics([]string{s})
		if err != nil {
			return
		}
		for name, v := range m {
			if name == "" || (v.Direction != "higher" && v.Direction != "lower") {
				t.Fatalf("accepted %q as %q=%+v", s, name, v)
			}
		}
	})
}
