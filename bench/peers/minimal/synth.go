package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/loadgen"
	"github.com/kilnai/kiln/internal/tensor"
)

// spec is a tensor given on the command line as name:DATATYPE:d1,d2.
type spec = loadgen.TensorSpec

func parseSpec(s string) (spec, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return spec{}, fmt.Errorf("tensor %q: want name:DATATYPE:d1,d2", s)
	}
	if _, err := tensor.ParseDataType(parts[1]); err != nil {
		return spec{}, fmt.Errorf("tensor %q: %w", s, err)
	}
	sp := spec{Name: parts[0], DataType: parts[1]}
	for d := range strings.SplitSeq(parts[2], ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
		if err != nil {
			return spec{}, fmt.Errorf("tensor %q: bad dimension %q", s, d)
		}
		sp.Shape = append(sp.Shape, n)
	}
	return sp, nil
}

// outputTensors fills the outputs with seeded random data at batch rows.
func outputTensors(batch int, outputs []spec) []tensor.Tensor {
	shapes, _, err := loadgen.RequestShapes(outputs, batch, nil)
	if err != nil {
		return nil
	}
	ts, err := loadgen.RandomInputs(outputs, shapes, 1)
	if err != nil {
		return nil
	}
	return ts
}

func appendHeader(b []byte, t *tensor.Tensor) []byte {
	b = append(b, `{"name":`...)
	b = tensor.AppendJSONString(b, t.Name)
	b = append(b, `,"datatype":"`...)
	b = append(b, t.DataType.String()...)
	b = append(b, `","shape":[`...)
	for i, d := range t.Shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

func answerPrefix(model string) []byte {
	b := append([]byte(`{"model_name":`), tensor.AppendJSONString(nil, model)...)
	return append(b, `,"model_version":"1","outputs":[`...)
}

func synthJSON(model string, batch int, outputs []spec) []byte {
	ts := outputTensors(batch, outputs)
	if len(ts) == 0 {
		return nil
	}
	b := answerPrefix(model)
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHeader(b, &ts[i])
		b = append(b, `,"data":`...)
		b, _ = tensor.AppendJSON(b, &ts[i])
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func synthBinary(model string, batch int, outputs []spec) ([]byte, int) {
	ts := outputTensors(batch, outputs)
	if len(ts) == 0 {
		return nil, 0
	}
	b := answerPrefix(model)
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHeader(b, &ts[i])
		b = append(b, `,"parameters":{"binary_data_size":`...)
		b = strconv.AppendInt(b, int64(len(ts[i].Data)), 10)
		b = append(b, "}}"...)
	}
	b = append(b, "]}"...)
	n := len(b)
	for _, t := range ts {
		b = append(b, t.Data...)
	}
	return b, n
}

func synthGRPC(model string, batch int, outputs []spec) []byte {
	ts := outputTensors(batch, outputs)
	if len(ts) == 0 {
		return nil
	}
	m := &inferencepb.ModelInferResponse{ModelName: model, ModelVersion: "1"}
	for _, t := range ts {
		m.Outputs = append(m.Outputs, &inferencepb.ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: t.DataType.String(), Shape: t.Shape})
		m.RawOutputContents = append(m.RawOutputContents, t.Data)
	}
	b, _ := proto.Marshal(m)
	return b
}

func synthMetadata(model string, inputs, outputs []spec) []byte {
	md := struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Platform string   `json:"platform"`
		Inputs   []spec   `json:"inputs"`
		Outputs  []spec   `json:"outputs"`
	}{model, []string{"1"}, "onnxruntime_onnx", inputs, outputs}
	if md.Inputs == nil {
		md.Inputs = []spec{}
	}
	if md.Outputs == nil {
		md.Outputs = []spec{}
	}
	b, _ := json.Marshal(md)
	return b
}

// grpcMetadata converts OIP JSON model metadata to ModelMetadataResponse
// wire bytes.
func grpcMetadata(js []byte) ([]byte, error) {
	var md struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Platform string   `json:"platform"`
		Inputs   []spec   `json:"inputs"`
		Outputs  []spec   `json:"outputs"`
	}
	if err := json.Unmarshal(js, &md); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	m := &inferencepb.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform}
	for _, t := range md.Inputs {
		m.Inputs = append(m.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.DataType, Shape: t.Shape})
	}
	for _, t := range md.Outputs {
		m.Outputs = append(m.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.DataType, Shape: t.Shape})
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return b, nil
}
