package http

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{
			Name: "http",
			Summary: "read records from a JSON API: the array at `records` of each response, page after page " +
				"(cursor, page number or RFC 8288 Link header), with retries and exponential back-off on connection errors, " +
				"5xx and 429 (honouring Retry-After); the schema is explicit or inferred from the first `infer_records` records; " +
				"records that are not objects or do not fit it are rejected (to on_error, with page and position)",
			Config: func() any { return defaultSourceConfig() },
			Examples: []string{
				"{url: \"https://api.example.com/v1/customers\", records: data.items, headers: {Authorization: \"Bearer ${API_TOKEN}\"},\n" +
					" pagination: {type: cursor, cursor_field: meta.next_cursor, cursor_param: cursor}}",
				"{url: \"${ORDERS_URL}\", pagination: {type: page, page_param: page, size_param: per_page, size: 100, total_field: total}, records: orders}",
				"{url: \"https://api.example.com/items?limit=200\", pagination: {type: link}, max_pages: 50,\n" +
					" schema: [{name: id, type: int64}, {name: name, type: string}, {name: updated, type: timestamp}]}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env)
		},
	})
}

// Pagination types.
const (
	pageNone   = "none"
	pageCursor = "cursor"
	pagePage   = "page"
	pageLink   = "link"
)

// Pagination says how the source finds the next page.
type Pagination struct {
	Type        string `yaml:"type" doc:"none, cursor (a response field holds the next cursor), page (page number parameter) or link (RFC 8288 Link header with rel=\"next\")"`
	CursorField string `yaml:"cursor_field" doc:"cursor: dot path of the next cursor in the response; missing, null or empty ends"`
	CursorParam string `yaml:"cursor_param" doc:"cursor: query parameter that carries the cursor"`
	PageParam   string `yaml:"page_param" doc:"page: query parameter of the page number"`
	SizeParam   string `yaml:"size_param" doc:"page: query parameter of the page size (\"\" to send none)"`
	Size        int    `yaml:"size" doc:"page: records per page (sent in size_param)"`
	StartPage   int    `yaml:"start_page" doc:"page: number of the first page"`
	TotalField  string `yaml:"total_field" doc:"page: dot path of the total number of records; reading stops when that many were read (else at the first empty page)"`
}

// SourceConfig configures the http source.
type SourceConfig struct {
	URL          string            `yaml:"url" required:"true" doc:"URL of the first page (query parameters may be part of it)"`
	Method       string            `yaml:"method" doc:"GET or POST"`
	Headers      map[string]string `yaml:"headers" doc:"request headers, e.g. Authorization: \"Bearer ${API_TOKEN}\" (values never enter fingerprints or logs)"`
	Params       map[string]string `yaml:"params" doc:"query parameters added to every request"`
	Body         string            `yaml:"body" doc:"request body of a POST (sent as application/json)"`
	Records      string            `yaml:"records" doc:"dot path of the array of records in a response (data.items); empty: the response is the array"`
	Pagination   Pagination        `yaml:"pagination" doc:"how to find the next page"`
	MaxPages     int               `yaml:"max_pages" doc:"stop after this many pages (0: no limit)"`
	RetryConfig  `yaml:",inline"`
	Schema       []jsonbatch.Field `yaml:"schema" doc:"explicit columns (list of {name, type}); keys not listed are ignored; default: inferred"`
	InferRecords int               `yaml:"infer_records" doc:"records sampled (across pages) to infer the schema; keys first seen later are dropped with a warning"`
	BatchSize    int               `yaml:"batch_size" doc:"rows per batch (default: settings.batch_size)"`
}

func defaultSourceConfig() *SourceConfig {
	return &SourceConfig{
		Method: http.MethodGet,
		Pagination: Pagination{
			Type: pageNone, CursorParam: "cursor", PageParam: "page", SizeParam: "per_page", Size: 100, StartPage: 1,
		},
		RetryConfig:  defaultRetry(),
		InferRecords: 1000,
	}
}

