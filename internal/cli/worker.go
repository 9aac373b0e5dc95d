package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/pipeline/distributed"
)

func init() {
	// `kiln pipeline run --distributed` (internal/cli/pipeline.go).
	DistributedRun = runDistributed
}

// queueFromEnv is the work queue's name for `kiln pipeline run
// --distributed`: $KILN_QUEUE, default "kiln".
func queueFromEnv() string { return envOr("KILN_QUEUE", distributed.DefaultQueue) }

// runDistributed queues plan's tasks on o.Queue (default: $KILN_QUEUE,
// else "kiln") and waits for the workers. The spec travels as written:
// workers expand its ${VAR}s from their environment.
func runDistributed(ctx context.Context, plan *pipeline.Plan, eng *pipeline.Engine, o DistributedOptions) (*pipeline.RunRecord, error) {
	if plan.File == "" {
		return nil, &exitError{2, errors.New("--distributed needs the spec's file: workers parse it again")}
	}
	text, err := os.ReadFile(plan.File)
	if err != nil {
		return nil, err
	}
	queue := o.Queue
	if queue == "" {
		queue = queueFromEnv()
	}
	return distributed.Submit(ctx, plan, distributed.SubmitOptions{
		URL:      o.NATSURL,
		Queue:    distributed.Queue{Name: queue},
		Spec:     text,
		Engine:   eng,
		Progress: o.Progress,
	})
}

// readOnlyRuns lets a worker's task runs read earlier runs (for
// settings.params_from_run) without recording themselves: the submitter
// records the distributed run as a whole, and a redelivered task would
// record the same task run twice.
type readOnlyRuns struct{ pipeline.RunStore }

func (readOnlyRuns) CreateRun(context.Context, *pipeline.RunRecord) error { return nil }
func (readOnlyRuns) UpdateRun(context.Context, *pipeline.RunRecord) error { return nil }

func newWorker() *cobra.Command {
	var (
		sf          storeFlags
		natsURL     string
		queue       string
		concurrency int
		modelRepo   string
		name        string
		logLevel    string
		ackWait     time.Duration
		maxDeliver  int
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Process distributed pipeline tasks from a NATS JetStream work queue",
		Long: `A worker pulls the tasks of distributed pipeline runs (kiln pipeline run --distributed)
one at a time per slot, runs each through the pipeline engine, heart-beats while it runs
and acknowledges it once the sinks committed; a task whose worker dies is redelivered to
another. Specs' ${VAR}s are expanded from the worker's environment. It runs until
interrupted (SIGINT/SIGTERM give running tasks back to the queue).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := newLogger(cmd.ErrOrStderr(), logLevel, "auto")
			if concurrency < 1 {
				return &exitError{2, fmt.Errorf("--concurrency %d: want at least 1", concurrency)}
			}
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			eng := &pipeline.Engine{Logger: log, DataDir: sf.dataDir, Registry: sf.registry, Runs: readOnlyRuns{store}}
			if modelRepo != "" {
				mgr, stop, err := startModels(ctx, modelRepo, log)
				if err != nil {
					return err
				}
				defer stop()
				eng.Models = mgr
			}
			err = distributed.Work(ctx, distributed.WorkerOptions{
				URL:         natsURL,
				Queue:       distributed.Queue{Name: queue, AckWait: ackWait, MaxDeliver: maxDeliver},
				Runner:      eng,
				Concurrency: concurrency,
				Name:        name,
				Logger:      log,
			})
			if err != nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsURL, "nats", envOr("KILN_NATS", "nats://127.0.0.1:4222"), "NATS server (env KILN_NATS)")
	f.StringVar(&queue, "queue", queueFromEnv(), "work queue name, the same as the submitter's (env KILN_QUEUE)")
	f.IntVar(&concurrency, "concurrency", 1, "tasks run at once")
	f.StringVar(&modelRepo, "model-repository", os.Getenv("KILN_MODEL_REPOSITORY"), "load this model repository in-process so predict steps run here (env KILN_MODEL_REPOSITORY)")
	sf.bind(cmd)
	f.StringVar(&name, "name", "", "worker name in task results and logs (default host:pid)")
	f.StringVar(&logLevel, "log-level", envOr("KILN_LOG_LEVEL", "info"), "debug, info, warn or error")
	f.DurationVar(&ackWait, "ack-wait", distributed.DefaultAckWait, "a task not acknowledged or heart-beaten for this long is redelivered (applies when this worker creates the queue)")
	f.IntVar(&maxDeliver, "max-deliver", distributed.DefaultMaxDeliver, "deliveries of a task before its run fails (applies when this worker creates the queue)")
	return cmd
}
