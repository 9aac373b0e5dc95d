package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// bytesData encodes strings in BYTES storage form.
func bytesData(ss ...string) []byte {
	b := []byte{}
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func f32(vals ...float32) []byte { return append([]byte{}, tensor.AsBytes(vals)...) }

// randomTensor returns a tensor with random contents JSON can carry.
func randomTensor(r *rand.Rand, name string, dt tensor.DataType, shape tensor.Shape) tensor.Tensor {
	n, _ := shape.Elements(0)
	t := tensor.Tensor{Name: name, DataType: dt, Shape: shape}
	switch dt {
	case tensor.Bytes:
		var ss []string
		for range n {
			ss = append(ss, strings.Repeat(string(rune('a'+r.IntN(26))), r.IntN(4))+"é\"\\\n")
		}
		t.Data = bytesData(ss...)
	case tensor.Bool:
		t.Data = make([]byte, n)
		for i := range t.Data {
			t.Data[i] = byte(r.IntN(2))
		}
	default:
		// Small integers are exact in every type, so one generator fits all.
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = float64(r.IntN(100))
		}
		src := tensor.Tensor{DataType: tensor.FP64, Shape: shape, Data: tensor.AsBytes(vals)}
		c, err := tensor.Convert(&src, dt)
		if err != nil {
			panic(err)
		}
		t.Data = c.Data
	}
	return t
}

// encodeRequest writes an OIP request for inputs; binary[i] sends input i
// as binary data. It returns the body and the header length (-1 when no
// input is binary).
func encodeRequest(t testing.TB, id string, inputs []tensor.Tensor, binary []bool, tail string) ([]byte, int) {
	t.Helper()
	b := []byte(`{`)
	if id != "" {
		b = append(b, `"id":`...)
		b = tensor.AppendJSONString(b, id)
		b = append(b, ',')
	}
	b = append(b, `"inputs":[`...)
	var chunks []byte
	anyBinary := false
	for i := range inputs {
		in := &inputs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = tensor.AppendJSONString(b, in.Name)
		b = fmt.Appendf(b, `,"datatype":%q,"shape":[`, in.DataType)
		for j, d := range in.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, ']')
		if i < len(binary) && binary[i] {
			anyBinary = true
			b = fmt.Appendf(b, `,"parameters":{"binary_data_size":%d}}`, len(in.Data))
			chunks = append(chunks, in.Data...)
			continue
		}
		b = append(b, `,"data":`...)
		var err error
		if b, err = tensor.AppendJSON(b, in); err != nil {
			t.Fatal(err)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	b = append(b, tail...)
	b = append(b, '}')
	if !anyBinary {
		return b, -1
	}
	return append(b, chunks...), len(b)
}

func sameTensors(t testing.TB, got, want []tensor.Tensor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d tensors, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := &got[i], &want[i]
		if g.Name != w.Name || g.DataType != w.DataType || !g.Shape.Equal(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("tensor %d = %q %s%v % x\nwant %q %s%v % x", i, g.Name, g.DataType, g.Shape, g.Data, w.Name, w.DataType, w.Shape, w.Data)
		}
	}
}

func within(b, body []byte) bool {
	if len(b) == 0 {
		return true
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(body))
}

func TestDecodeInferRequestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dt := range tensor.AllDataTypes {
		for _, shape := range []tensor.Shape{{1, 4}, {2, 3}, {0, 2}, {}} {
			inputs := []tensor.Tensor{
				randomTensor(r, "a", dt, shape),
				randomTensor(r, "b", tensor.FP32, tensor.Shape{3}),
			}
			for _, form := range []struct {
				name   string
				binary []bool
			}{{"json", nil}, {"binary", []bool{true, true}}, {"mixed", []bool{true, false}}} {
				t.Run(fmt.Sprintf("%s%v/%s", dt, shape, form.name), func(t *testing.T) {
					body, hl := encodeRequest(t, "req-1", inputs, form.binary, "")
					req, err := DecodeInferRequest(body, hl, Limits{})
					if err != nil {
						t.Fatalf("%v\nbody: %s", err, body)
					}
					if req.ID != "req-1" || req.Params != nil || req.InputParams != nil || req.Outputs != nil || req.BinaryOutput {
						t.Fatalf("unexpected request fields: %+v", req)
					}
					sameTensors(t, req.Inputs, inputs)
					for i, bin := range form.binary {
						if bin && !within(req.Inputs[i].Data, body) {
							t.Fatalf("binary input %d was copied out of the body", i)
						}
					}
				})
			}
		}
	}
}

