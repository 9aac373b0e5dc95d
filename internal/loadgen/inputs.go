package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/tensor"
)

// TensorSpec describes one model input or output as model metadata does:
// -1 marks a variable dimension.
type TensorSpec struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// Metadata is the part of a model's OIP metadata the load generator needs.
type Metadata struct {
	Name    string       `json:"name"`
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
}

// FetchMetadataHTTP reads GET {base}/v2/models/{model}[/versions/{version}].
func FetchMetadataHTTP(ctx context.Context, hc *http.Client, base, model, version string) (Metadata, error) {
	u := strings.TrimRight(base, "/") + "/v2/models/" + url.PathEscape(model)
	if version != "" {
		u += "/versions/" + url.PathEscape(version)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Metadata{}, fmt.Errorf("model metadata: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Metadata{}, fmt.Errorf("model metadata: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Metadata{}, fmt.Errorf("model metadata: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Metadata{}, fmt.Errorf("model metadata: GET %s: HTTP %d: %s", u, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return Metadata{}, fmt.Errorf("model metadata: decoding %s: %w", u, err)
	}
	if len(md.Inputs) == 0 {
		return Metadata{}, fmt.Errorf("model metadata: %s lists no inputs", u)
	}
	return md, nil
}

// FetchMetadataGRPC calls ModelMetadata.
func FetchMetadataGRPC(ctx context.Context, c inferencepb.GRPCInferenceServiceClient, model, version string) (Metadata, error) {
	r, err := c.ModelMetadata(ctx, &inferencepb.ModelMetadataRequest{Name: model, Version: version})
	if err != nil {
		return Metadata{}, fmt.Errorf("model metadata: %w", err)
	}
	md := Metadata{Name: r.GetName()}
	for _, t := range r.GetInputs() {
		md.Inputs = append(md.Inputs, TensorSpec{Name: t.GetName(), DataType: t.GetDatatype(), Shape: t.GetShape()})
	}
	for _, t := range r.GetOutputs() {
		md.Outputs = append(md.Outputs, TensorSpec{Name: t.GetName(), DataType: t.GetDatatype(), Shape: t.GetShape()})
	}
	if len(md.Inputs) == 0 {
		return Metadata{}, fmt.Errorf("model metadata: %s lists no inputs", model)
	}
	return md, nil
}

// ParseShapes parses shape overrides written name=d1,d2,… separated by
// semicolons or given one per element, e.g. "tokens=1,128".
func ParseShapes(items []string) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, it := range items {
		for part := range strings.SplitSeq(it, ";") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			name, dims, ok := strings.Cut(part, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("shape %q: want name=d1,d2,…", part)
			}
			var shape []int64
			for d := range strings.SplitSeq(dims, ",") {
				var v int64
				if _, err := fmt.Sscan(strings.TrimSpace(d), &v); err != nil || v < 0 {
					return nil, fmt.Errorf("shape %q: bad dimension %q", part, d)
				}
				shape = append(shape, v)
			}
			out[name] = shape
		}
	}
	return out, nil
}

// RequestShapes turns metadata shapes into concrete request shapes for
// batch rows: a leading -1 is the batch dimension and becomes batch; any
// other -1 must be resolved by an override (a full shape including the
// batch dimension). It returns the shapes in input order and the number of
// rows a request carries.
func RequestShapes(inputs []TensorSpec, batch int, overrides map[string][]int64) ([][]int64, int, error) {
	if batch < 1 {
		return nil, 0, fmt.Errorf("batch size %d: want at least 1", batch)
	}
	shapes := make([][]int64, len(inputs))
	rows := -1
	for i, in := range inputs {
		if s, ok := overrides[in.Name]; ok {
			shapes[i] = s
			if rows < 0 && len(s) > 0 {
				rows = int(s[0])
			}
			continue
		}
		s := append([]int64(nil), in.Shape...)
		batched := len(s) > 0 && s[0] == -1
		if batched {
			s[0] = int64(batch)
		} else if batch != 1 {
			return nil, 0, fmt.Errorf("input %q has shape %v without a variable batch dimension; batch size %d needs one", in.Name, in.Shape, batch)
		}
		for j, d := range s {
			if d < 0 {
				return nil, 0, fmt.Errorf("input %q: dimension %d of %v is variable; give its shape explicitly", in.Name, j, in.Shape)
			}
		}
		shapes[i] = s
		if rows < 0 {
			rows = batch
		}
	}
	if rows < 1 {
		rows = 1
	}
	return shapes, rows, nil
}

