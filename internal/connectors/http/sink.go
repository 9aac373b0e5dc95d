package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "http",
			Summary: "send rows to an HTTP endpoint in requests of batch_size rows, as a JSON array or NDJSON, with retries " +
				"and exponential back-off on connection errors, 5xx and 429; a request refused with another 4xx status " +
				"dead-letters its rows with the status and response, a 5xx after the last retry stops the run",
			Config: func() any { return defaultSinkConfig() },
			Examples: []string{
				"{url: \"https://hooks.example.com/scores\", headers: {Authorization: \"Bearer ${API_TOKEN}\"}, batch_size: 200}",
				"{url: \"${INGEST_URL}\", format: ndjson, method: PUT, success_codes: [200, 204], retries: 8, retry_wait_max: 1m}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(cfg.(*SinkConfig), env), nil
		},
	})
}

// SinkConfig configures the http sink.
type SinkConfig struct {
	URL          string            `yaml:"url" required:"true" doc:"endpoint that receives the rows"`
	Method       string            `yaml:"method" doc:"POST, PUT or PATCH"`
	Headers      map[string]string `yaml:"headers" doc:"request headers (an auth header, for example)"`
	Format       string            `yaml:"format" doc:"json (one JSON array of row objects per request) or ndjson (one object per line)"`
	BatchSize    int               `yaml:"batch_size" doc:"rows per request"`
	SuccessCodes []int             `yaml:"success_codes" doc:"statuses that mean the rows were taken"`
	RetryConfig  `yaml:",inline"`
}

func defaultSinkConfig() *SinkConfig {
	return &SinkConfig{
		Method: http.MethodPost, Format: "json", BatchSize: 500,
		SuccessCodes: []int{200, 201, 202, 204}, RetryConfig: defaultRetry(),
	}
}

// Validate checks the configuration.
func (c *SinkConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", c.URL)
	}
	c.Method = strings.ToUpper(c.Method)
	if c.Method != http.MethodPost && c.Method != http.MethodPut && c.Method != http.MethodPatch {
		return fmt.Errorf("method %q: want POST, PUT or PATCH", c.Method)
	}
	if c.Format != "json" && c.Format != "ndjson" {
		return fmt.Errorf("format %q: want json or ndjson", c.Format)
	}
	if c.BatchSize <= 0 {
		return errors.New("batch_size must be positive")
	}
	if len(c.SuccessCodes) == 0 {
		return errors.New("success_codes must not be empty")
	}
	for _, s := range c.SuccessCodes {
		if s < 100 || s > 599 {
			return fmt.Errorf("success code %d is not an HTTP status", s)
		}
	}
	return c.RetryConfig.validate()
}

type sink struct {
	cfg    *SinkConfig
	client *retryablehttp.Client
	buf    []byte
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(cfg *SinkConfig, env pipeline.Env) *sink {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &sink{cfg: cfg, client: newClient(cfg.RetryConfig, log)}
}

// Write sends b in requests of batch_size rows.
func (s *sink) Write(ctx context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	var rej []pipeline.RowError
	n := int(b.NumRows())
	for start := 0; start < n; start += s.cfg.BatchSize {
		end := min(start+s.cfg.BatchSize, n)
		s.buf = s.encode(s.buf[:0], b, start, end)
		req, err := retryablehttp.NewRequestWithContext(ctx, s.cfg.Method, s.cfg.URL, s.buf)
		if err != nil {
			return nil, fmt.Errorf("http sink: %w", err)
		}
		if s.cfg.Format == "json" {
			req.Header.Set("Content-Type", "application/json")
		} else {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		for k, v := range s.cfg.Headers {
			req.Header.Set(k, v)
		}
		resp, body, err := do(ctx, s.client, req)
		if err != nil {
			return nil, fmt.Errorf("http sink: %w", err)
		}
		switch {
		case slices.Contains(s.cfg.SuccessCodes, resp.StatusCode):
		case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
			rerr := fmt.Errorf("http sink: %s %s refused the rows: status %d: %s", s.cfg.Method, safeURL(req.URL), resp.StatusCode, snippet(body))
			for r := start; r < end; r++ {
				rej = append(rej, pipeline.RowError{Row: r, Err: rerr})
			}
		default:
			return nil, fmt.Errorf("http sink: %s %s: status %d after %d retries: %s", s.cfg.Method, safeURL(req.URL), resp.StatusCode, s.cfg.Retries, snippet(body))
		}
	}
	return rej, nil
}

func (s *sink) encode(dst []byte, b pipeline.Batch, start, end int) []byte {
	if s.cfg.Format == "json" {
		dst = append(dst, '[')
	}
	for r := start; r < end; r++ {
		if r > start && s.cfg.Format == "json" {
			dst = append(dst, ',')
		}
		dst = jsonbatch.AppendRow(dst, b, r)
		if s.cfg.Format == "ndjson" {
			dst = append(dst, '\n')
		}
	}
	if s.cfg.Format == "json" {
		dst = append(dst, ']')
	}
	return dst
}

// Close has nothing to commit: rows were delivered as they were written
// (an HTTP endpoint cannot take them back when the run fails later).
func (s *sink) Close(context.Context, error) error {
	s.client.HTTPClient.CloseIdleConnections()
	return nil
}