func TestDecodeInferRequestFields(t *testing.T) {
	body := `{
		"id": "x\u00e9",
		"parameters": {"priority": 1, "timeout": 1500, "tag": "blue", "flag": true, "ratio": 0.5, "big": 18446744073709551615, "binary_data_output": true},
		"inputs": [
			{"name": "in", "datatype": "INT64", "shape": [2], "parameters": {"custom": "v"}, "data": [1, 2]},
			{"name": "plain", "datatype": "BOOL", "shape": [1], "data": [true]}
		],
		"outputs": [
			{"name": "o1", "parameters": {"binary_data": false, "classification": 3}},
			{"name": "o2"},
			{"name": "o3", "parameters": {"binary_data": true}}
		]
	}`
	req, err := DecodeInferRequest([]byte(body), -1, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.ID != "xé" || !req.BinaryOutput {
		t.Fatalf("id %q binary_data_output %v", req.ID, req.BinaryOutput)
	}
	if _, ok := req.Params[paramBinaryOutput]; ok || len(req.Params) != 6 {
		t.Fatalf("params = %v", req.Params)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"priority int", func() bool { v, ok := req.Params["priority"].AsInt64(); return ok && v == 1 }()},
		{"timeout uint", func() bool { v, ok := req.Params["timeout"].AsUint64(); return ok && v == 1500 }()},
		{"tag string", func() bool { v, ok := req.Params["tag"].AsString(); return ok && v == "blue" }()},
		{"flag bool", func() bool { v, ok := req.Params["flag"].AsBool(); return ok && v }()},
		{"ratio float", func() bool { v, ok := req.Params["ratio"].AsFloat64(); return ok && v == 0.5 }()},
		{"ratio not int", func() bool { _, ok := req.Params["ratio"].AsInt64(); return !ok }()},
		{"big uint exact", func() bool { v, ok := req.Params["big"].AsUint64(); return ok && v == math.MaxUint64 }()},
		{"big not int64", func() bool { _, ok := req.Params["big"].AsInt64(); return !ok }()},
		{"input params", len(req.InputParams) == 2 && req.InputParams[0]["custom"].String() == "v" && req.InputParams[1] == nil},
		{"outputs", len(req.Outputs) == 3 && req.Outputs[0].Name == "o1" && req.Outputs[1].Name == "o2" && req.Outputs[2].Name == "o3"},
		{"o1 binary false set", req.Outputs[0].BinarySet && !req.Outputs[0].Binary && !req.Outputs[0].WantsBinary(true)},
		{"o1 other params kept", req.Outputs[0].Params["classification"].String() == "3" && len(req.Outputs[0].Params) == 1},
		{"o2 default", !req.Outputs[1].BinarySet && req.Outputs[1].Params == nil && req.Outputs[1].WantsBinary(true)},
		{"o3 binary", req.Outputs[2].BinarySet && req.Outputs[2].Binary && req.Outputs[2].WantsBinary(false)},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Fatalf("failed; request: %+v", req)
			}
		})
	}
}

