package nats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/connectors/http/jsonbatch"
	"github.com/kilnai/kiln/internal/pipeline"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Spec: pipeline.Spec{
			Name: "nats",
			Summary: "publish each row as a JSON message to NATS JetStream, asynchronously with a bounded window of " +
				"unacknowledged publishes; Write returns once the stream acknowledged every row. Each message carries a " +
				"deterministic Nats-Msg-Id (from key columns, or from the run id, the distributed task and the row's position) so the stream's " +
				"duplicate window drops rows a retried run publishes again",
			Config: func() any { return defaultSinkConfig() },
			Examples: []string{
				"{url: \"${NATS_URL}\", subject: scores.churn}",
				"{url: \"nats://127.0.0.1:4222\", subject: \"orders.{region}.scored\", key: [order_id], max_pending: 1024}",
			},
		},
		Build: func(_ context.Context, cfg any, env pipeline.Env) (pipeline.Sink, error) {
			return newSink(cfg.(*SinkConfig), env)
		},
	})
}

// SinkConfig configures the nats sink.
type SinkConfig struct {
	URL        string        `yaml:"url" required:"true" doc:"NATS server URL(s), comma-separated"`
	Subject    string        `yaml:"subject" required:"true" doc:"subject to publish to; {column} is replaced by the row's value (characters not allowed in a subject token become _)"`
	Key        []string      `yaml:"key" doc:"columns whose values identify a row: Nats-Msg-Id is derived from them, so the same row published twice is stored once; default: the run id and the row's position (stable only when batches reach the sink in a stable order, e.g. settings.ordered)"`
	Stream     string        `yaml:"stream" doc:"create this stream if it does not exist, capturing the subject ({column} parts as *); default: a stream must already capture the subject"`
	MaxPending int           `yaml:"max_pending" doc:"most publishes awaiting the stream's acknowledgement"`
	AckTimeout time.Duration `yaml:"ack_timeout" doc:"longest wait for the stream to acknowledge a publish"`
}

func defaultSinkConfig() *SinkConfig {
	return &SinkConfig{MaxPending: 256, AckTimeout: 30 * time.Second}
}

// Validate checks the configuration.
func (c *SinkConfig) Validate() error {
	if _, err := parseSubject(c.Subject); err != nil {
		return err
	}
	if c.Stream != "" {
		if err := checkName("stream", c.Stream); err != nil {
			return err
		}
	}
	if c.MaxPending <= 0 {
		return errors.New("max_pending must be positive")
	}
	if c.AckTimeout <= 0 {
		return errors.New("ack_timeout must be positive")
	}
	for _, k := range c.Key {
		if k == "" {
			return errors.New("key names an empty column")
		}
	}
	return nil
}

// subjectPart is a literal or, with col set, a column reference.
type subjectPart struct {
	lit string
	col string
}

func parseSubject(s string) ([]subjectPart, error) {
	if s == "" {
		return nil, errors.New("subject must not be empty")
	}
	var parts []subjectPart
	for rest := s; rest != ""; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			parts = append(parts, subjectPart{lit: rest})
			break
		}
		if i > 0 {
			parts = append(parts, subjectPart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("subject %q: unclosed {", s)
		}
		col := rest[i+1 : i+j]
		if col == "" {
			return nil, fmt.Errorf("subject %q: empty {}", s)
		}
		parts = append(parts, subjectPart{col: col})
		rest = rest[i+j+1:]
	}
	for _, p := range parts {
		if strings.ContainsAny(p.lit, " \t\r\n*>}") {
			return nil, fmt.Errorf("subject %q: a subject to publish to may not contain whitespace, wildcards or a stray }", s)
		}
	}
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return nil, fmt.Errorf("subject %q has an empty token", s)
	}
	return parts, nil
}

type sink struct {
	cfg     *SinkConfig
	subject []subjectPart
	templ   bool
	runID   string
	task    string
	nc      *nats.Conn
	js      jetstream.JetStream
	rows    int64 // rows published so far (the position of the next)
	buf     []byte
}

var _ pipeline.Sink = (*sink)(nil)

func newSink(cfg *SinkConfig, env pipeline.Env) (*sink, error) {
	parts, err := parseSubject(cfg.Subject)
	if err != nil {
		return nil, err
	}
	s := &sink{cfg: cfg, subject: parts, runID: env.RunID, task: env.Task}
	for _, p := range parts {
		if p.col != "" {
			s.templ = true
		}
	}
	return s, nil
}

