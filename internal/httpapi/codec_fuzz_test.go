package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/tensor"
)

// FuzzDecodeInferRequest decodes arbitrary bodies in the JSON and the
// binary-with-header forms. It must never panic; an accepted request must
// hold valid tensors within the limits that re-encode (as binary, and as
// JSON when they can be) to a request decoding to the same tensors.
func FuzzDecodeInferRequest(f *testing.F) {
	const limit = 1 << 12
	f.Add([]byte(`{"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}]}`), -1)
	f.Add([]byte(`{"inputs":[{"name":"s","datatype":"BYTES","shape":[1],"data":["hi"]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`), -1)
	f.Add([]byte(`{"parameters":{"binary_data_output":true,"priority":1},"inputs":[{"name":"b","datatype":"BOOL","shape":[],"data":true}]}`), -1)
	bin := `{"inputs":[{"name":"x","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}`
	f.Add(append([]byte(bin), 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 'z'), len(bin))
	f.Add(append([]byte(bin), 1, 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 'z'), len(bin))
	f.Add([]byte(`{"inputs":[{"name":"h","datatype":"FP16","shape":[1,1],"parameters":{"binary_data_size":2}}]}xx`), 88)
	f.Add([]byte(`{"inputs":[]}`), 0)
	f.Add([]byte(`{"inputs":[{"name":"x","datatype":"UINT8","shape":[3],"data":[1,2,3]}]}`), 1000)
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		req, err := DecodeInferRequest(body, headerLen, Limits{MaxElements: limit})
		if err != nil {
			return
		}
		binary := make([]bool, len(req.Inputs))
		jsonOK := true
		for i := range req.Inputs {
			in := &req.Inputs[i]
			if err := in.Validate(limit); err != nil {
				t.Fatalf("accepted an invalid input: %v", err)
			}
			binary[i] = true
			if !utf8.ValidString(in.Name) {
				return // re-encoding would replace the invalid bytes
			}
			if _, err := tensor.AppendJSON(nil, in); err != nil {
				jsonOK = false
			}
		}
		check := func(form string, bin []bool) {
			b, hl := encodeRequest(t, "", req.Inputs, bin, "")
			again, err := DecodeInferRequest(b, hl, Limits{MaxElements: limit})
			if err != nil {
				t.Fatalf("%s re-encoding does not decode: %v\n%q", form, err, b)
			}
			sameTensors(t, again.Inputs, req.Inputs)
		}
		check("binary", binary)
		if jsonOK {
			check("JSON", nil)
		}
	})
}

// FuzzDecodeVsFastjson decodes arbitrary bodies with DecodeInferRequest
// and with refDecodeInferRequest, the fastjson-based decoder it replaced,
// and requires the same result: equal requests, or errors from both.
//
// The scanner is stricter than fastjson, so these differences are
// allowed, and only these:
//   - the reference accepts JSON that is not RFC 8259 JSON (fastjson
//     takes raw control characters and bad escapes in strings, and number
//     tokens such as 1-2 or NaN where nothing checks them); the scanner
//     rejects it;
//   - the reference accepts nesting up to fastjson's 300 levels, the
//     scanner up to maxDepth;
//   - bodies with a \u escape of an unpaired UTF-16 surrogate, or with a
//     repeated object key spelled with escapes, are not compared:
//     fastjson keeps such escapes as text (or merges them with the next
//     escape) where the scanner decodes U+FFFD as encoding/json does, and
//     its Get prefers a key spelled without escapes to an earlier one
//     spelled with them.
func FuzzDecodeVsFastjson(f *testing.F) {
	for _, seed := range diffSeeds {
		f.Add([]byte(seed), -1, uint8(0))
	}
	bin := `{"inputs":[{"name":"x","datatype":"INT32","shape":[2],"parameters":{"binary_data_size":8}},{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}`
	f.Add(append([]byte(bin), 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 'z'), len(bin), uint8(0))
	f.Add([]byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"outputs":[{"name":"y"}]}`), -1, uint8(12))
	f.Add([]byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]}],"outputs":[{"name":"y"}]}`), -1, uint8(13))
	f.Fuzz(func(t *testing.T, body []byte, headerLen int, maxValues uint8) {
		lim := Limits{MaxElements: 1 << 12, MaxJSONValues: int(maxValues)}
		got, err := DecodeInferRequest(body, headerLen, lim)
		want, refErr := refDecodeInferRequest(body, headerLen, lim)
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Fatalf("error does not wrap ErrBadRequest: %v", err)
		}
		js := body
		if headerLen > 0 && headerLen <= len(body) {
			js = body[:headerLen]
		}
		if ambiguousForFastjson(js) {
			return
		}
		switch {
		case err != nil && refErr != nil:
		case err != nil:
			if !json.Valid(js) || jsonDepth(js) > maxDepth {
				return // stricter than fastjson
			}
			t.Fatalf("scanner rejects what the reference accepts: %v\nbody %q", err, body)
		case refErr != nil:
			t.Fatalf("scanner accepts what the reference rejects: %v\nbody %q", refErr, body)
		default:
			if diff := requestDiff(got, want); diff != "" {
				t.Fatalf("requests differ: %s\nbody %q", diff, body)
			}
		}
	})
}