// Validate checks the configuration.
func (c *SourceConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an absolute http or https URL", c.URL)
	}
	c.Method = strings.ToUpper(c.Method)
	if c.Method != http.MethodGet && c.Method != http.MethodPost {
		return fmt.Errorf("method %q: want GET or POST", c.Method)
	}
	if c.Body != "" && c.Method != http.MethodPost {
		return errors.New("body needs method POST")
	}
	p := &c.Pagination
	switch p.Type {
	case pageNone, pageLink:
	case pageCursor:
		if p.CursorField == "" || p.CursorParam == "" {
			return errors.New("pagination cursor needs cursor_field and cursor_param")
		}
	case pagePage:
		if p.PageParam == "" || p.Size <= 0 {
			return errors.New("pagination page needs page_param and a positive size")
		}
	default:
		return fmt.Errorf("pagination type %q: want none, cursor, page or link", p.Type)
	}
	if c.MaxPages < 0 || c.InferRecords <= 0 || c.BatchSize < 0 {
		return errors.New("max_pages and batch_size must not be negative, infer_records must be positive")
	}
	if len(c.Schema) > 0 {
		if _, err := jsonbatch.Schema(c.Schema); err != nil {
			return err
		}
	}
	return c.RetryConfig.validate()
}

type source struct {
	cfg    *SourceConfig
	log    *slog.Logger
	client *retryablehttp.Client
	batch  int
	read   atomic.Int64
	total  atomic.Int64
	reject pipeline.RejectFunc // nil: a record that cannot be decoded fails Read
}

var (
	_ pipeline.Source        = (*source)(nil)
	_ pipeline.Fingerprinter = (*source)(nil)
	_ pipeline.Progresser    = (*source)(nil)
	_ pipeline.Rejecter      = (*source)(nil)
)

// SetReject makes Read hand the records it cannot take (not an object, a
// value that does not fit the schema) to f, with the page's URL (query
// values hidden) and number and the record's number in the page, and
// read on.
func (s *source) SetReject(f pipeline.RejectFunc) { s.reject = f }

func newSource(cfg *SourceConfig, env pipeline.Env) (*source, error) {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.BatchSize
	if n == 0 {
		n = env.BatchSize
	}
	if n <= 0 {
		n = 8192
	}
	return &source{cfg: cfg, log: log, client: newClient(cfg.RetryConfig, log), batch: n}, nil
}

// Fingerprint identifies the request sequence: method, URL, parameters,
// body digest, header names (never their values: they hold secrets),
// records path and pagination. An API's data can change under the same
// fingerprint; set a cache TTL that matches how fresh results must be.
func (s *source) Fingerprint(context.Context) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "http\x00%s\x00%s\x00", s.cfg.Method, s.cfg.URL)
	for _, k := range sortedKeys(s.cfg.Params) {
		fmt.Fprintf(h, "p:%s=%s\x00", k, s.cfg.Params[k])
	}
	for _, k := range sortedKeys(s.cfg.Headers) {
		fmt.Fprintf(h, "h:%s\x00", http.CanonicalHeaderKey(k))
	}
	b := sha256.Sum256([]byte(s.cfg.Body))
	p := s.cfg.Pagination
	fmt.Fprintf(h, "b:%x\x00r:%s\x00%+v\x00%d\x00%+v", b, s.cfg.Records, p, s.cfg.MaxPages, s.cfg.Schema)
	return "http:" + hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Progress reports records read and, with page pagination and a
// total_field, the total.
func (s *source) Progress() (done, total int64) { return s.read.Load(), s.total.Load() }

// Close releases idle connections.
func (s *source) Close() error {
	s.client.HTTPClient.CloseIdleConnections()
	return nil
}

// record is one record of a page, with what locates it.
type record struct {
	rec   jsonbatch.Record
	raw   []byte // its JSON text
	input string // the page's URL and number
	index int64  // its 1-based number in the page
}

// page is one fetched response.
type page struct {
	recs   []record
	bad    []pipeline.SourceReject // records that are not objects
	items  int                     // records, bad ones included
	next   string                  // next URL ("" = last page)
	number int
}