// TestDecodedRequestOwnsItsStrings decodes a request, then reuses the
// pooled parsers on other documents: the first request must not change.
func TestDecodedRequestOwnsItsStrings(t *testing.T) {
	body := []byte(`{"id":"first","parameters":{"k":"value"},"inputs":[{"name":"alpha","datatype":"BYTES","shape":[1],"parameters":{"p":"q"},"data":["text"]}],"outputs":[{"name":"out","parameters":{"x":"y"}}]}`)
	req, err := DecodeInferRequest(body, -1, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = ' '
	}
	for range 20 {
		other := []byte(`{"id":"zzzzz","parameters":{"k":"VVVVV"},"inputs":[{"name":"ZZZZZ","datatype":"BYTES","shape":[1],"parameters":{"p":"Q"},"data":["TTTT"]}],"outputs":[{"name":"OOO","parameters":{"x":"Y"}}]}`)
		if _, err := DecodeInferRequest(other, -1, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join([]string{req.ID, req.Params["k"].String(), req.Inputs[0].Name, string(req.Inputs[0].Data[4:]),
		req.InputParams[0]["p"].String(), req.Outputs[0].Name, req.Outputs[0].Params["x"].String()}, " ")
	if want := "first value alpha text q out y"; got != want {
		t.Fatalf("decoded request changed after reuse: %q, want %q", got, want)
	}
}

func TestDecodeInferRequestErrors(t *testing.T) {
	in := func(extra string) string {
		return `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2]` + extra + `}]}`
	}
	bin := func(js string, tail ...byte) (string, int) { return js + string(tail), len(js) }
	type tc struct {
		name      string
		body      string
		headerLen int
		msg       string
		also      error // a second sentinel the error must wrap
	}
	tests := []tc{
		{name: "empty body", body: ``, headerLen: -1, msg: "malformed JSON"},
		{name: "malformed", body: `{"inputs":[`, headerLen: -1, msg: "malformed JSON"},
		{name: "trailing garbage", body: `{"inputs":[]} x`, headerLen: -1, msg: "malformed JSON"},
		{name: "array request", body: `[1]`, headerLen: -1, msg: "must be a JSON object, got an array"},
		{name: "no inputs", body: `{}`, headerLen: -1, msg: `no "inputs"`},
		{name: "inputs object", body: `{"inputs":{}}`, headerLen: -1, msg: `"inputs" must be an array, got an object`},
		{name: "id number", body: `{"id":5,"inputs":[]}`, headerLen: -1, msg: `"id" must be a string, got a number`},
		{name: "parameters array", body: `{"parameters":[],"inputs":[]}`, headerLen: -1, msg: `request "parameters" must be an object, got an array`},
		{name: "parameter object value", body: `{"parameters":{"a":{}},"inputs":[]}`, headerLen: -1, msg: `parameter "a" must be a string, number or boolean, got an object`},
		{name: "parameter null", body: `{"parameters":{"a":null},"inputs":[]}`, headerLen: -1, msg: `got a null`},
		{name: "parameter NaN", body: `{"parameters":{"a":NaN},"inputs":[]}`, headerLen: -1, msg: `parameter "a" is a malformed number "NaN"`},
		{name: "binary_data_output string", body: `{"parameters":{"binary_data_output":"yes"},"inputs":[]}`, headerLen: -1, msg: "binary_data_output must be a boolean, got a string"},
		{name: "input not object", body: `{"inputs":[1]}`, headerLen: -1, msg: "input 0 must be an object, got a number"},
		{name: "no name", body: `{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}`, headerLen: -1, msg: `input 0 has no "name"`},
		{name: "name number", body: `{"inputs":[{"name":1,"datatype":"FP32","shape":[1],"data":[1]}]}`, headerLen: -1, msg: `"name" must be a string`},
		{name: "empty name", body: `{"inputs":[{"name":"","datatype":"FP32","shape":[1],"data":[1]}]}`, headerLen: -1, msg: "empty name"},
		{name: "no datatype", body: `{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`, headerLen: -1, msg: `input "x" has no "datatype"`},
		{name: "datatype number", body: `{"inputs":[{"name":"x","datatype":3,"shape":[1],"data":[1]}]}`, headerLen: -1, msg: `"datatype" must be a string`},
		{name: "unknown datatype", body: `{"inputs":[{"name":"x","datatype":"FLOAT","shape":[1],"data":[1]}]}`, headerLen: -1, msg: `unknown datatype "FLOAT"`},
		{name: "config spelling datatype", body: `{"inputs":[{"name":"x","datatype":"TYPE_FP32","shape":[1],"data":[1]}]}`, headerLen: -1, msg: `unknown datatype "TYPE_FP32"`},
		{name: "lowercase datatype", body: `{"inputs":[{"name":"x","datatype":"fp32","shape":[1],"data":[1]}]}`, headerLen: -1, msg: "unknown datatype"},
		{name: "no shape", body: `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, headerLen: -1, msg: `input "x" has no "shape"`},
		{name: "shape string", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":"2","data":[1]}]}`, headerLen: -1, msg: `"shape" must be an array of integers, got a string`},
		{name: "shape of strings", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":["2"],"data":[1]}]}`, headerLen: -1, msg: "shape dimension 0: expected an integer, got a string"},
		{name: "shape fraction", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1.5],"data":[1]}]}`, headerLen: -1, msg: "shape dimension 0: 1.5 is not an integer"},
		{name: "negative dim", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,-1],"data":[1]}]}`, headerLen: -1, msg: "shape dimension 1 is negative (-1)"},
		{name: "dim beyond int64", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[9223372036854775808],"data":[1]}]}`, headerLen: -1, msg: "shape dimension 0 is 9223372036854775808", also: tensor.ErrTooLarge},
		{name: "dim beyond uint64", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[99999999999999999999],"data":[1]}]}`, headerLen: -1, msg: "out of range"},
		{name: "huge shape", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1000000,1000000],"data":[1]}]}`, headerLen: -1, msg: `input "x"`, also: tensor.ErrTooLarge},
		{name: "too many dims", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strings.Repeat("1,", 64) + `1],"data":[1]}]}`, headerLen: -1, msg: "65 dimensions, the limit is 64"},
		{name: "missing data", body: in(``), headerLen: -1, msg: `input "x" has no "data" and no binary_data_size`},
		{name: "ragged data", body: in(`,"data":[[1,2],[3]]`), headerLen: -1, msg: `input "x": invalid tensor: expected 2 elements at dimension 1, got 1`, also: tensor.ErrInvalid},
		{name: "short data", body: in(`,"data":[1,2,3]`), headerLen: -1, msg: "expected 4 elements, got 3"},
		{name: "wrong element type", body: in(`,"data":[1,2,3,"4"]`), headerLen: -1, msg: "element 3"},
		{name: "input parameters not object", body: in(`,"parameters":1,"data":[1,2,3,4]`), headerLen: -1, msg: `input "x": "parameters" must be an object`},
		{name: "duplicate input", body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]},{"name":"x","datatype":"FP32","shape":[1],"data":[2]}]}`, headerLen: -1, msg: `input "x" appears more than once`},
		{name: "binary without header", body: in(`,"parameters":{"binary_data_size":16}`), headerLen: -1, msg: "has binary_data_size but the request has no Inference-Header-Content-Length header"},
		{name: "binary size string", body: in(`,"parameters":{"binary_data_size":"16"}`), headerLen: -1, msg: "binary_data_size must be a non-negative integer"},
		{name: "binary size negative", body: in(`,"parameters":{"binary_data_size":-16}`), headerLen: -1, msg: "binary_data_size must be a non-negative integer"},
		{name: "outputs object", body: `{"inputs":[],"outputs":{}}`, headerLen: -1, msg: `"outputs" must be an array`},
		{name: "output not object", body: `{"inputs":[],"outputs":["y"]}`, headerLen: -1, msg: "output 0 must be an object, got a string"},
		{name: "output no name", body: `{"inputs":[],"outputs":[{}]}`, headerLen: -1, msg: `output 0 has no "name"`},
		{name: "output binary_data string", body: `{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":"true"}}]}`, headerLen: -1, msg: `output "y": binary_data must be a boolean, got a string`},
		{name: "output bad parameter", body: `{"inputs":[],"outputs":[{"name":"y","parameters":{"p":[1]}}]}`, headerLen: -1, msg: `output "y": parameter "p" must be`},
		{name: "duplicate output", body: `{"inputs":[],"outputs":[{"name":"y"},{"name":"y"}]}`, headerLen: -1, msg: `output "y" is requested more than once`},
		{name: "header longer than body", body: `{"inputs":[]}`, headerLen: 100, msg: "Inference-Header-Content-Length 100 exceeds the body length 13"},
		{name: "header zero", body: `{"inputs":[]}`, headerLen: 0, msg: "raw binary request"},
		{name: "header cuts JSON", body: `{"inputs":[]}`, headerLen: 5, msg: "malformed JSON"},
	}
	add := func(name, js string, headerLen int, msg string, also error, tail ...byte) {
		body, hl := bin(js, tail...)
		if headerLen != 0 {
			hl = headerLen
		}
		tests = append(tests, tc{name: name, body: body, headerLen: hl, msg: msg, also: also})
	}
	sixteen := make([]byte, 16)
	add("binary size too small for shape", in(`,"parameters":{"binary_data_size":12}`), 0, "binary_data_size is 12, but FP32[2,2] needs 16 bytes", nil, sixteen[:12]...)
	add("binary size too big for shape", in(`,"parameters":{"binary_data_size":20}`), 0, "needs 16 bytes", nil, make([]byte, 20)...)
	add("binary size beyond body", in(`,"parameters":{"binary_data_size":16}`), 0, "binary_data_size 16 exceeds the 8 bytes left", nil, sixteen[:8]...)
	add("leftover bytes", in(`,"parameters":{"binary_data_size":16}`), 0, "3 bytes of binary data after the JSON header belong to no input", nil, append(sixteen, 1, 2, 3)...)
	add("bytes after JSON-only request", in(`,"data":[1,2,3,4]`), 0, "2 bytes of binary data", nil, 9, 9)
	add("binary and data", in(`,"parameters":{"binary_data_size":16},"data":[1,2,3,4]`), 0, `has both "data" and binary_data_size`, nil, sixteen...)
	bytesIn := `{"inputs":[{"name":"s","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":%d}}]}`
	one := bytesData("abc")
	add("bytes chunk with too few elements", fmt.Sprintf(bytesIn, len(one)), 0, "binary data holds 1 BYTES elements, shape [2] needs 2", nil, one...)
	bad := []byte{10, 0, 0, 0, 'a'}
	add("bytes chunk with lying prefix", fmt.Sprintf(bytesIn, len(bad)), 0, `input "s": invalid tensor: BYTES element length 10 exceeds`, tensor.ErrInvalid, bad...)
	add("bytes chunk truncated prefix", fmt.Sprintf(bytesIn, 2), 0, "truncated BYTES length prefix", nil, 1, 0)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeInferRequest([]byte(tc.body), tc.headerLen, Limits{})
			if err == nil {
				t.Fatalf("decoded %+v, want an error", req)
			}
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err %v does not wrap ErrBadRequest", err)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("err %v does not wrap %v", err, tc.also)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.msg)
			}
			if msg := strings.TrimPrefix(err.Error(), "bad request: "); msg == "" || msg[0] >= 'A' && msg[0] <= 'Z' && !strings.HasPrefix(msg, "Inference-") {
				t.Fatalf("error message should start in lowercase: %q", err)
			}
		})
	}
}

