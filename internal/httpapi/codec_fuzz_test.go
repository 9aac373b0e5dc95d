package httpapi

import (
	"testing"
	"unicode/utf8"

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
