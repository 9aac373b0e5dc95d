package httpapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"unsafe"

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
// request's JSON. The decoder builds no tree, so values cost no memory of
// their own (tensor data goes straight into the tensors); the bound limits
// the scanning work and the allocations for parameters and inputs one
// request can cause. At one value per element it also keeps JSON tensors
// under about 1M elements: large tensors belong in the binary tensor
// extension.
const DefaultMaxJSONValues = 1 << 20

// Binary tensor data extension parameters.
const (
	paramBinarySize   = "binary_data_size"   // on inputs and response outputs
	paramBinary       = "binary_data"        // on requested outputs
	paramBinaryOutput = "binary_data_output" // request level
)

// Limits bound what a request may ask for.
type Limits struct {
	// MaxElements bounds the element count of each input tensor
	// (<= 0: tensor.DefaultMaxElements).
	MaxElements int64
	// MaxJSONValues bounds the number of values (numbers, strings,
	// arrays, ...) in the JSON part of a request (<= 0:
	// DefaultMaxJSONValues). Values are counted while scanning, as
	// countValues counts them (one plus the ',', '[' and '{' outside
	// strings), and decoding stops as soon as the count exceeds the bound.
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
// is in use. Nothing else refers to the body: the id, names and parameters
// are copies.
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
// The JSON is read in a single pass that builds no tree (see scan.go):
// the memory used is that of the decoded request, and JSON tensor data is
// decoded straight into the tensors' storage. Members may come in any
// order. Of a repeated member the first counts, of a repeated parameter
// the last (as before). Unknown members are validated and skipped.
//
// Everything is validated: JSON syntax, the number of values (against
// lim.MaxJSONValues, while scanning), JSON kinds, datatypes, shapes
// (against lim.MaxElements before any tensor allocation), element values,
// chunk sizes and BYTES length prefixes. Errors wrap ErrBadRequest and,
// where a tensor was at fault, tensor.ErrInvalid or tensor.ErrTooLarge.
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
	d := requestDecoder{
		s:   scanner{js: js, values: 1, maxValues: maxValues},
		lim: lim, bin: bin, header: headerLen >= 0,
	}
	return d.decode()
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

// requestDecoder carries the state of one DecodeInferRequest call.
type requestDecoder struct {
	s      scanner
	lim    Limits
	bin    []byte // binary chunks after the JSON header
	off    int    // bytes of bin consumed
	header bool   // the Inference-Header-Content-Length header was given
	one    *requestOne
	req    *InferRequest
	strs   stringArena
}

// requestOne holds a request with its first input and requested output in
// a single allocation.
type requestOne struct {
	req InferRequest
	in  [1]tensor.Tensor
	out [1]RequestedOutput
}

// span locates a member's value in the JSON text; the zero span marks an
// absent member (no value ends at offset 0).
type span struct{ start, end int }

// present reports whether the member was given.
func (sp span) present() bool { return sp.end > 0 }

// stringArena copies the short strings of a request (id, names,
// parameters) into shared chunks, so they cost one allocation between
// them and nothing refers to the body. A chunk holds no pointers: a string
// kept after the request pins only its chunk.
type stringArena struct{ buf []byte }

// arenaChunk is the size of the arena's chunks after the first, which is
// a quarter of it: most requests have a few short strings. A string longer
// than half a chunk gets an allocation of its own.
const arenaChunk = 256

// str returns a copy of b as a string.
func (a *stringArena) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		size := arenaChunk
		if a.buf == nil {
			size = arenaChunk / 4
		}
		if len(b) > size/2 {
			return string(b)
		}
		a.buf = make([]byte, 0, size)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return unsafe.String(&a.buf[start], len(b))
}

// annotate returns err, which came from decoding part of the request, as
// a bad request with a prefix naming that part. Errors that already wrap
// ErrBadRequest (malformed JSON, the value limit) are returned as they are.
func annotate(err error, prefix string) error {
	if errors.Is(err, ErrBadRequest) {
		return err
	}
	return fmt.Errorf("%w: %s%w", ErrBadRequest, prefix, err)
}

