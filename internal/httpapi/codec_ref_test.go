package httpapi

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/tensor"
)

// This file keeps the fastjson-based request decoder that the single-pass
// scanner replaced, unchanged but for names, as the reference the
// differential fuzz test holds the scanner to.

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
func refDecodeInferRequest(body []byte, headerLen int, lim Limits) (*InferRequest, error) {
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
	var p fastjson.Parser
	d := refDecoder{lim: lim, bin: bin, header: headerLen >= 0}
	req, err := d.decode(&p, js)
	if err != nil {
		return nil, err
	}
	return req, nil
}

type refDecoder struct {
	num    []byte // scratch for number literals
	lim    Limits
	bin    []byte // binary chunks after the JSON header
	off    int    // bytes of bin consumed
	header bool   // the Inference-Header-Content-Length header was given
}

// refRequestOne holds a request with one input in a single allocation.
type refRequestOne struct {
	req InferRequest
	in  [1]tensor.Tensor
}

func (d *refDecoder) decode(p *fastjson.Parser, js []byte) (*InferRequest, error) {
	v, err := p.ParseBytes(js)
	if err != nil {
		return nil, badf("malformed JSON: %v", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, badf("the request must be a JSON object, got %s", refKindOf(v))
	}
	inputs := obj.Get("inputs")
	if inputs == nil {
		return nil, badf(`the request has no "inputs"`)
	}
	ins, err := inputs.Array()
	if err != nil {
		return nil, badf(`"inputs" must be an array, got %s`, refKindOf(inputs))
	}
	var req *InferRequest
	if len(ins) == 1 {
		one := new(refRequestOne)
		req = &one.req
		req.Inputs = one.in[:]
	} else {
		req = &InferRequest{Inputs: make([]tensor.Tensor, len(ins))}
	}
	if x := obj.Get("id"); x != nil {
		s, err := x.StringBytes()
		if err != nil {
			return nil, badf(`"id" must be a string, got %s`, refKindOf(x))
		}
		req.ID = string(s)
	}
	if x := obj.Get("parameters"); x != nil {
		m, special, err := refDecodeParams(x, paramBinaryOutput)
		if err != nil {
			return nil, badf("request %w", err)
		}
		req.Params = m
		if special != nil {
			if req.BinaryOutput, err = special.Bool(); err != nil {
				return nil, badf("request parameter %s must be a boolean, got %s", paramBinaryOutput, refKindOf(special))
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
			return nil, badf(`"outputs" must be an array, got %s`, refKindOf(x))
		}
		if len(outs) > 0 {
			req.Outputs = make([]RequestedOutput, len(outs))
		}
		for i, o := range outs {
			if err := refDecodeOutput(&req.Outputs[i], i, o); err != nil {
				return nil, err
			}
		}
		if name, dup := duplicate(len(req.Outputs), func(i int) string { return req.Outputs[i].Name }); dup {
			return nil, badf("output %q is requested more than once", name)
		}
	}
	return req, nil
}

func (d *refDecoder) input(req *InferRequest, i int, x *fastjson.Value) error {
	o, err := x.Object()
	if err != nil {
		return badf("input %d must be an object, got %s", i, refKindOf(x))
	}
	name, err := refNameOf(o, "input", i)
	if err != nil {
		return err
	}
	dt, err := refDatatypeOf(o, name)
	if err != nil {
		return err
	}
	shape, n, err := d.shapeOf(o, name)
	if err != nil {
		return err
	}
	binSize := int64(-1)
	if pv := o.Get("parameters"); pv != nil {
		m, special, err := refDecodeParams(pv, paramBinarySize)
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

func refNameOf(o *fastjson.Object, what string, i int) (string, error) {
	v := o.Get("name")
	if v == nil {
		return "", badf(`%s %d has no "name"`, what, i)
	}
	b, err := v.StringBytes()
	if err != nil {
		return "", badf(`%s %d: "name" must be a string, got %s`, what, i, refKindOf(v))
	}
	if len(b) == 0 {
		return "", badf("%s %d has an empty name", what, i)
	}
	return string(b), nil
}

func refDatatypeOf(o *fastjson.Object, name string) (tensor.DataType, error) {
	v := o.Get("datatype")
	if v == nil {
		return 0, badf(`input %q has no "datatype"`, name)
	}
	b, err := v.StringBytes()
	if err != nil {
		return 0, badf(`input %q: "datatype" must be a string, got %s`, name, refKindOf(v))
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
func (d *refDecoder) shapeOf(o *fastjson.Object, name string) (tensor.Shape, int64, error) {
	v := o.Get("shape")
	if v == nil {
		return nil, 0, badf(`input %q has no "shape"`, name)
	}
	dims, err := v.Array()
	if err != nil {
		return nil, 0, badf(`input %q: "shape" must be an array of integers, got %s`, name, refKindOf(v))
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
func (d *refDecoder) intOf(v *fastjson.Value) (neg bool, mag uint64, err error) {
	if v.Type() != fastjson.TypeNumber {
		return false, 0, fmt.Errorf("expected an integer, got %s", refKindOf(v))
	}
	if d.num == nil {
		d.num = make([]byte, 0, 32)
	}
	d.num = v.MarshalTo(d.num[:0])
	return tensor.ParseJSONInt(d.num)
}

func refDecodeOutput(out *RequestedOutput, i int, x *fastjson.Value) error {
	o, err := x.Object()
	if err != nil {
		return badf("output %d must be an object, got %s", i, refKindOf(x))
	}
	if out.Name, err = refNameOf(o, "output", i); err != nil {
		return err
	}
	pv := o.Get("parameters")
	if pv == nil {
		return nil
	}
	m, special, err := refDecodeParams(pv, paramBinary)
	if err != nil {
		return badf("output %q: %w", out.Name, err)
	}
	out.Params = m
	if special != nil {
		if out.Binary, err = special.Bool(); err != nil {
			return badf("output %q: %s must be a boolean, got %s", out.Name, paramBinary, refKindOf(special))
		}
		out.BinarySet = true
	}
	return nil
}

// decodeParams decodes a "parameters" object. The parameter named special
// is returned separately and left out of the map; the map is nil when no
// other parameter is present. Errors do not wrap ErrBadRequest.
func refDecodeParams(v *fastjson.Value, special string) (map[string]Param, *fastjson.Value, error) {
	o, err := v.Object()
	if err != nil {
		return nil, nil, fmt.Errorf(`"parameters" must be an object, got %s`, refKindOf(v))
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
		p, err := refParamOf(x)
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

func refParamOf(x *fastjson.Value) (Param, error) {
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
	return Param{}, fmt.Errorf("must be a string, number or boolean, got %s", refKindOf(x))
}

func refKindOf(v *fastjson.Value) string {
	switch t := v.Type(); t {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeObject, fastjson.TypeArray:
		return "an " + t.String()
	default:
		return "a " + t.String()
	}
}