func TestDecodeInferRequestLimits(t *testing.T) {
	body := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"data":[1,2,3,4,5,6]}]}`)
	if _, err := DecodeInferRequest(body, -1, Limits{MaxElements: 6}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, err := DecodeInferRequest(body, -1, Limits{MaxElements: 5})
	if !errors.Is(err, ErrBadRequest) || !errors.Is(err, tensor.ErrTooLarge) {
		t.Fatalf("over the limit: err = %v, want ErrBadRequest and tensor.ErrTooLarge", err)
	}
	// The request holds 15 values: the request, "inputs", the input, its
	// name, datatype and shape, 2 dimensions, "data" and 6 elements.
	if _, err := DecodeInferRequest(body, -1, Limits{MaxJSONValues: 15}); err != nil {
		t.Fatalf("at the JSON value limit: %v", err)
	}
	_, err = DecodeInferRequest(body, -1, Limits{MaxJSONValues: 14})
	if !errors.Is(err, ErrBadRequest) || !errors.Is(err, tensor.ErrTooLarge) || !strings.Contains(err.Error(), "send large tensors as binary data") {
		t.Fatalf("over the JSON value limit: err = %v", err)
	}
	binBody := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"parameters":{"binary_data_size":24}}]}`)
	hl := len(binBody)
	binBody = append(binBody, make([]byte, 24)...)
	if _, err := DecodeInferRequest(binBody, hl, Limits{MaxElements: 5}); !errors.Is(err, tensor.ErrTooLarge) {
		t.Fatalf("binary over the limit: err = %v, want tensor.ErrTooLarge", err)
	}
}

