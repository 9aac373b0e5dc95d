package distributed

import (
	"context"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kilnai/kiln/internal/pipeline"
)

// DefaultQueue is the queue name when none is given.
const DefaultQueue = "kiln"

// Defaults of the work queue's consumer.
const (
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 5
)

// Queue names the NATS objects of a work queue and the consumer's
// redelivery policy. Submitter and workers must agree on it.
type Queue struct {
	// Name prefixes the streams, subjects and consumer ("kiln").
	Name string
	// AckWait is how long a delivered task may go without an
	// acknowledgement or heart-beat before it is redelivered.
	AckWait time.Duration
	// MaxDeliver is how many times a task is delivered before the run
	// fails.
	MaxDeliver int
}

func (q Queue) withDefaults() (Queue, error) {
	if q.Name == "" {
		q.Name = DefaultQueue
	}
	for _, r := range q.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return q, fmt.Errorf("queue name %q: use letters, digits, _ and -", q.Name)
		}
	}
	if q.AckWait <= 0 {
		q.AckWait = DefaultAckWait
	}
	if q.AckWait < time.Second {
		return q, errors.New("ack wait must be at least 1s")
	}
	if q.MaxDeliver <= 0 {
		q.MaxDeliver = DefaultMaxDeliver
	}
	return q, nil
}

func (q Queue) tasksStream() string   { return strings.ToUpper(q.Name) + "_TASKS" }
func (q Queue) resultsStream() string { return strings.ToUpper(q.Name) + "_RESULTS" }
func (q Queue) consumer() string      { return strings.ToUpper(q.Name) + "_WORKERS" }
func (q Queue) taskSubject(run string) string {
	return q.Name + ".tasks." + run
}
func (q Queue) resultSubject(run string) string {
	return q.Name + ".results." + run
}

// resultsMaxAge is how long task results are kept.
const resultsMaxAge = 7 * 24 * time.Hour

// ensure creates (or updates) the streams and the workers' consumer.
func (q Queue) ensure(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       q.tasksStream(),
		Subjects:   []string{q.Name + ".tasks.>"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("tasks stream %s: %w", q.tasksStream(), err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       q.resultsStream(),
		Subjects:   []string{q.Name + ".results.>"},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     resultsMaxAge,
		Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("results stream %s: %w", q.resultsStream(), err)
	}
	// An existing consumer is left as it is: updating it would drop the
	// pull requests of workers that are waiting for tasks.
	if c, err := js.Consumer(ctx, q.tasksStream(), q.consumer()); err == nil {
		return c, nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("workers consumer %s: %w", q.consumer(), err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, q.tasksStream(), jetstream.ConsumerConfig{
		Durable:       q.consumer(),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.AckWait,
		MaxDeliver:    q.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: q.Name + ".tasks.>",
	})
	if err != nil {
		return nil, fmt.Errorf("workers consumer %s: %w", q.consumer(), err)
	}
	return c, nil
}

// taskMsg is one task on the work queue.
type taskMsg struct {
	Run      string `json:"run"`
	Pipeline string `json:"pipeline"`
	// File names the spec in error messages.
	File string `json:"file"`
	// Spec is the spec's text as written (${VAR} unexpanded).
	Spec   string        `json:"spec"`
	Digest string        `json:"digest"`
	Task   pipeline.Task `json:"task"`
	Total  int           `json:"total"`
}

// Task result statuses.
const (
	resultSucceeded = "succeeded"
	resultRetrying  = "retrying"
	resultFailed    = "failed"
)

// result is a worker's report on one delivery of a task.
type result struct {
	Run     string              `json:"run"`
	Task    string              `json:"task"`
	Worker  string              `json:"worker"`
	Attempt int                 `json:"attempt"`
	Status  string              `json:"status"`
	Error   string              `json:"error,omitempty"`
	Record  *pipeline.RunRecord `json:"record,omitempty"`
}

func connect(url, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(10*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", redactURLs(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
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
