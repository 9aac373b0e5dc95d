package httpapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// ErrBadRequest marks a request the client must fix: malformed JSON, a
// field of the wrong type, tensor data that does not match its shape. Every
// error from the decoders in this package wraps it.
var ErrBadRequest = errors.New("bad request")

// maxRank bounds the number of dimensions of a request tensor.
const maxRank = 64

// DefaultMaxJSONValues is the default bound on the number of values in a
// request's JSON. fastjson builds a DOM of about 80 bytes per value and,
// while growing it, keeps every generation alive: peak memory is several
// hundred bytes per value, so 1<<20 values ("0," is two bytes each) can
// cost ~450 MiB. Large tensors belong in the binary tensor extension.
const DefaultMaxJSONValues = 1 << 20

// A parser keeps the memory of the largest document it parsed; only those
// that parsed documents within both bounds go back to the pool.
const (
	maxPooledHeader = 1 << 20
	maxPooledValues = 1 << 16
)

// Binary tensor data extension parameters.
const (
	paramBinarySize   = "binary_data_size"   // on inputs and response outputs
	paramBinary       = "binary_data"        // on requested outputs
	paramBinaryOutput = "binary_data_output" // request level
)

// pooledParser is a JSON parser with its scratch space, reused across
// requests through parsers. Nothing decoded may point into it.
type pooledParser struct {
	p   fastjson.Parser
	num []byte
}

var parsers = sync.Pool{New: func() any { return new(pooledParser) }}

// Limits bound what a request may ask for.
type Limits struct {
	// MaxElements bounds the element count of each input tensor
	// (<= 0: tensor.DefaultMaxElements).
	MaxElements int64
	// MaxJSONValues bounds the number of values (numbers, strings,
	// arrays, ...) in the JSON part of a request, checked by a cheap scan
	// before parsing (<= 0: DefaultMaxJSONValues).
	MaxJSONValues int
}

// ParamKind is the JSON kind of a parameter value.
type ParamKind uint8

// Parameter kinds. The zero Param has kind ParamInvalid.
const (
	ParamInvalid ParamKind = iota
	ParamString
	ParamNumber
	ParamBool
)

// Param is an OIP parameter value: a string, a number or a boolean. A
// number keeps its JSON literal, so integers beyond 2^53 and the
// distinction between 1 and 1.0 survive decoding.
type Param struct {
	kind ParamKind
	text string // the string, or the number literal
	b    bool
}

// StringParam returns a string parameter.
func StringParam(s string) Param { return Param{kind: ParamString, text: s} }

// IntParam returns an integer parameter.
func IntParam(v int64) Param { return Param{kind: ParamNumber, text: strconv.FormatInt(v, 10)} }

// UintParam returns an unsigned integer parameter.
func UintParam(v uint64) Param { return Param{kind: ParamNumber, text: strconv.FormatUint(v, 10)} }

// FloatParam returns a number parameter. JSON has no NaN or infinities, so
// those become the strings "NaN", "Infinity" and "-Infinity".
func FloatParam(v float64) Param {
	switch {
	case v != v:
		return StringParam("NaN")
	case math.IsInf(v, 1):
		return StringParam("Infinity")
	case math.IsInf(v, -1):
		return StringParam("-Infinity")
	}
	return Param{kind: ParamNumber, text: strconv.FormatFloat(v, 'g', -1, 64)}
}

// BoolParam returns a boolean parameter.
func BoolParam(v bool) Param { return Param{kind: ParamBool, b: v} }

// Kind reports the parameter's JSON kind.
func (p Param) Kind() ParamKind { return p.kind }

// AsString returns the value of a string parameter.
func (p Param) AsString() (string, bool) { return p.text, p.kind == ParamString }

// AsBool returns the value of a boolean parameter.
func (p Param) AsBool() (bool, bool) { return p.b, p.kind == ParamBool }

// AsInt64 returns the value of a number parameter written as an integer
// literal that fits int64.
func (p Param) AsInt64() (int64, bool) {
	if p.kind != ParamNumber {
		return 0, false
	}
	v, err := strconv.ParseInt(p.text, 10, 64)
	return v, err == nil
}

