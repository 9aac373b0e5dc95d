// Package inferencepb holds Go types generated from api/*.proto: the
// messages and service of the Open Inference Protocol's gRPC API
// (package inference, service GRPCInferenceService) and the ModelConfig
// message, wire-compatible with Triton's and KServe's definitions.
//
// Regenerate with scripts/gen-proto.sh; do not edit the *.pb.go files.
package inferencepb