// countActual counts the values of a parsed document.
func countActual(v *fastjson.Value) int {
	n := 1
	switch v.Type() {
	case fastjson.TypeArray:
		for _, e := range v.GetArray() {
			n += countActual(e)
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(_ []byte, e *fastjson.Value) { n += countActual(e) })
	}
	return n
}

func TestCountValues(t *testing.T) {
	tests := []struct {
		js   string
		want int
	}{
		{`{}`, 2},
		{`[]`, 2},
		{`7`, 1},
		{`[1,2,3]`, 4},
		{`[[1],[2]]`, 5},
		{`{"a":"x,y[{","b":[true,null]}`, 5},
		{`{"a":"q\",[{","b":1}`, 3},
		{`["\\",1]`, 3},
	}
	for _, tc := range tests {
		t.Run(tc.js, func(t *testing.T) {
			got := countValues([]byte(tc.js))
			if got != tc.want {
				t.Fatalf("countValues = %d, want %d", got, tc.want)
			}
			if actual := countActual(fastjson.MustParse(tc.js)); got < actual {
				t.Fatalf("countValues = %d is below the actual %d values", got, actual)
			}
		})
	}
}

func TestDecodeRawInput(t *testing.T) {
	floats := f32(1, 2, 3, 4, 5, 6)
	tests := []struct {
		name  string
		spec  inference.TensorSpec
		body  []byte
		shape tensor.Shape
		data  []byte
		msg   string
	}{
		{name: "fixed shape", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{2, 3}}, body: floats, shape: tensor.Shape{2, 3}, data: floats},
		{name: "batch dim becomes 1", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, 6}}, body: floats, shape: tensor.Shape{1, 6}, data: floats},
		{name: "variable dim inferred", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, -1, 2}}, body: floats, shape: tensor.Shape{1, 3, 2}, data: floats},
		{name: "only dim variable", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{3, -1}}, body: floats, shape: tensor.Shape{3, 2}, data: floats},
		{name: "scalar", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{}}, body: f32(7), shape: tensor.Shape{}, data: f32(7)},
		{name: "empty body variable", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, -1}}, body: nil, shape: tensor.Shape{1, 0}, data: nil},
		{name: "zero fixed dim", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, 0, -1}}, body: nil, shape: tensor.Shape{1, 0, 0}, data: nil},
		{name: "zero fixed dim with data", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{0, -1}}, body: floats, msg: "holds none"},
		{name: "bytes", spec: inference.TensorSpec{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{-1, 1}}, body: []byte("\xff\x00raw"), shape: tensor.Shape{1, 1}, data: bytesData("\xff\x00raw")},
		{name: "bytes variable", spec: inference.TensorSpec{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{-1, -1}}, body: []byte("a"), shape: tensor.Shape{1, 1}, data: bytesData("a")},
		{name: "bytes empty", spec: inference.TensorSpec{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{1}}, body: nil, shape: tensor.Shape{1}, data: bytesData("")},
		{name: "bytes two elements", spec: inference.TensorSpec{Name: "s", DataType: tensor.Bytes, Shape: tensor.Shape{-1, 2}}, body: []byte("ab"), msg: "must have one element"},
		{name: "two variable dims", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, -1, -1}}, body: floats, msg: "at most one variable dimension"},
		{name: "wrong size", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, 4}}, body: floats, msg: "raw body holds 6 FP32 elements, input \"x\" of shape [1,4] needs 4"},
		{name: "partial element", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1}}, body: floats[:5], msg: "not a whole number of FP32 elements"},
		{name: "not a multiple", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-1, -1, 4}}, body: floats, msg: "not a multiple of the 4"},
		{name: "invalid datatype", spec: inference.TensorSpec{Name: "x", Shape: tensor.Shape{1}}, body: floats, msg: "invalid datatype"},
		{name: "invalid spec shape", spec: inference.TensorSpec{Name: "x", DataType: tensor.FP32, Shape: tensor.Shape{-2}}, body: floats, msg: "invalid shape"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeRawInput(tc.body, tc.spec)
			if tc.msg != "" {
				if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want ErrBadRequest containing %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.spec.Name || got.DataType != tc.spec.DataType || !got.Shape.Equal(tc.shape) || !bytes.Equal(got.Data, tc.data) {
				t.Fatalf("got %q %s%v % x, want %v % x", got.Name, got.DataType, got.Shape, got.Data, tc.shape, tc.data)
			}
			if err := got.Validate(0); err != nil {
				t.Fatal(err)
			}
			if tc.spec.DataType != tensor.Bytes && !within(got.Data, tc.body) {
				t.Fatal("raw input was copied")
			}
			if len(tc.spec.Shape) > 0 && tc.spec.Shape[0] == -1 && got.Shape[0] != 1 {
				t.Fatal("spec shape was modified")
			}
		})
	}
}