// AsUint64 returns the value of a number parameter written as a
// non-negative integer literal that fits uint64.
func (p Param) AsUint64() (uint64, bool) {
	if p.kind != ParamNumber {
		return 0, false
	}
	if p.text == "-0" {
		return 0, true
	}
	v, err := strconv.ParseUint(p.text, 10, 64)
	return v, err == nil
}

// AsFloat64 returns the value of a number parameter.
func (p Param) AsFloat64() (float64, bool) {
	if p.kind != ParamNumber {
		return 0, false
	}
	v, err := strconv.ParseFloat(p.text, 64)
	return v, err == nil
}

// String returns the value as text: the string itself, the number
// literal, "true" or "false" ("" for the zero Param).
func (p Param) String() string {
	if p.kind == ParamBool {
		return strconv.FormatBool(p.b)
	}
	return p.text
}

func appendParam(dst []byte, p Param) []byte {
	switch p.kind {
	case ParamString:
		return tensor.AppendJSONString(dst, p.text)
	case ParamNumber:
		return append(dst, p.text...)
	case ParamBool:
		return strconv.AppendBool(dst, p.b)
	}
	return append(dst, "null"...)
}

// InferRequest is a decoded OIP v2 inference request.
//
// Inputs decoded from JSON own their data; inputs sent as binary data
// reference the request body, which must stay unchanged while the request
// is in use. Nothing refers to the JSON parser's memory.
type InferRequest struct {
	ID string
	// Params are the request-level parameters; nil when there are none.
	// binary_data_output is consumed into BinaryOutput.
	Params map[string]Param
	Inputs []tensor.Tensor
	// InputParams holds each input's parameters (binary_data_size
	// excluded) at the input's index; nil when no input has any.
	InputParams []map[string]Param
	// Outputs are the requested outputs; empty means all.
	Outputs []RequestedOutput
	// BinaryOutput is the request-level binary_data_output parameter.
	BinaryOutput bool
}

// RequestedOutput is one entry of a request's "outputs".
type RequestedOutput struct {
	Name string
	// Binary is the output's binary_data parameter; BinarySet reports
	// whether it was given (it overrides the request's BinaryOutput).
	Binary    bool
	BinarySet bool
	// Params are the other parameters (e.g. classification); nil when none.
	Params map[string]Param
}

