package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// client talks to a running Kiln over HTTP.
type client struct {
	base string
	hc   *http.Client
}

// defaultURL is KILN_URL or the default local address.
func defaultURL() string {
	if u := os.Getenv("KILN_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:8000"
}

func addClientFlags(f *pflag.FlagSet, url *string) {
	f.StringVar(url, "url", defaultURL(), "base URL of a running Kiln (env KILN_URL)")
}

func newClient(url string) *client {
	return &client{base: strings.TrimRight(url, "/"), hc: &http.Client{Timeout: 5 * time.Minute}}
}

// do sends a request and decodes a JSON answer into out (if non-nil).
// Non-2xx answers become errors carrying the server's message.
func (c *client) do(ctx context.Context, method, path string, hdr http.Header, body []byte, out any) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach Kiln at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, nil, fmt.Errorf("%s %s: %s (HTTP %d)", method, path, e.Error, resp.StatusCode)
		}
		return nil, nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, nil, fmt.Errorf("decoding %s answer: %w", path, err)
		}
	}
	return resp.Header, data, nil
}