func TestParamConstructors(t *testing.T) {
	tests := []struct {
		p    Param
		kind ParamKind
		json string
	}{
		{StringParam("a\"b"), ParamString, `"a\"b"`},
		{IntParam(-42), ParamNumber, `-42`},
		{UintParam(math.MaxUint64), ParamNumber, `18446744073709551615`},
		{FloatParam(0.25), ParamNumber, `0.25`},
		{FloatParam(1e300), ParamNumber, `1e+300`},
		{FloatParam(math.NaN()), ParamString, `"NaN"`},
		{FloatParam(math.Inf(-1)), ParamString, `"-Infinity"`},
		{BoolParam(true), ParamBool, `true`},
		{Param{}, ParamInvalid, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.json, func(t *testing.T) {
			if tc.p.Kind() != tc.kind {
				t.Fatalf("kind %d, want %d", tc.p.Kind(), tc.kind)
			}
			got := string(appendParam(nil, tc.p))
			if got != tc.json {
				t.Fatalf("JSON %s, want %s", got, tc.json)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON %s", got)
			}
		})
	}
}

func TestParamAccessors(t *testing.T) {
	num := func(s string) Param { return Param{kind: ParamNumber, text: s} }
	tests := []struct {
		name string
		ok   bool
	}{
		{"int64 from int literal", func() bool { v, ok := num("-9223372036854775808").AsInt64(); return ok && v == math.MinInt64 }()},
		{"int64 rejects fraction", func() bool { _, ok := num("1.5").AsInt64(); return !ok }()},
		{"int64 rejects exponent", func() bool { _, ok := num("1e3").AsInt64(); return !ok }()},
		{"uint64 rejects negative", func() bool { _, ok := num("-1").AsUint64(); return !ok }()},
		{"uint64 negative zero", func() bool { v, ok := num("-0").AsUint64(); return ok && v == 0 }()},
		{"uint64 of string", func() bool { _, ok := StringParam("-0").AsUint64(); return !ok }()},
		{"float of int", func() bool { v, ok := IntParam(3).AsFloat64(); return ok && v == 3 }()},
		{"float of bool", func() bool { _, ok := BoolParam(true).AsFloat64(); return !ok }()},
		{"string of number", func() bool { _, ok := IntParam(3).AsString(); return !ok }()},
		{"bool of string", func() bool { _, ok := StringParam("true").AsBool(); return !ok }()},
		{"String of bool", BoolParam(false).String() == "false"},
		{"String of number", IntParam(7).String() == "7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Fatal("failed")
			}
		})
	}
}

