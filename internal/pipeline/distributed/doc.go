// Package distributed runs a pipeline as tasks on a NATS JetStream work
// queue. Submit splits the plan's source (pipeline.Splitter: files,
// Parquet row groups, key ranges) into tasks and publishes one message per
// task on a work-queue stream; any number of Workers, on any machine, pull
// one task at a time, run the plan on that part of the source through the
// normal engine (pipeline.RunOptions.Task), heart-beat while running, and
// acknowledge only after the sinks committed. Workers publish a result per
// task on a results stream; Submit follows them until every task is done
// or one has failed for good, and records the whole run.
//
// Delivery: a worker that dies mid-task never acknowledges it, so the
// task is redelivered after the consumer's AckWait (heart-beats keep a
// live worker's task from being redelivered); a failed task is nak'ed
// with a back-off and retried up to MaxDeliver deliveries, then the run
// fails and its remaining tasks are purged. Sinks make task outputs
// idempotent: the file sink names each task's output after the task
// ({task} in its path, renamed into place atomically), the postgres sink
// upserts, the nats sink derives message ids from the run, the task and
// the row position — so a redelivered task leaves its output once.
//
// Spec and secrets: the task message carries the spec's text as written,
// with its ${VAR} references unexpanded; each worker expands them from
// its own environment, so secrets never travel through NATS (set them on
// the workers). `--set` values given to the submitter apply only to the
// submitter's parse and split. A worker whose expanded spec differs from
// the submitter's (its digest covers the variables' values) logs a
// warning.
//
// NATS objects, for a queue name Q (default "kiln"): the streams
// Q_TASKS (work-queue retention, subjects Q.tasks.RUN) and Q_RESULTS
// (limits retention, subjects Q.results.RUN, kept 7 days), and the
// durable consumer Q_WORKERS shared by every worker.
package distributed