// diffSeeds start FuzzDecodeVsFastjson off with the request shapes and
// the corners of both decoders.
var diffSeeds = []string{
	`{"id":"a","inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]}]}`,
	`{"inputs":[{"data":[1,2,3,4],"name":"x","shape":[2,2],"datatype":"FP32"}],"id":"data first"}`,
	`{"outputs":[{"name":"o","parameters":{"binary_data":true,"k":1.5}}],"parameters":{"binary_data_output":false,"p":"v","q":-0,"r":1e3},"inputs":[{"name":"b","datatype":"BOOL","shape":[3],"data":[true,0,1]}]}`,
	`{"inputs":[{"name":"s","datatype":"BYTES","shape":[1,2],"data":[["a\"\\\/\b\f\n\r\t","\u00e9\ud83d\ude00"]]}]}`,
	`{"inputs":[{"name":"h","datatype":"FP16","shape":[4],"data":[65504,65519.99,"-Infinity",5.960464477539063e-8]},{"name":"g","datatype":"BF16","shape":[2],"data":[3.140625,"nan"]}]}`,
	`{"inputs":[{"name":"i","datatype":"INT8","shape":[3],"data":[-128,127,-0]},{"name":"u","datatype":"UINT64","shape":[1],"data":[18446744073709551615]},{"name":"l","datatype":"INT64","shape":[1],"data":-9223372036854775808}]}`,
	`{"inputs":[{"name":"d","datatype":"FP64","shape":[4],"data":[0.1,1e-320,1.7976931348623157e308,123456789012345678901234567890]}]}`,
	`{"inputs":[{"name":"f","datatype":"FP32","shape":[5],"data":[3.4028235e38,1.4e-45,16777217,0.30000001192092896,-1e-50]}]}`,
	`{"inputs":[{"name":"e","datatype":"FP32","shape":[0,3],"data":[]},{"name":"z","datatype":"UINT8","shape":[2,0],"data":[[],[]]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,NaN]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1-2]}],"parameters":{"a":01}}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2,3]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4],[5,6]]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[[[1]]]}]}`,
	`{"inputs":[{"name":"x","datatype":"INT32","shape":[],"data":7,"extra":{"deep":[1,{"a":null}]}}],"unknown":[true,false,null]}`,
	`{"inputs":[{"name":"x","name":"y","datatype":"INT32","shape":[1],"data":[1],"data":[2]}],"inputs":[]}`,
	`{"\u0069nputs":[{"n\u0061me":"x","datatype":"UINT16","shape":[1],"data":[65535]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4,"a":"b"}}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2]},{"name":"x","datatype":"FP32","shape":[1],"data":[3]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[99999999999999999999],"data":[1]}]}`,
	`{"inputs":[{"name":"x","datatype":"FP32","shape":[4096,4096],"data":[1]}]}`,
	` {"inputs" : [ { "name" : "x" , "datatype" : "FP32" , "shape" : [ 2 ] , "data" : [ 1 , 2 ] } ] } `,
	`{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":"\u0000"}],"id":"\ud800"}`,
}

