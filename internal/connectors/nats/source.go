// Package nats provides the pipeline's NATS JetStream connectors: the
// `nats` source reads a stream through a durable pull consumer and
// acknowledges each message only after every sink has written the batch
// that carried it (at-least-once; a failed or cancelled batch is nak'ed
// and redelivered), and the `nats` sink publishes one message per row
// with JetStream acknowledgements and a deterministic Nats-Msg-Id, so the
// stream's duplicate window drops what a retried run publishes again. Both
// register themselves in init().
package nats

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	neturl "net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Spec: pipeline.Spec{
			Name: "nats",
			Summary: "read a NATS JetStream stream through a durable pull consumer; each message (json: an object or an array " +
				"of objects, ndjson, or csv with a header line) becomes rows; messages are acknowledged only after every sink " +
				"wrote their batch, nak'ed when it failed (at-least-once); a message that cannot be decoded is rejected (to on_error, then acknowledged); " +
				"with stop_when_idle the run ends when the consumer " +
				"has nothing pending, otherwise it runs until cancelled",
			Config: func() any { return defaultSourceConfig() },
			Examples: []string{
				"{url: \"${NATS_URL}\", stream: ORDERS, subject: \"orders.>\", durable: kiln-scoring, stop_when_idle: true}",
				"{url: \"nats://127.0.0.1:4222\", stream: EVENTS, durable: events-archiver, format: ndjson, batch_size: 1000, max_wait: 2s,\n" +
					" schema: [{name: id, type: int64}, {name: kind, type: string}, {name: at, type: timestamp}]}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Source, error) {
			return newSource(cfg.(*SourceConfig), env), nil
		},
	})
}

// Message formats.
const (
	formatJSON   = "json"
	formatNDJSON = "ndjson"
	formatCSV    = "csv"
)

// SourceConfig configures the nats source.
type SourceConfig struct {
	URL          string            `yaml:"url" required:"true" doc:"NATS server URL(s), comma-separated (nats://host:4222)"`
	Stream       string            `yaml:"stream" required:"true" doc:"JetStream stream to read"`
	Subject      string            `yaml:"subject" doc:"subject filter of the consumer (wildcards allowed; default: the whole stream)"`
	Durable      string            `yaml:"durable" required:"true" doc:"durable consumer name: created if missing, its position survives runs"`
	Format       string            `yaml:"format" doc:"message body: json (an object or an array of objects), ndjson or csv (with a header line)"`
	BatchSize    int               `yaml:"batch_size" doc:"messages fetched (and emitted as one batch) at a time"`
	MaxWait      time.Duration     `yaml:"max_wait" doc:"longest wait for a fetch to fill"`
	AckWait      time.Duration     `yaml:"ack_wait" doc:"redelivery delay of a message that was not acknowledged (the consumer's AckWait)"`
	StopWhenIdle bool              `yaml:"stop_when_idle" doc:"end the run when the consumer has no pending messages (a batch job); otherwise run until cancelled"`
	CreateStream bool              `yaml:"create_stream" doc:"create the stream if it does not exist (subjects: subject, or STREAM.>; file storage, limits retention)"`
	Schema       []jsonbatch.Field `yaml:"schema" doc:"explicit columns (list of {name, type}); default: inferred from the first fetch"`
}

func defaultSourceConfig() *SourceConfig {
	return &SourceConfig{Format: formatJSON, BatchSize: 500, MaxWait: time.Second, AckWait: 30 * time.Second}
}

// Validate checks the configuration.
func (c *SourceConfig) Validate() error {
	switch c.Format {
	case formatJSON, formatNDJSON, formatCSV:
	default:
		return fmt.Errorf("format %q: want json, ndjson or csv", c.Format)
	}
	if err := checkName("stream", c.Stream); err != nil {
		return err
	}
	if err := checkName("durable", c.Durable); err != nil {
		return err
	}
	switch {
	case c.BatchSize <= 0:
		return errors.New("batch_size must be positive")
	case c.MaxWait < 10*time.Millisecond:
		return errors.New("max_wait must be at least 10ms")
	case c.AckWait < time.Second:
		return errors.New("ack_wait must be at least 1s")
	}
	if len(c.Schema) > 0 {
		if _, err := jsonbatch.Schema(c.Schema); err != nil {
			return err
		}
	}
	return nil
}

// checkName rejects names JetStream does not allow.
func checkName(what, n string) error {
	if n == "" {
		return fmt.Errorf("%s must not be empty", what)
	}
	for _, r := range n {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' {
			return fmt.Errorf("%s %q: names may not contain whitespace, '.', '*', '>', '/' or '\\'", what, n)
		}
	}
	return nil
}

type source struct {
	cfg      *SourceConfig
	log      *slog.Logger
	nc       *nats.Conn
	inflight atomic.Int64 // messages emitted and not yet acknowledged or nak'ed
	read     atomic.Int64
	reject   pipeline.RejectFunc // nil: undecodable messages are terminated
}

