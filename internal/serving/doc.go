// Package serving is Kiln's model manager: it turns catalog entries into
// loaded model versions (each with its backend instances and dynamic
// batcher), tracks their states (LOADING, READY, UNAVAILABLE, UNLOADING),
// swaps versions without dropping requests, and runs inference requests
// through the batcher. It is protocol-neutral: httpapi and grpcapi call it.
package serving
