// Package http provides the pipeline's HTTP connectors: the `http` source
// reads records from a JSON API (cursor, page or Link-header pagination,
// retries with exponential back-off and jitter that honour Retry-After),
// and the `http` sink POSTs batches of rows as JSON arrays or NDJSON with
// the same retries, dead-lettering the rows of a batch the server refuses
// with a 4xx status. Both register themselves in init().
package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// RetryConfig is the retry policy shared by the source and the sink.
type RetryConfig struct {
	Retries      int           `yaml:"retries" doc:"retries after a connection error, a 5xx status or 429 (0: none)"`
	RetryWaitMin time.Duration `yaml:"retry_wait_min" doc:"first back-off; it doubles with each retry, with jitter"`
	RetryWaitMax time.Duration `yaml:"retry_wait_max" doc:"longest back-off, also the cap on a server's Retry-After"`
	Timeout      time.Duration `yaml:"timeout" doc:"time limit of one request, response body included"`
}

func defaultRetry() RetryConfig {
	return RetryConfig{Retries: 4, RetryWaitMin: 500 * time.Millisecond, RetryWaitMax: 30 * time.Second, Timeout: 30 * time.Second}
}

func (r *RetryConfig) validate() error {
	switch {
	case r.Retries < 0:
		return errors.New("retries must not be negative")
	case r.RetryWaitMin <= 0 || r.RetryWaitMax < r.RetryWaitMin:
		return errors.New("retry_wait_min must be positive and at most retry_wait_max")
	case r.Timeout <= 0:
		return errors.New("timeout must be positive")
	}
	return nil
}

// newClient builds a retrying client: connection errors, 5xx (but 501)
// and 429 are retried with exponential back-off and jitter; a Retry-After
// header on 429 or 503 sets the wait instead (capped by retry_wait_max).
// After the last retry the last response is returned as it is.
func newClient(rc RetryConfig, log *slog.Logger) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Timeout: rc.Timeout}
	c.RetryMax = rc.Retries
	c.RetryWaitMin = rc.RetryWaitMin
	c.RetryWaitMax = rc.RetryWaitMax
	c.Backoff = backoff
	c.CheckRetry = retryablehttp.DefaultRetryPolicy
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if log != nil {
		c.Logger = retryLogger{log}
	} else {
		c.Logger = nil
	}
	return c
}

// retryLogger logs retries at debug level (the default logger would print
// every request).
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Warn("http: "+msg, scrub(kv)...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Debug("http: "+msg, scrub(kv)...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug("http: "+msg, scrub(kv)...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Debug("http: "+msg, scrub(kv)...) }

var urlRE = regexp.MustCompile(`https?://[^\s"]+`)

// scrub replaces URLs in log values by their safe form.
func scrub(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch t := v.(type) {
		case string:
			out[i] = urlRE.ReplaceAllStringFunc(t, func(m string) string {
				u, err := url.Parse(m)
				if err != nil {
					return "<url>"
				}
				return safeURL(u)
			})
		case error:
			out[i] = scrub([]any{t.Error()})[0]
		default:
			out[i] = v
		}
	}
	return out
}

// safeURL shows a URL without credentials or query values (API keys are
// often query parameters): https://host/path?key=…&page=…
func safeURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		var names []string
		for k := range c.Query() {
			names = append(names, k+"=…")
		}
		sort.Strings(names)
		c.RawQuery = ""
		return c.String() + "?" + strings.Join(names, "&")
	}
	return c.String()
}

// requestError is err without the URL a *url.Error would print.
func requestError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// backoff is exponential with "equal jitter" (a random wait between half
// and all of min·2^n), honouring Retry-After (seconds or an HTTP date) on
// 429 and 503.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(d, maxWait)
		}
	}
	d := float64(minWait) * math.Pow(2, float64(attempt))
	if d > float64(maxWait) || math.IsInf(d, 0) {
		d = float64(maxWait)
	}
	half := d / 2
	return time.Duration(half + rand.Float64()*half)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		// The caller caps the wait; keep huge values from overflowing.
		return time.Duration(min(s, 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// maxBody bounds what is read of one response.
const maxBody = 256 << 20

// do sends a request and returns the status and body of the final
// response.
func do(ctx context.Context, c *retryablehttp.Client, req *retryablehttp.Request) (*http.Response, []byte, error) {
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%s %s: %w", req.Method, safeURL(req.URL), requestError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the response: %w", req.Method, safeURL(req.URL), err)
	}
	if len(body) > maxBody {
		return nil, nil, fmt.Errorf("%s %s: response larger than %d bytes", req.Method, safeURL(req.URL), maxBody)
	}
	return resp, body, nil
}

// snippet shortens a response body for an error message.
func snippet(b []byte) string {
	const n = 200
	s := string(b)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strconv.Quote(s)
}
