// Package httpapi serves Kiln's HTTP APIs: OIP v2 (the Open Inference
// Protocol's REST binding, wire-compatible with Triton's, including the
// binary tensor data extension) for health, metadata, inference and the
// model repository, plus Kiln's own extensions. It is the only place where
// errors from the layers below become HTTP status codes.
//
// The inference codec (DecodeInferRequest, DecodeRawInput,
// AppendInferResponse) reads requests with a single-pass scanner that
// decodes tensor data straight into little-endian bytes, and writes JSON
// by appending bytes, without reflection, so the hot path allocates little
// and memory stays proportional to the body.
package httpapi