// decodeResponse parses an encoded response back into tensors (test only).
func decodeResponse(t testing.TB, body []byte, jsonLen int) (*fastjson.Value, []tensor.Tensor, []bool) {
	t.Helper()
	v, err := fastjson.ParseBytes(body[:jsonLen])
	if err != nil {
		t.Fatalf("response JSON: %v\n%s", err, body[:jsonLen])
	}
	rest := body[jsonLen:]
	var outs []tensor.Tensor
	var bin []bool
	for _, o := range v.GetArray("outputs") {
		dt, err := tensor.ParseDataType(string(o.GetStringBytes("datatype")))
		if err != nil {
			t.Fatal(err)
		}
		var shape tensor.Shape
		for _, d := range o.GetArray("shape") {
			shape = append(shape, d.GetInt64())
		}
		out := tensor.Tensor{Name: string(o.GetStringBytes("name")), DataType: dt, Shape: shape}
		if size := o.Get("parameters", "binary_data_size"); size != nil {
			n := size.GetInt()
			if o.Exists("data") || n > len(rest) {
				t.Fatalf("binary output %q: data present or size %d > %d", out.Name, n, len(rest))
			}
			out.Data, rest = rest[:n], rest[n:]
			bin = append(bin, true)
		} else {
			if out.Data, err = tensor.DecodeJSON(dt, shape, o.Get("data"), 0); err != nil {
				t.Fatalf("output %q: %v", out.Name, err)
			}
			bin = append(bin, false)
		}
		outs = append(outs, out)
	}
	if len(rest) != 0 {
		t.Fatalf("%d unclaimed bytes after the response JSON", len(rest))
	}
	return v, outs, bin
}

func TestAppendInferResponseRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var outputs []tensor.Tensor
	var binary []bool
	for i, dt := range tensor.AllDataTypes {
		outputs = append(outputs, randomTensor(r, "out"+dt.String(), dt, tensor.Shape{2, int64(i % 3)}))
		binary = append(binary, i%2 == 0)
	}
	outputs = append(outputs, tensor.Tensor{Name: "img", DataType: tensor.Bytes, Shape: tensor.Shape{1}, Data: bytesData("\x89PNG\xff")})
	binary = append(binary, true)
	resp := &InferResponse{ModelName: "m\"1", ModelVersion: "3", ID: "id-9", Outputs: outputs, Binary: binary}
	body, jsonLen, err := AppendInferResponse([]byte("prefix"), resp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte("prefix")) {
		t.Fatal("dst prefix lost")
	}
	v, got, gotBin := decodeResponse(t, body[len("prefix"):], jsonLen)
	if string(v.GetStringBytes("model_name")) != `m"1` || string(v.GetStringBytes("model_version")) != "3" || string(v.GetStringBytes("id")) != "id-9" {
		t.Fatalf("header fields wrong: %s", body[len("prefix"):len("prefix")+jsonLen])
	}
	sameTensors(t, got, outputs)
	for i := range binary {
		if gotBin[i] != binary[i] {
			t.Fatalf("output %d binary = %v, want %v", i, gotBin[i], binary[i])
		}
	}
}