// decode decodes the request object, then checks what needs all of it:
// that "inputs" was given, that names are unique and that every binary
// byte belongs to an input.
func (d *requestDecoder) decode() (*InferRequest, error) {
	s := &d.s
	s.ws()
	if s.kind() != kindObject {
		k, err := s.wrongKind()
		if err == nil {
			err = s.end()
		}
		if err != nil {
			return nil, err
		}
		return nil, badf("the request must be a JSON object, got %s", k)
	}
	d.one = new(requestOne)
	req := &d.one.req
	req.Inputs = d.one.in[:0]
	d.req = req
	var seenID, seenParams, seenInputs, seenOutputs bool
	if err := s.open(); err != nil {
		return nil, err
	}
	for more, err := s.next('}', true); more || err != nil; more, err = s.next('}', false) {
		if err != nil {
			return nil, err
		}
		k, err := s.key()
		if err != nil {
			return nil, err
		}
		seen := (*bool)(nil)
		switch string(k) {
		case "id":
			seen = &seenID
		case "parameters":
			seen = &seenParams
		case "inputs":
			seen = &seenInputs
		case "outputs":
			seen = &seenOutputs
		}
		switch {
		case seen == nil || *seen:
			err = s.skip(false)
		case seen == &seenID:
			err = d.id()
		case seen == &seenParams:
			err = d.requestParams()
		case seen == &seenInputs:
			err = d.inputs()
		default:
			err = d.outputs()
		}
		if err != nil {
			return nil, err
		}
		if seen != nil {
			*seen = true
		}
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	if !seenInputs {
		return nil, badf(`the request has no "inputs"`)
	}
	if req.InputParams != nil {
		req.InputParams = slices.Grow(req.InputParams, len(req.Inputs)-len(req.InputParams))[:len(req.Inputs)]
	}
	if name, dup := duplicate(len(req.Inputs), func(i int) string { return req.Inputs[i].Name }); dup {
		return nil, badf("input %q appears more than once", name)
	}
	if d.off != len(d.bin) {
		return nil, badf("%d bytes of binary data after the JSON header belong to no input (binary_data_size values add up to %d)", len(d.bin)-d.off, d.off)
	}
	if name, dup := duplicate(len(req.Outputs), func(i int) string { return req.Outputs[i].Name }); dup {
		return nil, badf("output %q is requested more than once", name)
	}
	return req, nil
}

// end checks that only whitespace follows the request.
func (s *scanner) end() error {
	s.ws()
	if s.pos < len(s.js) {
		return s.syntaxErr(s.pos, "data after the request object")
	}
	return nil
}

// id decodes the request's "id".
func (d *requestDecoder) id() error {
	s := &d.s
	if s.kind() != kindString {
		k, err := s.wrongKind()
		if err != nil {
			return err
		}
		return badf(`"id" must be a string, got %s`, k)
	}
	b, err := s.str()
	if err != nil {
		return err
	}
	d.req.ID = d.strs.str(b)
	return nil
}

// requestParams decodes the request's "parameters".
func (d *requestDecoder) requestParams() error {
	m, special, err := d.params(paramBinaryOutput)
	if err != nil {
		return annotate(err, "request ")
	}
	d.req.Params = m
	if special >= 0 {
		v, k, err := d.boolAt(special)
		if err != nil {
			return err
		}
		if k != kindBool {
			return badf("request parameter %s must be a boolean, got %s", paramBinaryOutput, k)
		}
		d.req.BinaryOutput = v
	}
	return nil
}

// inputs decodes the "inputs" array.
func (d *requestDecoder) inputs() error {
	s := &d.s
	if s.kind() != kindArray {
		k, err := s.wrongKind()
		if err != nil {
			return err
		}
		return badf(`"inputs" must be an array, got %s`, k)
	}
	if err := s.open(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		more, err := s.next(']', i == 0)
		if err != nil || !more {
			return err
		}
		if s.kind() != kindObject {
			k, err := s.wrongKind()
			if err != nil {
				return err
			}
			return badf("input %d must be an object, got %s", i, k)
		}
		d.req.Inputs = append(d.req.Inputs, tensor.Tensor{})
		if err := d.input(i); err != nil {
			return err
		}
	}
}

// inputMembers are the values of an input object's members.
type inputMembers struct {
	name, datatype, shape, params, data span
}

// input decodes the input object at s.pos into d.req.Inputs[i]. The name,
// datatype, shape and parameters are decoded once all of them were seen
// (their errors name the input); "data" is decoded where it stands when it
// comes after name, datatype and shape, as it usually does, and otherwise
// skipped and decoded from its span at the end of the object.
func (d *requestDecoder) input(i int) error {
	s := &d.s
	t := &d.req.Inputs[i]
	var (
		f          inputMembers
		n          int64
		binSize    = int64(-1)
		ready      bool // name, datatype and shape are decoded
		paramsDone bool
		dataDone   bool
	)
	if err := s.open(); err != nil {
		return err
	}
	for more, err := s.next('}', true); more || err != nil; more, err = s.next('}', false) {
		if err != nil {
			return err
		}
		k, err := s.key()
		if err != nil {
			return err
		}
		var sp *span
		switch string(k) {
		case "name":
			sp = &f.name
		case "datatype":
			sp = &f.datatype
		case "shape":
			sp = &f.shape
		case "parameters":
			sp = &f.params
		case "data":
			sp = &f.data
		}
		start := s.pos
		switch {
		case sp == nil || sp.present():
			err = s.skip(false)
		case sp == &f.data && f.name.present() && f.datatype.present() && f.shape.present():
			if n, err = d.inputHeader(i, &f); err != nil {
				return err
			}
			ready = true
			if f.params.present() {
				if binSize, err = d.inputParams(i, f.params); err != nil {
					return err
				}
				paramsDone = true
			}
			if binSize >= 0 {
				err = s.skip(true) // an error below
				break
			}
			if t.Data, err = s.decodeData(t.DataType, t.Shape, n, len(s.js)-s.pos); err != nil {
				return annotate(err, fmt.Sprintf("input %q: ", t.Name))
			}
			dataDone = true
		default:
			err = s.skip(true)
		}
		if err != nil {
			return err
		}
		if sp != nil && !sp.present() {
			*sp = span{start, s.pos}
		}
	}
	var err error
	if !ready {
		if n, err = d.inputHeader(i, &f); err != nil {
			return err
		}
	}
	if f.params.present() && !paramsDone {
		if binSize, err = d.inputParams(i, f.params); err != nil {
			return err
		}
	}
	name, dt, shape := t.Name, t.DataType, t.Shape
	if binSize < 0 {
		if !f.data.present() {
			return badf(`input %q has no "data" and no %s`, name, paramBinarySize)
		}
		if !dataDone {
			m := s.seek(f.data.start)
			t.Data, err = s.decodeData(dt, shape, n, f.data.end-f.data.start)
			s.restore(m)
			if err != nil {
				return annotate(err, fmt.Sprintf("input %q: ", name))
			}
		}
		return nil
	}
	switch {
	case !d.header:
		return badf("input %q has %s but the request has no Inference-Header-Content-Length header", name, paramBinarySize)
	case f.data.present():
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

// inputHeader decodes input i's name, datatype and shape, returning its
// element count.
func (d *requestDecoder) inputHeader(i int, f *inputMembers) (int64, error) {
	t := &d.req.Inputs[i]
	name, err := d.nameAt(f.name, "input", i)
	if err != nil {
		return 0, err
	}
	t.Name = name
	if !f.datatype.present() {
		return 0, badf(`input %q has no "datatype"`, name)
	}
	if t.DataType, err = d.datatypeAt(f.datatype, name); err != nil {
		return 0, err
	}
	if !f.shape.present() {
		return 0, badf(`input %q has no "shape"`, name)
	}
	var n int64
	t.Shape, n, err = d.shapeAt(f.shape, name)
	return n, err
}

// nameAt decodes the "name" of input or output i.
func (d *requestDecoder) nameAt(sp span, what string, i int) (string, error) {
	if !sp.present() {
		return "", badf(`%s %d has no "name"`, what, i)
	}
	s := &d.s
	m := s.seek(sp.start)
	defer s.restore(m)
	if s.kind() != kindString {
		k, err := s.wrongKind()
		if err != nil {
			return "", err
		}
		return "", badf(`%s %d: "name" must be a string, got %s`, what, i, k)
	}
	b, err := s.str()
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", badf("%s %d has an empty name", what, i)
	}
	return d.strs.str(b), nil
}

// datatypeAt decodes the "datatype" of the input called name.
func (d *requestDecoder) datatypeAt(sp span, name string) (tensor.DataType, error) {
	s := &d.s
	m := s.seek(sp.start)
	defer s.restore(m)
	if s.kind() != kindString {
		k, err := s.wrongKind()
		if err != nil {
			return 0, err
		}
		return 0, badf(`input %q: "datatype" must be a string, got %s`, name, k)
	}
	b, err := s.str()
	if err != nil {
		return 0, err
	}
	for _, dt := range tensor.AllDataTypes {
		if dt.String() == string(b) {
			return dt, nil
		}
	}
	return 0, badf("input %q has unknown datatype %q", name, b)
}

// shapeAt decodes and validates an input's shape, returning its element
// count.
func (d *requestDecoder) shapeAt(sp span, name string) (tensor.Shape, int64, error) {
	s := &d.s
	m := s.seek(sp.start)
	defer s.restore(m)
	if s.kind() != kindArray {
		k, err := s.wrongKind()
		if err != nil {
			return nil, 0, err
		}
		return nil, 0, badf(`input %q: "shape" must be an array of integers, got %s`, name, k)
	}
	var (
		dims  [maxRank]int64
		rank  int
		first error // the first bad dimension, reported unless the rank is
	)
	if err := s.open(); err != nil {
		return nil, 0, err
	}
	for more, err := s.next(']', true); more || err != nil; more, err = s.next(']', false) {
		if err != nil {
			return nil, 0, err
		}
		j := rank
		rank++
		if j >= maxRank || first != nil {
			if err := s.skip(true); err != nil {
				return nil, 0, err
			}
			continue
		}
		neg, mag, err := s.integer()
		switch {
		case errors.Is(err, ErrBadRequest):
			return nil, 0, err
		case err != nil:
			first = badf("input %q: shape dimension %d: %v", name, j, err)
		case neg && mag != 0:
			first = badf("input %q: shape dimension %d is negative (-%d)", name, j, mag)
		case mag > math.MaxInt64:
			first = fmt.Errorf("%w: input %q: %w: shape dimension %d is %d", ErrBadRequest, name, tensor.ErrTooLarge, j, mag)
		default:
			dims[j] = int64(mag)
		}
	}
	if rank > maxRank {
		return nil, 0, badf("input %q: shape has %d dimensions, the limit is %d", name, rank, maxRank)
	}
	if first != nil {
		return nil, 0, first
	}
	shape := make(tensor.Shape, rank)
	copy(shape, dims[:rank])
	n, err := shape.Elements(d.lim.MaxElements)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: input %q: %w", ErrBadRequest, name, err)
	}
	return shape, n, nil
}

// inputParams decodes input i's parameters, returning its
// binary_data_size (-1 when absent).
func (d *requestDecoder) inputParams(i int, sp span) (int64, error) {
	s := &d.s
	m := s.seek(sp.start)
	defer s.restore(m)
	name := d.req.Inputs[i].Name
	params, special, err := d.params(paramBinarySize)
	if err != nil {
		return 0, annotate(err, fmt.Sprintf("input %q: ", name))
	}
	if params != nil {
		for len(d.req.InputParams) <= i {
			d.req.InputParams = append(d.req.InputParams, nil)
		}
		d.req.InputParams[i] = params
	}
	if special < 0 {
		return -1, nil
	}
	s.pos = special
	neg, mag, err := s.integer()
	if err != nil || (neg && mag != 0) || mag > math.MaxInt64 {
		return 0, badf("input %q: %s must be a non-negative integer", name, paramBinarySize)
	}
	return int64(mag), nil
}

// integer reads a number written as an integer.
func (s *scanner) integer() (neg bool, mag uint64, err error) {
	if s.kind() != kindNumber {
		k, err := s.wrongKind()
		if err != nil {
			return false, 0, err
		}
		return false, 0, fmt.Errorf("expected an integer, got %s", k)
	}
	raw, err := s.number()
	if err != nil {
		return false, 0, err
	}
	return tensor.ParseJSONInt(raw)
}

// outputs decodes the "outputs" array.
func (d *requestDecoder) outputs() error {
	s := &d.s
	if s.kind() != kindArray {
		k, err := s.wrongKind()
		if err != nil {
			return err
		}
		return badf(`"outputs" must be an array, got %s`, k)
	}
	if err := s.open(); err != nil {
		return err
	}
	for i := 0; ; i++ {
		more, err := s.next(']', i == 0)
		if err != nil || !more {
			return err
		}
		if s.kind() != kindObject {
			k, err := s.wrongKind()
			if err != nil {
				return err
			}
			return badf("output %d must be an object, got %s", i, k)
		}
		if d.req.Outputs == nil {
			d.req.Outputs = d.one.out[:0]
		}
		d.req.Outputs = append(d.req.Outputs, RequestedOutput{})
		if err := d.output(i); err != nil {
			return err
		}
	}
}

// output decodes the requested output object at s.pos into
// d.req.Outputs[i].
func (d *requestDecoder) output(i int) error {
	s := &d.s
	var name, params span
	if err := s.open(); err != nil {
		return err
	}
	for more, err := s.next('}', true); more || err != nil; more, err = s.next('}', false) {
		if err != nil {
			return err
		}
		k, err := s.key()
		if err != nil {
			return err
		}
		var sp *span
		switch string(k) {
		case "name":
			sp = &name
		case "parameters":
			sp = &params
		}
		start := s.pos
		if sp == nil || sp.present() {
			err = s.skip(false)
		} else {
			err = s.skip(true)
		}
		if err != nil {
			return err
		}
		if sp != nil && !sp.present() {
			*sp = span{start, s.pos}
		}
	}
	out := &d.req.Outputs[i]
	var err error
	if out.Name, err = d.nameAt(name, "output", i); err != nil {
		return err
	}
	if !params.present() {
		return nil
	}
	m := s.seek(params.start)
	defer s.restore(m)
	ps, special, err := d.params(paramBinary)
	if err != nil {
		return annotate(err, fmt.Sprintf("output %q: ", out.Name))
	}
	out.Params = ps
	if special >= 0 {
		v, k, err := d.boolAt(special)
		if err != nil {
			return err
		}
		if k != kindBool {
			return badf("output %q: %s must be a boolean, got %s", out.Name, paramBinary, k)
		}
		out.Binary, out.BinarySet = v, true
	}
	return nil
}

// params decodes the "parameters" object at s.pos. The parameter named
// special is left out of the map; the offset of its value (of the last,
// when repeated) is returned, or -1. The map is nil when no other
// parameter is present. Errors about the parameters do not wrap
// ErrBadRequest; malformed JSON does.
func (d *requestDecoder) params(special string) (map[string]Param, int, error) {
	s := &d.s
	if s.kind() != kindObject {
		k, err := s.wrongKind()
		if err != nil {
			return nil, -1, err
		}
		return nil, -1, fmt.Errorf(`"parameters" must be an object, got %s`, k)
	}
	var m map[string]Param
	sp := -1
	if err := s.open(); err != nil {
		return nil, -1, err
	}
	for more, err := s.next('}', true); more || err != nil; more, err = s.next('}', false) {
		if err != nil {
			return nil, -1, err
		}
		k, err := s.key()
		if err != nil {
			return nil, -1, err
		}
		if string(k) == special {
			sp = s.pos
			if err := s.skip(true); err != nil {
				return nil, -1, err
			}
			continue
		}
		key := d.strs.str(k)
		p, err := d.param()
		if err != nil {
			if errors.Is(err, ErrBadRequest) {
				return nil, -1, err
			}
			return nil, -1, fmt.Errorf("parameter %q %w", key, err)
		}
		if m == nil {
			m = make(map[string]Param)
		}
		m[key] = p
	}
	return m, sp, nil
}

// param decodes one parameter value.
func (d *requestDecoder) param() (Param, error) {
	s := &d.s
	switch s.kind() {
	case kindString:
		b, err := s.str()
		if err != nil {
			return Param{}, err
		}
		return StringParam(d.strs.str(b)), nil
	case kindNumber:
		raw, err := s.number()
		if err != nil {
			return Param{}, err
		}
		if valid, _ := tensor.ScanJSONNumber(raw); !valid {
			return Param{}, fmt.Errorf("is a malformed number %q", raw)
		}
		return Param{kind: ParamNumber, text: d.strs.str(raw)}, nil
	case kindBool:
		v, err := s.boolean()
		return BoolParam(v), err
	}
	k, err := s.wrongKind()
	if err != nil {
		return Param{}, err
	}
	return Param{}, fmt.Errorf("must be a string, number or boolean, got %s", k)
}

// boolAt reads the value at offset off, scanned before, as a boolean; k
// is its kind.
func (d *requestDecoder) boolAt(off int) (v bool, k kind, err error) {
	s := &d.s
	m := s.seek(off)
	defer s.restore(m)
	if k = s.kind(); k != kindBool {
		return false, k, nil
	}
	v, err = s.boolean()
	return v, k, err
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