var (
	_ pipeline.Source     = (*source)(nil)
	_ pipeline.Rereadable = (*source)(nil)
	_ pipeline.Progresser = (*source)(nil)
	_ pipeline.Rejecter   = (*source)(nil)
)

// SetReject makes Read hand a message it cannot decode (or whose records
// do not fit the schema) to f as one record — its body, its subject and
// stream sequence — and acknowledge it once f's ack says it was
// dead-lettered (or nak it when the run failed first). Without f such a
// message is terminated and logged.
func (s *source) SetReject(f pipeline.RejectFunc) { s.reject = f }

func newSource(cfg *SourceConfig, env pipeline.Env) *source {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &source{cfg: cfg, log: log}
}

// Rereadable is false: acknowledged messages are not delivered again.
func (s *source) Rereadable() bool { return false }

// Progress reports messages read (the total of a stream is unknown).
func (s *source) Progress() (done, total int64) { return s.read.Load(), 0 }

// Close closes the connection (after the engine has acknowledged every
// batch).
func (s *source) Close() error {
	if s.nc != nil {
		s.nc.Close()
	}
	return nil
}

// ensureStream creates a stream capturing subject unless one of that name
// exists.
func ensureStream(ctx context.Context, js jetstream.JetStream, name, subject string) error {
	if _, err := js.Stream(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating stream %s for %s: %w", name, subject, err)
	}
	return nil
}

func connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(10*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactURLs(url), err)
	}
	return nc, nil
}

// redactURLs hides the passwords of comma-separated server URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// Read fetches messages and emits one batch per fetch.
func (s *source) Read(ctx context.Context, emit pipeline.EmitFunc) error {
	if s.nc == nil {
		nc, err := connect(s.cfg.URL, "kiln pipeline source")
		if err != nil {
			return fmt.Errorf("nats source: %w", err)
		}
		s.nc = nc
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("nats source: %w", err)
	}
	if s.cfg.CreateStream {
		subj := s.cfg.Subject
		if subj == "" {
			subj = s.cfg.Stream + ".>"
		}
		if err := ensureStream(ctx, js, s.cfg.Stream, subj); err != nil {
			return fmt.Errorf("nats source: %w", err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       s.cfg.Durable,
		FilterSubject: s.cfg.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("nats source: consumer %q on stream %q: %w", s.cfg.Durable, s.cfg.Stream, err)
	}
	var schema *arrow.Schema
	if len(s.cfg.Schema) > 0 {
		if schema, err = jsonbatch.Schema(s.cfg.Schema); err != nil {
			return err
		}
	}
	order := &jsonbatch.KeyOrder{}
	warned := false
	for {
		msgs, err := s.fetch(ctx, cons)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			if !s.cfg.StopWhenIdle {
				continue
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("nats source: consumer info: %w", err)
			}
			// Nothing left to deliver, and nothing delivered that is
			// neither ours in flight nor waiting for redelivery.
			if info.NumPending == 0 && int64(info.NumAckPending) <= s.inflight.Load() {
				return nil
			}
			continue
		}
		s.read.Add(int64(len(msgs)))
		type decoded struct {
			m    jetstream.Msg
			recs []jsonbatch.Record
		}
		var good []decoded
		var bad []jetstream.Msg
		var rejects []pipeline.SourceReject
		nrecs := 0
		for _, m := range msgs {
			r, err := decode(m.Data(), s.cfg.Format, order)
			if err != nil {
				if s.reject == nil {
					// A message that can never be decoded would be
					// redelivered forever: terminate it.
					s.log.Error("nats source: undecodable message terminated", "subject", m.Subject(), "err", err)
					_ = m.Term()
					continue
				}
				bad = append(bad, m)
				rejects = append(rejects, rejectOf(m, err))
				continue
			}
			good = append(good, decoded{m: m, recs: r})
			nrecs += len(r)
		}
		if schema == nil && len(good) > 0 {
			sample := make([]jsonbatch.Record, 0, nrecs)
			for _, d := range good {
				sample = append(sample, d.recs...)
			}
			schema = jsonbatch.Infer(sample, order.Keys)
		} else if schema != nil && !warned && len(s.cfg.Schema) == 0 && len(order.Keys) > schema.NumFields() {
			warned = true
			s.log.Warn("nats source: messages have keys that were not in the first fetch; they are dropped (set schema to keep them)",
				"keys", order.Keys[schema.NumFields():])
		}
		var keep []jetstream.Msg
		var b arrow.RecordBatch
		if len(good) > 0 {
			bld := jsonbatch.NewBuilder(nil, schema, nrecs)
			for i, d := range good {
				// A message's records go in whole or not at all: it is
				// acknowledged as one.
				if err := bld.AppendAll(d.recs); err != nil {
					if s.reject == nil {
						bld.Release()
						s.nakAll(keep)
						for _, g := range good[i:] {
							_ = g.m.Nak()
						}
						return fmt.Errorf("nats source: message on %s: %w (the schema was inferred from the first fetch; set schema to fix it)", d.m.Subject(), err)
					}
					bad = append(bad, d.m)
					rejects = append(rejects, rejectOf(d.m, err))
					continue
				}
				keep = append(keep, d.m)
			}
			b = bld.NewBatch()
			bld.Release()
		}
		if len(bad) > 0 {
			// Dead-lettered, then acknowledged (by the engine, through
			// the acker), so they are not redelivered forever.
			s.inflight.Add(int64(len(bad)))
			if err := s.reject(ctx, rejects, s.acker(bad)); err != nil {
				if b != nil {
					b.Release()
				}
				s.nakAll(keep)
				return err
			}
		}
		if len(keep) == 0 {
			if b != nil {
				b.Release()
			}
			continue
		}
		s.inflight.Add(int64(len(keep)))
		err = emit(ctx, b, s.acker(keep))
		b.Release()
		if err != nil {
			return err
		}
	}
}

// rejectOf is the rejected record of a message: its body, subject and
// stream sequence.
func rejectOf(m jetstream.Msg, err error) pipeline.SourceReject {
	r := pipeline.SourceReject{Record: pipeline.CopyRecord(m.Data()), Input: m.Subject(), Err: err}
	if md, merr := m.Metadata(); merr == nil {
		r.Index = int64(md.Sequence.Stream)
	}
	return r
}

// fetch waits up to max_wait for up to batch_size messages. The pull
// request is not cut short when ctx ends (messages the server delivered
// to an abandoned request would stay unacknowledged until ack_wait):
// it runs to its expiry and what it got is nak'ed.
func (s *source) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.MaxWait)
	defer cancel()
	batch, err := cons.Fetch(s.cfg.BatchSize, jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("nats source: fetch: %w", err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && ctx.Err() == nil &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		s.nakAll(msgs)
		return nil, fmt.Errorf("nats source: fetch: %w", err)
	}
	if ctx.Err() != nil {
		s.nakAll(msgs)
		return nil, ctx.Err()
	}
	return msgs, nil
}

