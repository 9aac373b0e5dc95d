package catalog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRepository(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"a/1/model.onnx":       "x",
		"a/3/model.onnx":       "x",
		"a/10/model.onnx":      "x",
		"a/01/model.onnx":      "leading zero: ignored",
		"a/latest/model.onnx":  "not numeric: ignored",
		"a/2/README":           "no model file",
		"b/config.yaml":        "max_batch_size: [",
		"b/1/model.onnx":       "x",
		"c/config.yaml":        "name: other\n",
		"c/1/model.onnx":       "x",
		"d/notes.txt":          "no versions",
		".hidden/1/model.onnx": "x",
		"bad name!/1/m":        "x",
		"file.txt":             "not a dir",
	})
	r := NewRepository(root)
	names, err := r.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "a,b,c,d" {
		t.Fatalf("List = %v", names)
	}
	tests := []struct {
		name     string
		versions string // number:ok|err
		err      string
	}{
		{"a", "1:ok 2:err 3:ok 10:ok", ""},
		{"b", "1:ok", "config.yaml"},
		{"c", "1:ok", "does not match"},
		{"d", "", "no numeric version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := r.Get(context.Background(), tc.name)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range m.Versions {
				s := "ok"
				if v.Err != nil {
					s = "err"
				} else if v.Backend != "onnx" || !strings.HasSuffix(v.Path, "model.onnx") {
					t.Fatalf("version %d: backend %q path %q", v.Number, v.Backend, v.Path)
				}
				got = append(got, strconv.FormatInt(v.Number, 10)+":"+s)
			}
			if strings.Join(got, " ") != tc.versions {
				t.Fatalf("versions %v, want %s", got, tc.versions)
			}
			if tc.err == "" && m.Err != nil || tc.err != "" && (m.Err == nil || !strings.Contains(m.Err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", m.Err, tc.err)
			}
		})
	}
	for _, bad := range []string{"nope", "../a", "bad name!", ".hidden", "file.txt"} {
		if _, err := r.Get(context.Background(), bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", bad, err)
		}
	}
}
