// Package loadgen is Kiln's load generator, in the spirit of Triton's
// perf_analyzer. It drives any Open Inference Protocol v2 server over HTTP
// with JSON tensors, HTTP with the binary tensor extension, or gRPC with
// raw_input_contents, in two modes:
//
//   - closed loop: N workers, each with exactly one request outstanding,
//     swept over a list of concurrency levels;
//   - open loop: requests scheduled at a constant rate, each latency
//     measured from its scheduled send time, so a slow server cannot hide
//     its queueing delay (no coordinated omission).
//
// Every level runs a warm-up period that is not recorded, then a
// measurement window. Request bodies are encoded once before the run (a
// few seeded random variants, or one request read from a file) and each
// worker records into its own buffer, so the client stays cheap next to
// the server on a small machine: HTTP goes through a built-in HTTP/1.1
// client (one kept-alive connection per worker, the whole request written
// with one call, no allocation per request; Config.NetHTTP switches to
// net/http), gRPC through grpc-go with a pass-through codec that sends the
// pre-encoded ModelInferRequest bytes. Before a run, one probe request's
// answer is decoded in full and checked.
//
// Latency percentiles are exact: every latency of the window is kept and
// sorted, and the p-th percentile is the nearest-rank value, the smallest
// recorded latency such that at least p% of the latencies are less than or
// equal to it (see Percentile).
package loadgen