// Read fetches pages in order and emits batches of batch rows.
func (s *source) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	s.read.Store(0)
	s.total.Store(0)
	var schema *arrow.Schema
	if len(s.cfg.Schema) > 0 {
		var err error
		if schema, err = jsonbatch.Schema(s.cfg.Schema); err != nil {
			return err
		}
	}
	order := &jsonbatch.KeyOrder{}
	var pending []record
	emitted := 0
	warned := false
	flush := func(all bool) error {
		if schema == nil {
			if !all && len(pending) < s.cfg.InferRecords {
				return nil
			}
			if len(pending) == 0 {
				return nil
			}
			sample := make([]jsonbatch.Record, min(len(pending), s.cfg.InferRecords))
			for i := range sample {
				sample[i] = pending[i].rec
			}
			schema = jsonbatch.Infer(sample, order.Keys)
		}
		for len(pending) >= s.batch || (all && len(pending) > 0) {
			n := min(len(pending), s.batch)
			bld := jsonbatch.NewBuilder(nil, schema, n)
			var bad []pipeline.SourceReject
			for i, r := range pending[:n] {
				if err := bld.Append(r.rec); err != nil {
					if s.reject == nil {
						bld.Release()
						return fmt.Errorf("record %d, %w (set the source's schema if the sample of %d records was not representative)", emitted+i, err, s.cfg.InferRecords)
					}
					bad = append(bad, pipeline.SourceReject{Record: pipeline.CopyRecord(r.raw), Input: r.input, Index: r.index, Err: err})
				}
			}
			b := bld.NewBatch()
			bld.Release()
			emitted += n
			pending = pending[n:]
			if len(bad) > 0 {
				if err := s.reject(ctx, bad, nil); err != nil {
					b.Release()
					return err
				}
			}
			err := emit(ctx, b, nil)
			b.Release()
			if err != nil {
				return err
			}
		}
		return nil
	}

	cur := s.firstURL()
	number := s.cfg.Pagination.StartPage
	cursor := ""
	for pages := 0; cur != ""; pages++ {
		if s.cfg.MaxPages > 0 && pages >= s.cfg.MaxPages {
			break
		}
		pg, err := s.fetch(ctx, cur, cursor, number, order)
		if err != nil {
			return err
		}
		if schema != nil && !warned && len(order.Keys) > schema.NumFields() && len(s.cfg.Schema) == 0 {
			warned = true
			s.log.Warn("http source: records have keys that were not in the sampled records; they are dropped",
				"keys", order.Keys[schema.NumFields():], "infer_records", s.cfg.InferRecords)
		}
		s.read.Add(int64(pg.items))
		if len(pg.bad) > 0 {
			if err := s.reject(ctx, pg.bad, nil); err != nil {
				return err
			}
		}
		pending = append(pending, pg.recs...)
		if err := flush(false); err != nil {
			return err
		}
		cur, cursor = pg.next, ""
		if s.cfg.Pagination.Type == pageCursor && pg.next != "" {
			cur, cursor = s.firstURL(), pg.next
		}
		number++
	}
	return flush(true)
}