// WantsBinary reports whether output o is to be returned as binary data,
// given the request-level default.
func (o RequestedOutput) WantsBinary(requestDefault bool) bool {
	if o.BinarySet {
		return o.Binary
	}
	return requestDefault
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// DecodeInferRequest decodes an OIP v2 inference request body.
//
// headerLen is the value of the Inference-Header-Content-Length header, or
// a negative number when the header is absent (the whole body is JSON).
// With the header, body[:headerLen] is the JSON request and the rest holds
// the binary chunks of the inputs that declare binary_data_size, in input
// order; every byte must belong to one of them. A headerLen of 0 marks the
// raw binary form, which DecodeRawInput handles.
//
// Everything is validated: the JSON's value count (a cheap scan against
// lim.MaxJSONValues before parsing), JSON kinds, datatypes, shapes (against
// lim.MaxElements before any tensor allocation), element values, chunk
// sizes and BYTES length prefixes. Errors wrap ErrBadRequest and, where the tensor package found
// the problem, tensor.ErrInvalid or tensor.ErrTooLarge.
func DecodeInferRequest(body []byte, headerLen int, lim Limits) (*InferRequest, error) {
	js, bin := body, []byte(nil)
	if headerLen >= 0 {
		if headerLen > len(body) {
			return nil, badf("Inference-Header-Content-Length %d exceeds the body length %d", headerLen, len(body))
		}
		if headerLen == 0 {
			return nil, badf("Inference-Header-Content-Length 0 marks a raw binary request, which has no JSON header")
		}
		js, bin = body[:headerLen], body[headerLen:]
	}
	maxValues := lim.MaxJSONValues
	if maxValues <= 0 {
		maxValues = DefaultMaxJSONValues
	}
	values := countValues(js)
	if values > maxValues {
		return nil, fmt.Errorf("%w: %w: the JSON request has about %d values, the limit is %d (send large tensors as binary data)", ErrBadRequest, tensor.ErrTooLarge, values, maxValues)
	}
	pp := parsers.Get().(*pooledParser)
	d := requestDecoder{num: pp.num, lim: lim, bin: bin, header: headerLen >= 0}
	req, err := d.decode(&pp.p, js)
	if len(js) <= maxPooledHeader && values <= maxPooledValues {
		pp.num = d.num[:0]
		parsers.Put(pp)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// countValues returns an upper bound on the number of values in the JSON
// text js: one plus the commas, '[' and '{' outside strings. It does not
// validate anything.
func countValues(js []byte) int {
	n := 1
	for i := 0; i < len(js); i++ {
		switch js[i] {
		case ',', '[', '{':
			n++
		case '"':
			for i++; i < len(js) && js[i] != '"'; i++ {
				if js[i] == '\\' {
					i++
				}
			}
		}
	}
	return n
}

type requestDecoder struct {
	num    []byte // scratch for number literals
	lim    Limits
	bin    []byte // binary chunks after the JSON header
	off    int    // bytes of bin consumed
	header bool   // the Inference-Header-Content-Length header was given
}

// requestOne holds a request with one input in a single allocation.
type requestOne struct {
	req InferRequest
	in  [1]tensor.Tensor
}

func (d *requestDecoder) decode(p *fastjson.Parser, js []byte) (*InferRequest, error) {
	v, err := p.ParseBytes(js)
	if err != nil {
		return nil, badf("malformed JSON: %v", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, badf("the request must be a JSON object, got %s", kindOf(v))
	}
	inputs := obj.Get("inputs")
	if inputs == nil {
		return nil, badf(`the request has no "inputs"`)
	}
	ins, err := inputs.Array()
	if err != nil {
		return nil, badf(`"inputs" must be an array, got %s`, kindOf(inputs))
	}
	var req *InferRequest
	if len(ins) == 1 {
		one := new(requestOne)
		req = &one.req
		req.Inputs = one.in[:]
	} else {
		req = &InferRequest{Inputs: make([]tensor.Tensor, len(ins))}
	}
	if x := obj.Get("id"); x != nil {
		s, err := x.StringBytes()
		if err != nil {
			return nil, badf(`"id" must be a string, got %s`, kindOf(x))
		}
		req.ID = string(s)
	}
	if x := obj.Get("parameters"); x != nil {
		m, special, err := decodeParams(x, paramBinaryOutput)
		if err != nil {
			return nil, badf("request %w", err)
		}
		req.Params = m
		if special != nil {
			if req.BinaryOutput, err = special.Bool(); err != nil {
				return nil, badf("request parameter %s must be a boolean, got %s", paramBinaryOutput, kindOf(special))
			}
		}
	}
	for i, x := range ins {
		if err := d.input(req, i, x); err != nil {
			return nil, err
		}
	}
	if name, dup := duplicate(len(req.Inputs), func(i int) string { return req.Inputs[i].Name }); dup {
		return nil, badf("input %q appears more than once", name)
	}
	if d.off != len(d.bin) {
		return nil, badf("%d bytes of binary data after the JSON header belong to no input (binary_data_size values add up to %d)", len(d.bin)-d.off, d.off)
	}
	if x := obj.Get("outputs"); x != nil {
		outs, err := x.Array()
		if err != nil {
			return nil, badf(`"outputs" must be an array, got %s`, kindOf(x))
		}
		if len(outs) > 0 {
			req.Outputs = make([]RequestedOutput, len(outs))
		}
		for i, o := range outs {
			if err := decodeOutput(&req.Outputs[i], i, o); err != nil {
				return nil, err
			}
		}
		if name, dup := duplicate(len(req.Outputs), func(i int) string { return req.Outputs[i].Name }); dup {
			return nil, badf("output %q is requested more than once", name)
		}
	}
	return req, nil
}

func (d *requestDecoder) input(req *InferRequest, i int, x *fastjson.Value) error {
	o, err := x.Object()
	if err != nil {
		return badf("input %d must be an object, got %s", i, kindOf(x))
	}
	name, err := nameOf(o, "input", i)
	if err != nil {
		return err
	}
	dt, err := datatypeOf(o, name)
	if err != nil {
		return err
	}
	shape, n, err := d.shapeOf(o, name)
	if err != nil {
		return err
	}
	binSize := int64(-1)
	if pv := o.Get("parameters"); pv != nil {
		m, special, err := decodeParams(pv, paramBinarySize)
		if err != nil {
			return badf("input %q: %w", name, err)
		}
		if m != nil {
			if req.InputParams == nil {
				req.InputParams = make([]map[string]Param, len(req.Inputs))
			}
			req.InputParams[i] = m
		}
		if special != nil {
			neg, mag, err := d.intOf(special)
			if err != nil || (neg && mag != 0) || mag > math.MaxInt64 {
				return badf("input %q: %s must be a non-negative integer", name, paramBinarySize)
			}
			binSize = int64(mag)
		}
	}
	t := &req.Inputs[i]
	t.Name, t.DataType, t.Shape = name, dt, shape
	data := o.Get("data")
	if binSize < 0 {
		if data == nil {
			return badf(`input %q has no "data" and no %s`, name, paramBinarySize)
		}
		if t.Data, err = tensor.DecodeJSON(dt, shape, data, d.lim.MaxElements); err != nil {
			return fmt.Errorf("%w: input %q: %w", ErrBadRequest, name, err)
		}
		return nil
	}
	switch {
	case !d.header:
		return badf("input %q has %s but the request has no Inference-Header-Content-Length header", name, paramBinarySize)
	case data != nil:
		return badf(`input %q has both "data" and %s`, name, paramBinarySize)
	}
	if dt != tensor.Bytes {
		want, err := tensor.ByteSize(dt, shape, d.lim.MaxElements)
		if err != nil {
			return fmt.Errorf("%w: input %q: %w", ErrBadRequest, name, err)
		}
		if binSize != want {
			return badf("input %q: %s is %d, but %s%v needs %d bytes", name, paramBinarySize, binSize, dt, shape, want)
		}
	}
	if left := int64(len(d.bin) - d.off); binSize > left {
		return badf("input %q: %s %d exceeds the %d bytes left after the JSON header", name, paramBinarySize, binSize, left)
	}
	end := d.off + int(binSize)
	chunk := d.bin[d.off:end:end]
	d.off = end
	if dt == tensor.Bytes {
		count, err := tensor.CountBytesElements(chunk)
		if err != nil {
			return fmt.Errorf("%w: input %q: %w", ErrBadRequest, name, err)
		}
		if count != n {
			return badf("input %q: binary data holds %d BYTES elements, shape %v needs %d", name, count, shape, n)
		}
	}
	t.Data = chunk
	return nil
}

func nameOf(o *fastjson.Object, what string, i int) (string, error) {
	v := o.Get("name")
	if v == nil {
		return "", badf(`%s %d has no "name"`, what, i)
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", badf(`%s %d: "name" must be a string, got %s`, what, i, kindOf(v))
	}
	if len(b) == 0 {
		return "", badf("%s %d has an empty name", what, i)
	}
	return string(b), nil
}

func datatypeOf(o *fastjson.Object, name string) (tensor.DataType, error) {
	v := o.Get("datatype")
	if v == nil {
		return 0, badf(`input %q has no "datatype"`, name)
	}
	b, err := v.StringBytes()
	if err != nil {
		return 0, badf(`input %q: "datatype" must be a string, got %s`, name, kindOf(v))
	}
	for _, dt := range tensor.AllDataTypes {
		if dt.String() == string(b) {
			return dt, nil
		}
	}
	return 0, badf("input %q has unknown datatype %q", name, b)
}

// shapeOf decodes and validates an input's shape, returning its element
// count.
func (d *requestDecoder) shapeOf(o *fastjson.Object, name string) (tensor.Shape, int64, error) {
	v := o.Get("shape")
	if v == nil {
		return nil, 0, badf(`input %q has no "shape"`, name)
	}
	dims, err := v.Array()
	if err != nil {
		return nil, 0, badf(`input %q: "shape" must be an array of integers, got %s`, name, kindOf(v))
	}
	if len(dims) > maxRank {
		return nil, 0, badf("input %q: shape has %d dimensions, the limit is %d", name, len(dims), maxRank)
	}
	shape := make(tensor.Shape, len(dims))
	for j, dv := range dims {
		neg, mag, err := d.intOf(dv)
		switch {
		case err != nil:
			return nil, 0, badf("input %q: shape dimension %d: %v", name, j, err)
		case neg && mag != 0:
			return nil, 0, badf("input %q: shape dimension %d is negative (-%d)", name, j, mag)
		case mag > math.MaxInt64:
			return nil, 0, fmt.Errorf("%w: input %q: %w: shape dimension %d is %d", ErrBadRequest, name, tensor.ErrTooLarge, j, mag)
		}
		shape[j] = int64(mag)
	}
	n, err := shape.Elements(d.lim.MaxElements)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: input %q: %w", ErrBadRequest, name, err)
	}
	return shape, n, nil
}

// intOf parses a JSON integer value.
func (d *requestDecoder) intOf(v *fastjson.Value) (neg bool, mag uint64, err error) {
	if v.Type() != fastjson.TypeNumber {
		return false, 0, fmt.Errorf("expected an integer, got %s", kindOf(v))
	}
	if d.num == nil {
		d.num = make([]byte, 0, 32)
	}
	d.num = v.MarshalTo(d.num[:0])
	return tensor.ParseJSONInt(d.num)
}

func decodeOutput(out *RequestedOutput, i int, x *fastjson.Value) error {
	o, err := x.Object()
	if err != nil {
		return badf("output %d must be an object, got %s", i, kindOf(x))
	}
	if out.Name, err = nameOf(o, "output", i); err != nil {
		return err
	}
	pv := o.Get("parameters")
	if pv == nil {
		return nil
	}
	m, special, err := decodeParams(pv, paramBinary)
	if err != nil {
		return badf("output %q: %w", out.Name, err)
	}
	out.Params = m
	if special != nil {
		if out.Binary, err = special.Bool(); err != nil {
			return badf("output %q: %s must be a boolean, got %s", out.Name, paramBinary, kindOf(special))
		}
		out.BinarySet = true
	}
	return nil
}

// decodeParams decodes a "parameters" object. The parameter named special
// is returned separately and left out of the map; the map is nil when no
// other parameter is present. Errors do not wrap ErrBadRequest.
func decodeParams(v *fastjson.Value, special string) (map[string]Param, *fastjson.Value, error) {
	o, err := v.Object()
	if err != nil {
		return nil, nil, fmt.Errorf(`"parameters" must be an object, got %s`, kindOf(v))
	}
	var (
		m    map[string]Param
		sp   *fastjson.Value
		perr error
	)
	o.Visit(func(k []byte, x *fastjson.Value) {
		if perr != nil {
			return
		}
		if string(k) == special {
			sp = x
			return
		}
		p, err := paramOf(x)
		if err != nil {
			perr = fmt.Errorf("parameter %q %w", k, err)
			return
		}
		if m == nil {
			m = make(map[string]Param, o.Len())
		}
		m[string(k)] = p
	})
	return m, sp, perr
}

func paramOf(x *fastjson.Value) (Param, error) {
	switch x.Type() {
	case fastjson.TypeString:
		s, _ := x.StringBytes()
		return StringParam(string(s)), nil
	case fastjson.TypeNumber:
		raw := x.MarshalTo(nil) // a fresh slice nothing else refers to
		if valid, _ := tensor.ScanJSONNumber(raw); !valid {
			return Param{}, fmt.Errorf("is a malformed number %q", string(raw))
		}
		return Param{kind: ParamNumber, text: unsafe.String(unsafe.SliceData(raw), len(raw))}, nil
	case fastjson.TypeTrue:
		return BoolParam(true), nil
	case fastjson.TypeFalse:
		return BoolParam(false), nil
	}
	return Param{}, fmt.Errorf("must be a string, number or boolean, got %s", kindOf(x))
}

// duplicate returns a name that occurs twice among n names.
func duplicate(n int, name func(int) string) (string, bool) {
	if n <= 16 {
		for i := range n {
			for j := range i {
				if name(i) == name(j) {
					return name(i), true
				}
			}
		}
		return "", false
	}
	seen := make(map[string]struct{}, n)
	for i := range n {
		s := name(i)
		if _, ok := seen[s]; ok {
			return s, true
		}
		seen[s] = struct{}{}
	}
	return "", false
}

func kindOf(v *fastjson.Value) string {
	switch t := v.Type(); t {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeObject, fastjson.TypeArray:
		return "an " + t.String()
	default:
		return "a " + t.String()
	}
}

// DecodeRawInput decodes the raw binary request form
// (Inference-Header-Content-Length: 0), in which the body is the data of
// the model's only input, described by in (-1 marks a variable dimension).
// The request is batch-1: a variable dimension 0 becomes 1, and at most one
// other dimension may be variable; it is inferred from the body length.
// A BYTES input must have a one-element shape and the body is that single
// element's content, without a length prefix (the result holds a copy with
// the prefix). Other inputs reference body without copying.
func DecodeRawInput(body []byte, in inference.TensorSpec) (tensor.Tensor, error) {
	if !in.DataType.Valid() {
		return tensor.Tensor{}, badf("input %q has an invalid datatype", in.Name)
	}
	shape := in.Shape.Clone()
	if len(shape) > 0 && shape[0] == -1 {
		shape[0] = 1
	}
	variable, known := -1, int64(1)
	for i, d := range shape {
		switch {
		case d == -1 && variable >= 0:
			return tensor.Tensor{}, badf("a raw binary request needs an input with at most one variable dimension besides the batch; %q has shape %v", in.Name, in.Shape)
		case d == -1:
			variable = i
		case d < 0:
			return tensor.Tensor{}, badf("input %q has an invalid shape %v", in.Name, in.Shape)
		case d != 0 && known > math.MaxInt64/d:
			return tensor.Tensor{}, badf("input %q: shape %v overflows", in.Name, in.Shape)
		default:
			known *= d
		}
	}
	t := tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: shape}
	if in.DataType == tensor.Bytes {
		if variable >= 0 {
			shape[variable] = 1
		}
		if known != 1 {
			return tensor.Tensor{}, badf("a raw binary BYTES input must have one element; %q has shape %v", in.Name, in.Shape)
		}
		if uint64(len(body)) > math.MaxUint32 {
			return tensor.Tensor{}, badf("raw BYTES element of %d bytes is too long", len(body))
		}
		t.Data = binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
		t.Data = append(t.Data, body...)
		return t, nil
	}
	size := int64(in.DataType.Size())
	have := int64(len(body))
	if have%size != 0 {
		return tensor.Tensor{}, badf("raw body of %d bytes is not a whole number of %s elements", have, in.DataType)
	}
	elems := have / size
	switch {
	case variable < 0 && elems != known:
		return tensor.Tensor{}, badf("raw body holds %d %s elements, input %q of shape %v needs %d", elems, in.DataType, in.Name, shape, known)
	case variable >= 0 && known == 0:
		if elems != 0 {
			return tensor.Tensor{}, badf("raw body holds %d elements, but input %q of shape %v holds none", elems, in.Name, shape)
		}
		shape[variable] = 0
	case variable >= 0:
		if elems%known != 0 {
			return tensor.Tensor{}, badf("raw body holds %d %s elements, not a multiple of the %d that input %q of shape %v needs per step of its variable dimension", elems, in.DataType, known, in.Name, in.Shape)
		}
		shape[variable] = elems / known
	}
	t.Data = body[:len(body):len(body)]
	return t, nil
}

// InferResponse is an OIP v2 inference response to encode.
type InferResponse struct {
	ModelName    string
	ModelVersion string // omitted when empty
	ID           string // omitted when empty
	Params       map[string]Param
	Outputs      []tensor.Tensor
	// Binary marks the outputs to send as binary data, by index; missing
	// entries mean JSON.
	Binary []bool
	// OutputParams are extra parameters per output, by index; may be nil.
	OutputParams []map[string]Param
}

// AppendInferResponse appends the encoded response to dst. Outputs marked
// binary carry "parameters":{"binary_data_size":N} instead of "data", and
// their bytes follow the JSON in output order. jsonLen is the length of the
// JSON part; when any output is binary the handler sends it as the
// Inference-Header-Content-Length header. Every output is validated first;
// on error dst is returned with its original length.
func AppendInferResponse(dst []byte, r *InferResponse) (body []byte, jsonLen int, err error) {
	if len(r.Binary) > len(r.Outputs) || len(r.OutputParams) > len(r.Outputs) {
		return dst, 0, fmt.Errorf("response has %d outputs but %d binary flags and %d parameter sets", len(r.Outputs), len(r.Binary), len(r.OutputParams))
	}
	for i := range r.Outputs {
		if err := r.Outputs[i].Validate(math.MaxInt64); err != nil {
			return dst, 0, fmt.Errorf("output %d: %w", i, err)
		}
	}
	start := len(dst)
	b := append(dst, `{"model_name":`...)
	b = tensor.AppendJSONString(b, r.ModelName)
	if r.ModelVersion != "" {
		b = append(b, `,"model_version":`...)
		b = tensor.AppendJSONString(b, r.ModelVersion)
	}
	if r.ID != "" {
		b = append(b, `,"id":`...)
		b = tensor.AppendJSONString(b, r.ID)
	}
	if len(r.Params) > 0 {
		b = append(b, `,"parameters":{`...)
		b = appendParams(b, r.Params, false)
		b = append(b, '}')
	}
	b = append(b, `,"outputs":[`...)
	for i := range r.Outputs {
		t := &r.Outputs[i]
		bin := i < len(r.Binary) && r.Binary[i]
		var params map[string]Param
		if i < len(r.OutputParams) {
			params = r.OutputParams[i]
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = tensor.AppendJSONString(b, t.Name)
		b = append(b, `,"datatype":"`...)
		b = append(b, t.DataType.String()...)
		b = append(b, `","shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, ']')
		if bin || len(params) > 0 {
			b = append(b, `,"parameters":{`...)
			if bin {
				b = append(b, `"binary_data_size":`...)
				b = strconv.AppendInt(b, int64(len(t.Data)), 10)
			}
			b = appendParams(b, params, bin)
			b = append(b, '}')
		}
		if !bin {
			b = append(b, `,"data":`...)
			if b, err = tensor.AppendJSON(b, t); err != nil {
				return dst[:start], 0, fmt.Errorf("output %q: %w", t.Name, err)
			}
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	jsonLen = len(b) - start
	for i := range r.Binary {
		if r.Binary[i] {
			b = append(b, r.Outputs[i].Data...)
		}
	}
	return b, jsonLen, nil
}

// appendParams appends the members of a parameters object in key order,
// skipping binary_data_size (the codec writes it). comma reports whether a
// member was already written.
func appendParams(b []byte, m map[string]Param, comma bool) []byte {
	if len(m) == 0 {
		return b
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == paramBinarySize {
			continue
		}
		if comma {
			b = append(b, ',')
		}
		comma = true
		b = tensor.AppendJSONString(b, k)
		b = append(b, ':')
		b = appendParam(b, m[k])
	}
	return b
}

// AppendError appends the OIP error body {"error":"<msg>"} to dst.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = tensor.AppendJSONString(dst, msg)
	return append(dst, '}')
}
