package cli

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// metricFlag is one --metric name=value[:higher|lower].
type metricFlag struct {
	Value     float64 `json:"value"`
	Direction string  `json:"direction"`
}

// parseMetrics parses --metric flags: name=value:higher|lower (the
// direction is required: Kiln never guesses it from the name).
func parseMetrics(list []string) (map[string]metricFlag, error) {
	out := map[string]metricFlag{}
	for _, m := range list {
		name, rest, ok := strings.Cut(m, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--metric %q: want name=value:higher|lower", m)
		}
		val, dir, ok := strings.Cut(rest, ":")
		if !ok || (dir != "higher" && dir != "lower") {
			return nil, fmt.Errorf("--metric %q: say whether higher or lower is better, e.g. %s=%s:higher", m, name, val)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--metric %q: value %q is not a finite number", m, val)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--metric %q: %s given twice", m, name)
		}
		out[name] = metricFlag{Value: v, Direction: dir}
	}
	return out, nil
}

// parsePairs parses repeated k=v flags.
func parsePairs(flag string, list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range list {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, p)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--%s %q: %s given twice", flag, p, k)
		}
		out[k] = v
	}
	return out, nil
}

// apiError is the native API's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// registryCall sends a request to the native registry API and decodes a
// JSON answer into out (if non-nil); error bodies become errors.
func (c *client) registryCall(ctx context.Context, method, path string, hdr http.Header, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach Kiln at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the answer of %s: %w", path, err)
		}
	}
	return nil
}

// uploadArtifact streams a file, or a directory as a tar archive, to
// PUT /api/v1/artifacts and returns the stored digest and size.
func (c *client) uploadArtifact(ctx context.Context, path string) (digest string, size int64, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	var body io.Reader
	query := ""
	if st.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeDirTar(path, pw)) }()
		defer pr.Close()
		body, query = pr, "?format=tar"
	} else if st.Mode().IsRegular() {
		f, err := os.Open(path)
		if err != nil {
			return "", 0, err
		}
		defer f.Close()
		body = f
	} else {
		return "", 0, fmt.Errorf("%s is neither a file nor a directory", path)
	}
	var out struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if err := c.registryCall(ctx, http.MethodPut, "/api/v1/artifacts"+query, hdr, body, &out); err != nil {
		return "", 0, fmt.Errorf("uploading %s: %w", path, err)
	}
	return out.Digest, out.Size, nil
}

// writeDirTar writes the regular files under dir as a tar stream; links
// and special files are refused (the server refuses them too).
func writeDirTar(dir string, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	err = fs.WalkDir(root.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files can be uploaded", p)
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Size: st.Size(), Mode: int64(st.Mode().Perm())}); err != nil {
			return err
		}
		n, err := io.Copy(tw, f)
		if err == nil && n != st.Size() {
			err = errors.New(p + " changed while it was uploaded")
		}
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