func (s *source) nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}

// acker acknowledges the batch's messages once every sink wrote it, or
// nak's them (prompt redelivery) when the batch failed.
func (s *source) acker(msgs []jetstream.Msg) pipeline.AckFunc {
	return func(ctx context.Context, err error) error {
		defer s.inflight.Add(-int64(len(msgs)))
		var first error
		for i, m := range msgs {
			var aerr error
			switch {
			case err != nil:
				aerr = m.Nak()
			case i == len(msgs)-1:
				// The last acknowledgement waits for the server's
				// confirmation, so an acked batch is known to be acked.
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				aerr = m.DoubleAck(actx)
				cancel()
			default:
				aerr = m.Ack()
			}
			if aerr != nil && first == nil {
				first = aerr
			}
		}
		if first != nil {
			return fmt.Errorf("nats source: acknowledging: %w", first)
		}
		return nil
	}
}

// decode turns one message body into records.
func decode(data []byte, format string, order *jsonbatch.KeyOrder) ([]jsonbatch.Record, error) {
	switch format {
	case formatNDJSON:
		return jsonbatch.ParseNDJSON(data, order)
	case formatCSV:
		return decodeCSV(data, order)
	}
	t := bytes.TrimSpace(data)
	if len(t) > 0 && t[0] == '[' {
		return jsonbatch.ParseArray(t, order)
	}
	r, err := jsonbatch.ParseObject(t, order)
	if err != nil {
		return nil, err
	}
	return []jsonbatch.Record{r}, nil
}

// decodeCSV reads a header line and rows; fields are typed like JSON
// values (integers, floats, true/false, else text; empty is null).
func decodeCSV(data []byte, order *jsonbatch.KeyOrder) ([]jsonbatch.Record, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	seen := map[string]bool{}
	for _, h := range header {
		if h == "" || seen[h] {
			return nil, fmt.Errorf("csv header: empty or repeated column name %q", h)
		}
		seen[h] = true
	}
	var out []jsonbatch.Record
	for line := 2; ; line++ {
		fields, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		rec := make(jsonbatch.Record, len(header))
		for i, h := range header {
			rec[h] = csvValue(fields[i])
		}
		out = append(out, rec)
	}
	for _, h := range header {
		order.Add(h)
	}
	return out, nil
}

func csvValue(f string) any {
	switch f {
	case "":
		return nil
	case "true":
		return true
	case "false":
		return false
	}
	if _, err := strconv.ParseInt(f, 10, 64); err == nil {
		return json.Number(f)
	}
	if _, err := strconv.ParseFloat(f, 64); err == nil && json.Valid([]byte(f)) {
		return json.Number(f)
	}
	return f
}