func (s *source) firstURL() string {
	u, _ := url.Parse(s.cfg.URL)
	if len(s.cfg.Params) > 0 {
		q := u.Query()
		for k, v := range s.cfg.Params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// fetch gets one page: target is the URL to request (cursor or page
// parameters are added here).
func (s *source) fetch(ctx context.Context, target, cursor string, number int, order *jsonbatch.KeyOrder) (*page, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("next page URL %q: %w", target, err)
	}
	p := s.cfg.Pagination
	q := u.Query()
	switch p.Type {
	case pageCursor:
		if cursor != "" {
			q.Set(p.CursorParam, cursor)
		}
	case pagePage:
		q.Set(p.PageParam, strconv.Itoa(number))
		if p.SizeParam != "" {
			q.Set(p.SizeParam, strconv.Itoa(p.Size))
		}
	}
	if p.Type == pageCursor || p.Type == pagePage {
		u.RawQuery = q.Encode()
	}
	var body any
	if s.cfg.Body != "" {
		body = []byte(s.cfg.Body)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, s.cfg.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("http source: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, data, err := do(ctx, s.client, req)
	if err != nil {
		return nil, fmt.Errorf("http source: %w", err)
	}
	where := fmt.Sprintf("http source: %s %s", s.cfg.Method, safeURL(u))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s: status %d: %s", where, resp.StatusCode, snippet(data))
	}
	raw, ok, err := jsonbatch.Lookup(data, s.cfg.Records)
	if err != nil {
		return nil, fmt.Errorf("%s: response: %w", where, err)
	}
	pg := &page{number: number}
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: response has no %q", where, s.cfg.Records)
	case bytes.Equal(bytes.TrimSpace(raw), []byte("null")):
		// An empty page written as null.
	default:
		items, err := jsonbatch.SplitArray(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: records at %q: %w", where, s.cfg.Records, err)
		}
		pg.items = len(items)
		input := fmt.Sprintf("%s page %d", safeURL(u), number)
		for i, it := range items {
			r, err := jsonbatch.ParseObject(it, order)
			if err != nil {
				if s.reject == nil {
					return nil, fmt.Errorf("%s: records at %q: record %d: %w", where, s.cfg.Records, i, err)
				}
				pg.bad = append(pg.bad, pipeline.SourceReject{Record: pipeline.CopyRecord(it), Input: input, Index: int64(i + 1), Err: err})
				continue
			}
			pg.recs = append(pg.recs, record{rec: r, raw: it, input: input, index: int64(i + 1)})
		}
	}
	switch p.Type {
	case pageCursor:
		c, ok, err := jsonbatch.Lookup(data, p.CursorField)
		if err != nil {
			return nil, fmt.Errorf("%s: cursor: %w", where, err)
		}
		if ok {
			if pg.next, err = cursorText(c); err != nil {
				return nil, fmt.Errorf("%s: cursor at %q: %w", where, p.CursorField, err)
			}
		}
		if pg.items == 0 {
			pg.next = ""
		}
	case pagePage:
		if pg.items == 0 {
			break
		}
		pg.next = "next"
		if p.TotalField != "" {
			t, ok, err := jsonbatch.Lookup(data, p.TotalField)
			if err != nil {
				return nil, fmt.Errorf("%s: total: %w", where, err)
			}
			if ok {
				n, err := strconv.ParseInt(string(bytes.TrimSpace(t)), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: total at %q is not an integer", where, p.TotalField)
				}
				s.total.Store(n)
				if s.read.Load()+int64(pg.items) >= n {
					pg.next = ""
				}
			}
		}
		if pg.next != "" {
			pg.next = u.String()
		}
	case pageLink:
		if next := nextLink(resp.Header.Values("Link")); next != "" {
			ref, err := url.Parse(next)
			if err != nil {
				return nil, fmt.Errorf("%s: Link next %q: %w", where, next, err)
			}
			pg.next = u.ResolveReference(ref).String()
		}
	}
	return pg, nil
}

func cursorText(raw json.RawMessage) (string, error) {
	t := bytes.TrimSpace(raw)
	switch {
	case len(t) == 0 || bytes.Equal(t, []byte("null")):
		return "", nil
	case t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return "", err
		}
		return s, nil
	case t[0] == '-' || (t[0] >= '0' && t[0] <= '9'):
		return string(t), nil
	}
	return "", errors.New("want a string or a number")
}

// nextLink returns the target of the rel="next" link of RFC 8288 Link
// header values ("" if none).
func nextLink(values []string) string {
	for _, v := range values {
		for _, part := range splitLinks(v) {
			part = strings.TrimSpace(part)
			if !strings.HasPrefix(part, "<") {
				continue
			}
			end := strings.IndexByte(part, '>')
			if end < 0 {
				continue
			}
			target := part[1:end]
			for _, param := range strings.Split(part[end+1:], ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				v = strings.Trim(strings.TrimSpace(v), `"`)
				if slices.ContainsFunc(strings.Fields(v), func(r string) bool { return strings.EqualFold(r, "next") }) {
					return target
				}
			}
		}
	}
	return ""
}

// splitLinks splits a Link header value at the commas between links (not
// those inside <...> or quotes).
func splitLinks(v string) []string {
	var out []string
	start, inURL, inQuote := 0, false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '<' && !inQuote:
			inURL = true
		case c == '>' && !inQuote:
			inURL = false
		case c == '"' && !inURL:
			inQuote = !inQuote
		case c == ',' && !inURL && !inQuote:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}