// RandomInputs builds one request's tensors with seeded random data:
// floats uniform in [-1, 1), integers in [0, 100), booleans 0/1 and BYTES
// elements of 8 lowercase letters.
func RandomInputs(inputs []TensorSpec, shapes [][]int64, seed uint64) ([]tensor.Tensor, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6e))
	out := make([]tensor.Tensor, len(inputs))
	for i, in := range inputs {
		dt, err := tensor.ParseDataType(in.DataType)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		n, err := tensor.Shape(shapes[i]).Elements(0)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		out[i] = tensor.Tensor{Name: in.Name, DataType: dt, Shape: shapes[i], Data: randomData(rng, dt, int(n))}
	}
	return out, nil
}

func randomData(rng *rand.Rand, dt tensor.DataType, n int) []byte {
	if dt == tensor.Bytes {
		b := make([]byte, 0, n*12)
		for range n {
			b = binary.LittleEndian.AppendUint32(b, 8)
			for range 8 {
				b = append(b, byte('a'+rng.IntN(26)))
			}
		}
		return b
	}
	size := dt.Size()
	b := make([]byte, n*size)
	for i := range n {
		e := b[i*size : (i+1)*size]
		f := rng.Float64()*2 - 1
		k := uint64(rng.IntN(100))
		switch dt {
		case tensor.Bool:
			e[0] = byte(k & 1)
		case tensor.Uint8, tensor.Int8:
			e[0] = byte(k)
		case tensor.Uint16, tensor.Int16:
			binary.LittleEndian.PutUint16(e, uint16(k))
		case tensor.Uint32, tensor.Int32:
			binary.LittleEndian.PutUint32(e, uint32(k))
		case tensor.Uint64, tensor.Int64:
			binary.LittleEndian.PutUint64(e, k)
		case tensor.FP16:
			binary.LittleEndian.PutUint16(e, tensor.Float16Bits(float32(f)))
		case tensor.BF16:
			binary.LittleEndian.PutUint16(e, tensor.BFloat16Bits(float32(f)))
		case tensor.FP32:
			binary.LittleEndian.PutUint32(e, math.Float32bits(float32(f)))
		case tensor.FP64:
			binary.LittleEndian.PutUint64(e, math.Float64bits(f))
		}
	}
	return b
}

// ReadRequestFile reads an OIP JSON inference request ({"inputs": [{"name",
// "shape", "datatype", "data"}, …]}) and returns its input tensors.
func ReadRequestFile(path string) ([]tensor.Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("input file: %w", err)
	}
	ts, err := ParseRequest(b)
	if err != nil {
		return nil, fmt.Errorf("input file %s: %w", path, err)
	}
	return ts, nil
}

// ParseRequest decodes the inputs of an OIP JSON inference request.
func ParseRequest(b []byte) ([]tensor.Tensor, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parsing request: %w", err)
	}
	ins := v.GetArray("inputs")
	if len(ins) == 0 {
		return nil, errors.New("request has no inputs")
	}
	out := make([]tensor.Tensor, 0, len(ins))
	for i, in := range ins {
		name := string(in.GetStringBytes("name"))
		if name == "" {
			return nil, fmt.Errorf("input %d has no name", i)
		}
		dt, err := tensor.ParseDataType(string(in.GetStringBytes("datatype")))
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		var shape tensor.Shape
		for _, d := range in.GetArray("shape") {
			n, err := d.Int64()
			if err != nil {
				return nil, fmt.Errorf("input %q: shape: %w", name, err)
			}
			shape = append(shape, n)
		}
		data := in.Get("data")
		if data == nil {
			return nil, fmt.Errorf("input %q has no data", name)
		}
		raw, err := tensor.DecodeJSON(dt, shape, data, 0)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		out = append(out, tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: raw})
	}
	return out, nil
}