// requestDiff describes how two decoded requests differ ("" if they do
// not).
func requestDiff(got, want *InferRequest) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("id %q, want %q", got.ID, want.ID)
	case got.BinaryOutput != want.BinaryOutput:
		return fmt.Sprintf("binary_data_output %v, want %v", got.BinaryOutput, want.BinaryOutput)
	case !reflect.DeepEqual(got.Params, want.Params):
		return fmt.Sprintf("parameters %v, want %v", got.Params, want.Params)
	case !reflect.DeepEqual(got.InputParams, want.InputParams):
		return fmt.Sprintf("input parameters %v, want %v", got.InputParams, want.InputParams)
	case !reflect.DeepEqual(got.Outputs, want.Outputs):
		return fmt.Sprintf("outputs %+v, want %+v", got.Outputs, want.Outputs)
	case len(got.Inputs) != len(want.Inputs):
		return fmt.Sprintf("%d inputs, want %d", len(got.Inputs), len(want.Inputs))
	}
	for i := range got.Inputs {
		g, w := &got.Inputs[i], &want.Inputs[i]
		if g.Name != w.Name || g.DataType != w.DataType || !g.Shape.Equal(w.Shape) || (g.Shape == nil) != (w.Shape == nil) ||
			!bytes.Equal(g.Data, w.Data) || (g.Data == nil) != (w.Data == nil) {
			return fmt.Sprintf("input %d = %q %s%v % x\nwant %q %s%v % x", i, g.Name, g.DataType, g.Shape, g.Data, w.Name, w.DataType, w.Shape, w.Data)
		}
	}
	return ""
}

// jsonDepth returns the deepest nesting of arrays and objects in js,
// strings skipped as countValues skips them.
func jsonDepth(js []byte) int {
	depth, deepest := 0, 0
	for i := 0; i < len(js); i++ {
		switch js[i] {
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		case '"':
			for i++; i < len(js) && js[i] != '"'; i++ {
				if js[i] == '\\' {
					i++
				}
			}
		}
	}
	return deepest
}

// ambiguousForFastjson reports whether js holds something the two
// decoders read differently by design (see FuzzDecodeVsFastjson): a \u
// escape of an unpaired surrogate, or a repeated object key when some key
// is spelled with escapes.
func ambiguousForFastjson(js []byte) bool {
	for i := 0; i+1 < len(js); i++ {
		if js[i] != '\\' {
			continue
		}
		if js[i+1] != 'u' {
			i++
			continue
		}
		r, ok := hex4(js[i+2:])
		switch {
		case !ok || !utf16.IsSurrogate(r):
		case r >= 0xdc00 || i+12 > len(js) || js[i+6] != '\\' || js[i+7] != 'u':
			return true
		default:
			r2, ok := hex4(js[i+8:])
			if !ok || r2 < 0xdc00 || r2 >= 0xe000 {
				return true
			}
			i += 6
		}
		i += 5
	}
	if bytes.IndexByte(js, '\\') < 0 {
		return false
	}
	v, err := fastjson.ParseBytes(js)
	return err == nil && repeatsKey(v)
}

// repeatsKey reports whether an object in v has a key twice.
func repeatsKey(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeArray:
		for _, e := range v.GetArray() {
			if repeatsKey(e) {
				return true
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		seen := map[string]bool{}
		repeated := false
		o.Visit(func(k []byte, e *fastjson.Value) {
			repeated = repeated || seen[string(k)] || repeatsKey(e)
			seen[string(k)] = true
		})
		return repeated
	}
	return false
}