func (s *sink) open() error {
	if s.js != nil {
		return nil
	}
	nc, err := connect(s.cfg.URL, "kiln pipeline sink")
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(s.cfg.MaxPending))
	if err != nil {
		nc.Close()
		return err
	}
	if s.cfg.Stream != "" {
		var sb strings.Builder
		for _, p := range s.subject {
			if p.col != "" {
				sb.WriteString("*")
			} else {
				sb.WriteString(p.lit)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ensureStream(ctx, js, s.cfg.Stream, sb.String()); err != nil {
			nc.Close()
			return err
		}
	}
	s.nc, s.js = nc, js
	return nil
}

// Write publishes every row and waits for all acknowledgements.
func (s *sink) Write(ctx context.Context, b pipeline.Batch) ([]pipeline.RowError, error) {
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("nats sink: %w", err)
	}
	cols := map[string]int{}
	for i, f := range b.Schema().Fields() {
		cols[f.Name] = i
	}
	for _, p := range s.subject {
		if _, ok := cols[p.col]; p.col != "" && !ok {
			return nil, fmt.Errorf("nats sink: subject %q names column %q, which the data does not have", s.cfg.Subject, p.col)
		}
	}
	keyCols := make([]int, len(s.cfg.Key))
	for i, k := range s.cfg.Key {
		c, ok := cols[k]
		if !ok {
			return nil, fmt.Errorf("nats sink: key column %q is not in the data", k)
		}
		keyCols[i] = c
	}

	n := int(b.NumRows())
	type pending struct {
		row int
		f   jetstream.PubAckFuture
	}
	var rej []pipeline.RowError
	var futures []pending
	for r := range n {
		subj, err := s.render(b, cols, r)
		if err != nil {
			rej = append(rej, pipeline.RowError{Row: r, Err: err})
			continue
		}
		data := jsonbatch.AppendRow(nil, b, r)
		m := nats.NewMsg(subj)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, s.msgID(b, keyCols, r))
		f, err := s.js.PublishMsgAsync(m, jetstream.WithStallWait(s.cfg.AckTimeout))
		if err != nil {
			return nil, fmt.Errorf("nats sink: publish to %s: %w", subj, err)
		}
		futures = append(futures, pending{r, f})
	}
	s.rows += int64(n)
	timer := time.NewTimer(s.cfg.AckTimeout)
	defer timer.Stop()
	for _, p := range futures {
		select {
		case <-p.f.Ok():
		case err := <-p.f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				err = fmt.Errorf("no JetStream stream captures subject %s", p.f.Msg().Subject)
				if !s.templ {
					return nil, fmt.Errorf("nats sink: %w", err)
				}
			}
			rej = append(rej, pipeline.RowError{Row: p.row, Err: fmt.Errorf("nats sink: publish: %w", err)})
		case <-timer.C:
			return nil, fmt.Errorf("nats sink: no acknowledgement from the stream within %s", s.cfg.AckTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return rej, nil
}

// render fills the subject template from row r.
func (s *sink) render(b pipeline.Batch, cols map[string]int, r int) (string, error) {
	if !s.templ {
		return s.cfg.Subject, nil
	}
	var sb strings.Builder
	for _, p := range s.subject {
		if p.col == "" {
			sb.WriteString(p.lit)
			continue
		}
		a := b.Column(cols[p.col])
		if a.IsNull(r) {
			return "", fmt.Errorf("subject column %q is null", p.col)
		}
		v := a.ValueStr(r)
		if v == "" {
			return "", fmt.Errorf("subject column %q is empty", p.col)
		}
		sb.WriteString(subjectToken(v))
	}
	return sb.String(), nil
}

// subjectToken replaces characters a subject token may not hold.
func subjectToken(v string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f {
			return '_'
		}
		return r
	}, v)
}

// msgID derives the message's Nats-Msg-Id: a digest of the key columns'
// values, or of the run id, the task (distributed runs; a redelivered task
// runs under the same run id) and the row's position in the run.
func (s *sink) msgID(b arrow.RecordBatch, keyCols []int, r int) string {
	h := sha256.New()
	if len(keyCols) == 0 {
		fmt.Fprintf(h, "run\x00%s\x00%s\x00%d", s.runID, s.task, s.rows+int64(r))
	} else {
		s.buf = s.buf[:0]
		s.buf = append(s.buf, "key"...)
		for _, c := range keyCols {
			s.buf = append(s.buf, 0)
			s.buf = jsonbatch.AppendValue(s.buf, b.Column(c), r)
		}
		h.Write(s.buf)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Close has nothing to commit: Write returned only after the stream
// acknowledged every row.
func (s *sink) Close(ctx context.Context, _ error) error {
	if s.nc == nil {
		return nil
	}
	defer s.nc.Close()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("nats sink: %w", err)
	}
	return nil
}