func TestAppendInferResponseGolden(t *testing.T) {
	out := tensor.Tensor{Name: "y", DataType: tensor.FP32, Shape: tensor.Shape{1, 2}, Data: f32(0.5, -1)}
	tests := []struct {
		name string
		r    InferResponse
		want string
	}{
		{name: "json", r: InferResponse{ModelName: "m", ModelVersion: "1", ID: "a", Outputs: []tensor.Tensor{out}},
			want: `{"model_name":"m","model_version":"1","id":"a","outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[0.5,-1]}]}`},
		{name: "unversioned no id", r: InferResponse{ModelName: "m", Outputs: []tensor.Tensor{out}},
			want: `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[0.5,-1]}]}`},
		{name: "binary", r: InferResponse{ModelName: "m", Outputs: []tensor.Tensor{out}, Binary: []bool{true}},
			want: `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}]}` + string(f32(0.5, -1))},
		{name: "parameters", r: InferResponse{ModelName: "m", Params: map[string]Param{"b": BoolParam(true), "a": IntParam(1)},
			Outputs: []tensor.Tensor{out, out}, Binary: []bool{true}, OutputParams: []map[string]Param{{"z": StringParam("q"), "binary_data_size": IntParam(99)}, {"k": FloatParam(0.5)}}},
			want: `{"model_name":"m","parameters":{"a":1,"b":true},"outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8,"z":"q"}},` +
				`{"name":"y","datatype":"FP32","shape":[1,2],"parameters":{"k":0.5},"data":[0.5,-1]}]}` + string(f32(0.5, -1))},
		{name: "no outputs", r: InferResponse{ModelName: "m"}, want: `{"model_name":"m","outputs":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, jsonLen, err := AppendInferResponse(nil, &tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tc.want {
				t.Fatalf("got  %q\nwant %q", body, tc.want)
			}
			if !json.Valid(body[:jsonLen]) {
				t.Fatalf("JSON part is invalid: %s", body[:jsonLen])
			}
		})
	}
}

func TestAppendInferResponseErrors(t *testing.T) {
	good := tensor.Tensor{Name: "y", DataType: tensor.FP32, Shape: tensor.Shape{1}, Data: f32(1)}
	tests := []struct {
		name string
		r    InferResponse
		msg  string
	}{
		{name: "invalid output", r: InferResponse{Outputs: []tensor.Tensor{good, {Name: "z", DataType: tensor.FP32, Shape: tensor.Shape{2}, Data: f32(1)}}}, msg: "output 1"},
		{name: "too many flags", r: InferResponse{Outputs: []tensor.Tensor{good}, Binary: []bool{true, false}}, msg: "binary flags"},
		{name: "binary bytes as json", r: InferResponse{Outputs: []tensor.Tensor{good, {Name: "img", DataType: tensor.Bytes, Shape: tensor.Shape{1}, Data: bytesData("\xff")}}}, msg: "request it as binary output"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			body, _, err := AppendInferResponse(dst, &tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.msg)
			}
			if string(body) != "keep" {
				t.Fatalf("dst = %q after an error", body)
			}
		})
	}
}

func TestAppendInferResponseAllocs(t *testing.T) {
	r := &InferResponse{ModelName: "m", ModelVersion: "1", ID: "a", Outputs: []tensor.Tensor{
		{Name: "y", DataType: tensor.FP32, Shape: tensor.Shape{1, 64}, Data: make([]byte, 256)},
		{Name: "z", DataType: tensor.Int64, Shape: tensor.Shape{4}, Data: make([]byte, 32)},
	}, Binary: []bool{false, true}}
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := AppendInferResponse(dst, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendInferResponse allocated %v times per call, want 0", allocs)
	}
}

func TestAppendError(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"boom", `{"error":"boom"}`},
		{"input \"x\":\n bad", `{"error":"input \"x\":\n bad"}`},
		{"", `{"error":""}`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := AppendError([]byte("p"), tc.msg)
			if string(got) != "p"+tc.want {
				t.Fatalf("got %s, want p%s", got, tc.want)
			}
			var v struct{ Error string }
			if err := json.Unmarshal(got[1:], &v); err != nil || v.Error != tc.msg {
				t.Fatalf("decoded %q, %v", v.Error, err)
			}
		})
	}
}

func benchInput() tensor.Tensor {
	r := rand.New(rand.NewPCG(7, 8))
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = r.Float32()*2 - 1
	}
	return tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{1, 64}, Data: tensor.AsBytes(vals)}
}

func BenchmarkDecodeInferRequest(b *testing.B) {
	in := []tensor.Tensor{benchInput()}
	for _, form := range []struct {
		name   string
		binary []bool
	}{{"json", nil}, {"binary", []bool{true}}} {
		b.Run(form.name, func(b *testing.B) {
			body, hl := encodeRequest(b, "42", in, form.binary, `,"outputs":[{"name":"output"}]`)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeInferRequest(body, hl, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// largeJSONRequest returns a request whose one FP32 input holds n values
// written by value(i), as JSON.
func largeJSONRequest(n int, value func(i int) string) []byte {
	b := fmt.Appendf(nil, `{"inputs":[{"name":"x","shape":[%d],"datatype":"FP32","data":[`, n)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, value(i)...)
	}
	return append(b, "]}]}"...)
}

// BenchmarkDecodeInferRequestLarge decodes large JSON tensors: a
// ResNet-sized image (3x224x224 random floats) and 1M copies of 0.5.
func BenchmarkDecodeInferRequestLarge(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	vals := make([]string, 1024)
	for i := range vals {
		vals[i] = strconv.FormatFloat(float64(r.Float32()), 'g', -1, 32)
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"resnet-150528", largeJSONRequest(3*224*224, func(i int) string { return vals[i%len(vals)] })},
		{"1M", largeJSONRequest(1<<20, func(int) string { return "0.5" })},
	} {
		b.Run(c.name, func(b *testing.B) {
			lim := Limits{MaxJSONValues: 1 << 21}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeInferRequest(c.body, -1, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendInferResponse(b *testing.B) {
	for _, form := range []struct {
		name   string
		binary []bool
	}{{"json", nil}, {"binary", []bool{true}}} {
		b.Run(form.name, func(b *testing.B) {
			r := &InferResponse{ModelName: "model", ModelVersion: "1", ID: "42", Outputs: []tensor.Tensor{benchInput()}, Binary: form.binary}
			dst := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				body, _, err := AppendInferResponse(dst[:0], r)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body)))
			}
		})
	}
}
