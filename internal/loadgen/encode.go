package loadgen

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/tensor"
)

// Protocol names a wire format.
type Protocol string

// The protocols the load generator speaks.
const (
	// HTTPJSON posts OIP v2 JSON tensors and asks for JSON outputs.
	HTTPJSON Protocol = "http-json"
	// HTTPBinary uses the binary tensor extension for inputs and outputs:
	// a JSON header, then raw little-endian tensor bytes.
	HTTPBinary Protocol = "http-binary"
	// GRPC calls ModelInfer with raw_input_contents.
	GRPC Protocol = "grpc"
)

// ParseProtocol accepts http-json, http-binary and grpc.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case HTTPJSON, HTTPBinary, GRPC:
		return p, nil
	}
	return "", fmt.Errorf("unknown protocol %q: want http-json, http-binary or grpc", s)
}

// EncodeJSON encodes an OIP v2 JSON inference request for the tensors;
// every output is returned as JSON.
func EncodeJSON(ts []tensor.Tensor) ([]byte, error) {
	b := append(make([]byte, 0, 64+jsonSizeHint(ts)), `{"inputs":[`...)
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHeader(b, &ts[i])
		b = append(b, `,"data":`...)
		var err error
		if b, err = tensor.AppendJSON(b, &ts[i]); err != nil {
			return nil, fmt.Errorf("input %q: %w", ts[i].Name, err)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

func jsonSizeHint(ts []tensor.Tensor) int {
	n := 0
	for _, t := range ts {
		n += 64 + len(t.Data)*3
	}
	return n
}

// EncodeBinary encodes a request with the binary tensor extension: the
// JSON header, which asks for every output in binary
// (binary_data_output), followed by the raw input bytes. It returns the
// body and the header length for Inference-Header-Content-Length.
func EncodeBinary(ts []tensor.Tensor) (body []byte, headerLen int) {
	size := 0
	for _, t := range ts {
		size += len(t.Data)
	}
	b := make([]byte, 0, 128+96*len(ts)+size)
	b = append(b, `{"inputs":[`...)
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTensorHeader(b, &ts[i])
		b = append(b, `,"parameters":{"binary_data_size":`...)
		b = strconv.AppendInt(b, int64(len(ts[i].Data)), 10)
		b = append(b, "}}"...)
	}
	b = append(b, `],"parameters":{"binary_data_output":true}}`...)
	headerLen = len(b)
	for _, t := range ts {
		b = append(b, t.Data...)
	}
	return b, headerLen
}

func appendTensorHeader(b []byte, t *tensor.Tensor) []byte {
	b = append(b, `{"name":`...)
	b = tensor.AppendJSONString(b, t.Name)
	b = append(b, `,"shape":[`...)
	for j, d := range t.Shape {
		if j > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	b = append(b, `],"datatype":"`...)
	b = append(b, t.DataType.String()...)
	return append(b, '"')
}

// GRPCRequest builds a ModelInferRequest carrying the tensors in
// raw_input_contents.
func GRPCRequest(model, version string, ts []tensor.Tensor) *inferencepb.ModelInferRequest {
	req := &inferencepb.ModelInferRequest{ModelName: model, ModelVersion: version}
	for _, t := range ts {
		req.Inputs = append(req.Inputs, &inferencepb.ModelInferRequest_InferInputTensor{
			Name: t.Name, Datatype: t.DataType.String(), Shape: t.Shape,
		})
		req.RawInputContents = append(req.RawInputContents, t.Data)
	}
	return req
}

// EncodeGRPC returns the wire bytes of GRPCRequest.
func EncodeGRPC(model, version string, ts []tensor.Tensor) ([]byte, error) {
	b, err := proto.Marshal(GRPCRequest(model, version, ts))
	if err != nil {
		return nil, fmt.Errorf("encoding ModelInferRequest: %w", err)
	}
	return b, nil
}
