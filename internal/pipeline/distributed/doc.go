// Package distributed runs a pipeline as tasks on a NATS JetStream work
// queue: Submit splits the plan's source (pipeline.Splitter) into tasks and
// publishes them; any number of Workers pull one task at a time, run the
// plan on that part of the source through the normal engine, heart-beat
// while running and acknowledge when the sinks have committed; the submitter
// follows per-task results until every task is done or one has failed for
// good.
//
// What the engine must offer for a task run (additive to
// internal/pipeline, requested from its owner):
//
//	// RunOptions.Task, when set, makes the run read only that part of the
//	// plan's source: the engine builds the source, which must implement
//	// Splitter, and reads OpenTask(ctx, *Task) instead; Env.Task carries
//	// Task.ID to every component; the result cache is not used.
//	Task *pipeline.Task
//	// Env.Task is the id of the distributed task being run ("" otherwise);
//	// sinks use it to name per-task outputs (the file sink's {task}).
//	Task string
package distributed
