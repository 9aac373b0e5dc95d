package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

// oneInput returns a request with one input whose members are given as
// JSON text.
func oneInput(dt string, shape, data string) string {
	return `{"inputs":[{"name":"x","datatype":"` + dt + `","shape":` + shape + `,"data":` + data + `}]}`
}

// TestDecodeDataLikeDecodeJSON decodes tensor data with the scanner and
// with the reference (fastjson and tensor.DecodeJSON): the results, and
// for data with one fault the error messages, must be the same. The
// cases follow tensor.DecodeJSON's own tests.
func TestDecodeDataLikeDecodeJSON(t *testing.T) {
	tests := []struct {
		dt, shape, data string
		msg             string // the expected error, when the reference says something else
	}{
		{"BOOL", "[4]", `[true,false,1,0]`, ""},
		{"BOOL", "[1]", `[2]`, ""},
		{"BOOL", "[1]", `["true"]`, ""},
		{"BOOL", "[1]", `[nan]`, ""},
		{"BOOL", "[1]", `[null]`, ""},
		{"UINT8", "[3]", `[0,255,-0]`, ""},
		{"UINT8", "[1]", `[256]`, ""},
		{"UINT8", "[1]", `[-1]`, ""},
		{"INT8", "[2]", `[-128,127]`, ""},
		{"INT8", "[1]", `[-129]`, ""},
		{"INT16", "[2]", `[-32768,32767]`, ""},
		{"UINT16", "[1]", `[65536]`, ""},
		{"INT32", "[2]", `[-2147483648,2147483647]`, ""},
		{"INT32", "[1]", `[2147483648]`, ""},
		{"UINT32", "[1]", `[4294967295]`, ""},
		{"INT64", "[2]", `[-9223372036854775808,9223372036854775807]`, ""},
		{"INT64", "[1]", `[9223372036854775808]`, ""},
		{"UINT64", "[2]", `[18446744073709551615,12345678901234567890]`, ""},
		{"UINT64", "[1]", `[18446744073709551616]`, ""},
		{"INT32", "[1]", `[1.0]`, ""},
		{"INT64", "[1]", `[1e3]`, ""},
		{"INT64", "[1]", `[01]`, ""},
		{"INT64", "[1]", `["1"]`, ""},
		{"INT64", "[2]", `[1,null]`, ""},
		{"FP32", "[2]", `[0.1,16777217]`, ""},
		{"FP32", "[1]", `[-0]`, ""},
		{"FP32", "[1]", `[1e39]`, ""},
		{"FP32", "[3]", `[3.4028235e38,3.4028236e38,1e-46]`, ""},
		{"FP64", "[1]", `[1e309]`, ""},
		{"FP64", "[5]", `["NaN","Infinity","-Infinity","inf","-Inf"]`, ""},
		{"FP64", "[3]", `["+Infinity","INFINITY","\u004eaN"]`, ""},
		{"FP64", "[1]", `["-NaN"]`, ""},
		{"FP32", "[1]", `["1.5"]`, ""},
		{"FP32", "[1]", `[NaN]`, ""},
		{"FP32", "[1]", `[-Inf]`, ""},
		{"FP32", "[1]", `[1-2]`, ""},
		{"FP32", "[1]", `[.5]`, ""},
		{"FP32", "[1]", `[1.]`, ""},
		{"FP32", "[1]", `[1e]`, ""},
		{"FP32", "[1]", `[+1]`, ""},
		{"FP32", "[1]", `[true]`, ""},
		{"FP32", "[1]", `[{}]`, ""},
		{"FP16", "[5]", `[1,0.5,65504,-2,"NaN"]`, ""},
		{"FP16", "[1]", `[5.960464477539063e-8]`, ""},
		{"FP16", "[1]", `[65520]`, ""},
		{"FP16", "[1]", `[65519.99]`, ""},
		{"FP16", "[1]", `["-Infinity"]`, ""},
		{"FP16", "[3]", `[0.1,-0.333,1e-9]`, ""},
		{"BF16", "[3]", `[1,-0.5,3.140625]`, ""},
		{"BF16", "[2]", `[3.3895313892515355e38,1e30]`, ""},
		{"BF16", "[1]", `[3.4e38]`, ""},
		{"BYTES", "[3]", `["a","h\u00e9llo",""]`, ""},
		{"BYTES", "[1,2]", `[["x","yz"]]`, ""},
		{"BYTES", "[1]", `"solo"`, ""},
		{"BYTES", "[2]", `["a",1]`, ""},
		{"BYTES", "[1]", "[\"\xff\"]", ""},
		{"BYTES", "[1]", `["\ud83d\ude00\n\t\"\\\/"]`, ""},
		{"BYTES", "[2]", `["a"]`, ""},
		{"FP32", "[2,4]", `[[1,2,3,4],[5,6,7]]`, ""},
		{"FP32", "[3,1]", `[[1],[2]]`, ""},
		{"FP32", "[1,1]", `[[[1]]]`, ""},
		{"FP32", "[2,2]", `[[1,2],3]`, ""},
		{"FP32", "[1]", `[[1]]`, ""},
		{"FP32", "[2,1]", `[1,[2]]`, ""},
		{"FP32", "[2,2]", `[1,2,3]`, ""},
		{"FP32", "[2]", `1`, ""},
		{"FP32", "[1]", `{"a":1}`, ""},
		{"FP32", "[1]", `null`, ""},
		{"FP32", "[]", `2.5`, ""},
		{"FP32", "[]", `[2.5]`, ""},
		{"FP32", "[1,1,1]", `[[[0.25]]]`, ""},
		{"FP32", "[2,0]", `[[],[]]`, ""},
		{"FP32", "[0,2]", `[]`, ""},
		{"FP32", "[2,0]", `[]`, ""},
		{"FP32", "[0,2]", `[[1,2]]`, "expected 0 elements at dimension 0, got at least 1"},
		{"FP32", "[2]", `[1,2,3]`, "expected 2 elements, got at least 3"},
		{"FP32", "[2,2]", `[[1,2],[3,4],[5,6]]`, "expected 2 elements at dimension 0, got at least 3"},
		{"FP32", "[2,2]", `[[1,2,3],[4,5]]`, "expected 2 elements at dimension 1, got at least 3"},
		{"INT32", "[2,3]", ` [ [ 1 , 2 , 3 ] , [ 4 , 5 , 6 ] ] `, ""},
		{"FP32", "[4]", "[1,\n2,\t3\r,4]", ""},
	}
	for _, tc := range tests {
		for _, order := range []string{"data last", "data first"} {
			body := oneInput(tc.dt, tc.shape, tc.data)
			if order == "data first" {
				body = `{"inputs":[{"data":` + tc.data + `,"name":"x","datatype":"` + tc.dt + `","shape":` + tc.shape + `}]}`
			}
			t.Run(tc.dt+tc.shape+tc.data+"/"+order, func(t *testing.T) {
				got, err := DecodeInferRequest([]byte(body), -1, Limits{})
				want, refErr := refDecodeInferRequest([]byte(body), -1, Limits{})
				switch {
				case err == nil && refErr == nil:
					if diff := requestDiff(got, want); diff != "" {
						t.Fatal(diff)
					}
				case err == nil || refErr == nil:
					t.Fatalf("err %v, reference err %v", err, refErr)
				case tc.msg != "":
					if !strings.Contains(err.Error(), tc.msg) || !errors.Is(err, tensor.ErrInvalid) {
						t.Fatalf("err %q, want it to contain %q", err, tc.msg)
					}
				case err.Error() != refErr.Error() && !bothMalformed(err, refErr):
					t.Fatalf("err %q\nreference %q", err, refErr)
				}
				if err != nil && (!errors.Is(err, ErrBadRequest) || errors.Is(err, tensor.ErrInvalid) != errors.Is(refErr, tensor.ErrInvalid)) {
					t.Fatalf("err %v wraps the wrong sentinels (reference: %v)", err, refErr)
				}
			})
		}
	}
}

// TestDecodeInferRequestLikeReference holds whole requests, valid and
// invalid with one fault each, to the reference decoder: the same request
// or the same error message.
func TestDecodeInferRequestLikeReference(t *testing.T) {
	tests := []struct {
		name, body string
		headerLen  int // -1, or the length of the JSON before the "|" in body
	}{
		{"fields", `{"id":"r\u00e9q","parameters":{"a":1,"b":"s","c":false,"binary_data_output":true},"inputs":[{"name":"x","datatype":"INT8","shape":[1],"parameters":{"p":2.5},"data":[1]}],"outputs":[{"name":"y","parameters":{"binary_data":false,"k":3}},{"name":"z"}]}`, -1},
		{"order", `{"outputs":[{"parameters":{"binary_data":true},"name":"y"}],"inputs":[{"parameters":{"p":"q"},"shape":[2],"data":[1,2],"datatype":"UINT8","name":"x"}],"parameters":{"binary_data_output":false},"id":"i"}`, -1},
		{"unknown members", `{"x":{"a":[1,{"b":null}]},"inputs":[{"name":"x","datatype":"BOOL","shape":[1],"data":[true],"junk":[[],{}]}],"outputs":[{"name":"y","more":"z"}],"y":-1.5e3}`, -1},
		{"repeated members", `{"id":"a","id":"b","inputs":[{"name":"x","name":"y","datatype":"INT8","shape":[1],"shape":[2],"data":[1],"data":[1,2]}],"inputs":[]}`, -1},
		{"repeated parameter", `{"parameters":{"a":1,"a":"two","binary_data_output":"x","binary_data_output":true},"inputs":[]}`, -1},
		{"escaped keys", `{"\u0069d":"e","inputs":[{"n\u0061me":"x","datatype":"INT8","shape":[1],"d\u0061ta":[3]}]}`, -1},
		{"empty", `{"inputs":[],"outputs":[],"parameters":{}}`, -1},
		{"many inputs", `{"inputs":[` + strings.Repeat(`{"name":"a","datatype":"INT8","shape":[1],"data":[1]},`, 3) + `{"name":"b","datatype":"INT8","shape":[1],"parameters":{"q":1},"data":[1]}]}`, -1},
		{"binary", `{"inputs":[{"name":"x","datatype":"INT16","shape":[2],"parameters":{"binary_data_size":4}}]}|` + "\x01\x00\x02\x00", 0},
		{"binary before shape", `{"inputs":[{"parameters":{"binary_data_size":4},"name":"x","datatype":"INT16","shape":[2]}]}|` + "\x01\x00\x02\x00", 0},
		{"data and binary", `{"inputs":[{"name":"x","datatype":"INT16","shape":[2],"parameters":{"binary_data_size":4},"data":[1,2]}]}|` + "\x01\x00\x02\x00", 0},
		{"data then binary", `{"inputs":[{"name":"x","datatype":"INT16","shape":[2],"data":[1,2],"parameters":{"binary_data_size":4}}]}|` + "\x01\x00\x02\x00", 0},
		{"binary size not integer", `{"inputs":[{"name":"x","datatype":"INT16","shape":[2],"parameters":{"binary_data_size":4.0}}]}|` + "\x01\x00\x02\x00", 0},
		{"binary size NaN", `{"inputs":[{"name":"x","datatype":"INT16","shape":[2],"parameters":{"binary_data_size":NaN}}]}|` + "\x01\x00\x02\x00", 0},
		{"parameter NaN", `{"parameters":{"a":NaN},"inputs":[]}`, -1},
		{"parameter 01", `{"parameters":{"a":01},"inputs":[]}`, -1},
		{"parameter -", `{"parameters":{"a":-},"inputs":[]}`, -1},
		{"input parameter inf", `{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"parameters":{"a":-inf},"data":[1]}]}`, -1},
		{"input parameter array", `{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"parameters":{"a":[]},"data":[1]}]}`, -1},
		{"output parameters null", `{"inputs":[],"outputs":[{"name":"y","parameters":null}]}`, -1},
		{"output binary number", `{"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":1}}]}`, -1},
		{"output empty name", `{"inputs":[],"outputs":[{"name":""}]}`, -1},
		{"output name null", `{"inputs":[],"outputs":[{"name":null}]}`, -1},
		{"shape NaN", oneInput("FP32", "[NaN]", "[1]"), -1},
		{"shape fraction", oneInput("FP32", "[2.0]", "[1,2]"), -1},
		{"shape -0", oneInput("FP32", "[-0]", "[]"), -1},
		{"shape 65 dims with a bad one", oneInput("FP32", "["+strings.Repeat("1,", 64)+`"x"]`, "[1]"), -1},
		{"shape zero and huge", oneInput("FP32", "[0,9223372036854775807]", "[]"), -1},
		{"shape over limit", oneInput("FP32", "[4097]", "[1]"), -1},
		{"datatype escaped", oneInput(`F\u005032`, "[1]", "[1]"), -1},
		{"datatype unknown", oneInput(`FP8`, "[1]", "[1]"), -1},
		{"name escaped", `{"inputs":[{"name":"\"x\"","datatype":"INT8","shape":[1],"data":[1]}]}`, -1},
		{"no data", `{"inputs":[{"name":"x","datatype":"INT8","shape":[1]}]}`, -1},
		{"data null", oneInput("INT8", "[1]", "null"), -1},
		{"input array", `{"inputs":[[]]}`, -1},
		{"inputs string", `{"inputs":"x"}`, -1},
		{"id object", `{"id":{},"inputs":[]}`, -1},
		{"top-level string", `"x"`, -1},
		{"top-level number", `7`, -1},
		{"top-level null", `null`, -1},
		{"top-level true", `true`, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := Limits{MaxElements: 1 << 12}
			body, headerLen := tc.body, tc.headerLen
			if headerLen >= 0 {
				headerLen = strings.Index(body, "|")
				body = body[:headerLen] + body[headerLen+1:]
			}
			got, err := DecodeInferRequest([]byte(body), headerLen, lim)
			want, refErr := refDecodeInferRequest([]byte(body), headerLen, lim)
			switch {
			case err == nil && refErr == nil:
				if diff := requestDiff(got, want); diff != "" {
					t.Fatal(diff)
				}
			case err == nil || refErr == nil:
				t.Fatalf("err %v, reference err %v", err, refErr)
			case err.Error() != refErr.Error() && !bothMalformed(err, refErr):
				t.Fatalf("err %q\nreference %q", err, refErr)
			}
		})
	}
}

// bothMalformed reports whether both errors are about malformed JSON,
// which the decoders word differently.
func bothMalformed(err, refErr error) bool {
	const prefix = "bad request: malformed JSON: "
	return strings.HasPrefix(err.Error(), prefix) && strings.HasPrefix(refErr.Error(), prefix)
}

// TestDecodeInferRequestStrict: the scanner rejects what is not JSON,
// also in members it does not use, where fastjson was lenient.
func TestDecodeInferRequestStrict(t *testing.T) {
	valid := `{"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[1]}],"extra":%s}`
	tests := []struct {
		name, extra string
		msg         string
	}{
		{"lenient number", `1-2`, "invalid number"},
		{"NaN token", `NaN`, "invalid number"},
		{"leading zero", `01`, "invalid number"},
		{"bare minus", `-`, "expected a value"},
		{"trailing dot", `[1.]`, "invalid number"},
		{"control character", "\"a\tb\"", "control character"},
		{"bad escape", `"\x"`, "invalid escape"},
		{"short unicode escape", `"\u12"`, `invalid \u escape`},
		{"trailing comma", `[1,]`, "expected a value"},
		{"object trailing comma", `{"a":1,}`, "expected a string key"},
		{"missing colon", `{"a" 1}`, "expected ':'"},
		{"single quotes", `'a'`, "expected a value"},
		{"tru", `tru`, "expected true"},
		{"nul", `nul`, "expected a value"},
		{"unclosed", `[1`, "expected ',' or ']', found '}'"},
		{"cut short", `[1,`, "expected a value, found '}'"},
		{"unclosed string", `"abc`, "unexpected end of input"},
		{"too deep", strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), fmt.Sprintf("deeper than %d levels", maxDepth)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(valid, tc.extra)
			_, err := DecodeInferRequest([]byte(body), -1, Limits{})
			if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrBadRequest containing %q", err, tc.msg)
			}
		})
	}
	// The deepest nesting allowed.
	deep := fmt.Sprintf(valid, strings.Repeat("[", maxDepth-1)+strings.Repeat("]", maxDepth-1))
	if _, err := DecodeInferRequest([]byte(deep), -1, Limits{}); err != nil {
		t.Fatalf("nesting of %d levels: %v", maxDepth, err)
	}
}

// TestSkipLikeJSONValid: skip accepts exactly the JSON values
// encoding/json accepts.
func TestSkipLikeJSONValid(t *testing.T) {
	tests := []string{
		`0`, `-0`, `1.5e+3`, `1E-3`, `-12.0`, `01`, `1.`, `.1`, `-`, `+1`, `1e`, `1e+`, `0x1`, `NaN`, `Infinity`,
		`""`, `"\""`, `"\\"`, `"\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"\ud800"`, `"\u12g4"`, `"\a"`, "\"\x01\"", "\"\xff\"", `"`,
		`true`, `false`, `null`, `truth`, `nulll`, `True`,
		`[]`, `[ ]`, `[1,2]`, `[1,,2]`, `[,1]`, `[1 2]`, `[[[]]]`, `[[]`, `]`,
		`{}`, `{"a":1}`, `{"a":1,"b":[{}]}`, `{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `{"a":1}}`,
		" \t\n\r[ 1 , { \"a\" : [ ] } ] \n",
	}
	for _, js := range tests {
		t.Run(js, func(t *testing.T) {
			s := scanner{js: []byte(js), values: 1, maxValues: math.MaxInt}
			s.ws()
			err := s.skip(false)
			if err == nil {
				err = s.end()
			}
			if want := json.Valid([]byte(js)); (err == nil) != want {
				t.Fatalf("skip: %v; json.Valid: %v", err, want)
			}
		})
	}
}

// TestUnescape decodes strings as encoding/json does, lone surrogates
// becoming U+FFFD.
func TestUnescape(t *testing.T) {
	tests := []string{
		`""`, `"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u0000\u001f\u007f"`, `"\u00e9\u20AC"`, `"\ud83d\ude00"`,
		`"\ud800"`, `"\udc00"`, `"\ud800x"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\udbff\udfff"`,
		`"a\u0062c"`, "\"é日本\"", "\"\xff\xfe\"",
	}
	for _, js := range tests {
		t.Run(js, func(t *testing.T) {
			s := scanner{js: []byte(js)}
			got, err := s.str()
			if err != nil {
				t.Fatal(err)
			}
			var want string
			if err := json.Unmarshal([]byte(js), &want); err != nil {
				t.Fatal(err)
			}
			if string([]rune(string(got))) != want { // invalid bytes to U+FFFD, one each

				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

// TestParseNumberLikeStrconv: the fast paths give strconv.ParseFloat's
// result, bit for bit, whenever they claim a result.
func TestParseNumberLikeStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cases := []string{
		"0", "-0", "0.0", "-0.0e5", "1", "0.5", "0.1", "0.30000001192092896", "16777216", "16777217", "16777219",
		"9007199254740993", "1e22", "1e23", "1e-22", "3.4028235e38", "1.4e-45", "2.5e-8", "123456789", "0.000123456789",
		"1234567890123456789", "12345678901234567890", "1.2345678901234567890123", "100000000000000000000000",
		"0.00000000000000000000000000001", "4.0000002", "1.00000017881393432617187500", "1.000000178813934326171875",
		"33554431e-1", "1e-10", "7e-11", "8388609.5",
	}
	for range 20000 {
		switch r.IntN(4) {
		case 0:
			cases = append(cases, strconv.FormatFloat(float64(math.Float32frombits(r.Uint32())), 'g', -1, 32))
		case 1:
			cases = append(cases, strconv.FormatFloat(r.NormFloat64()*math.Pow(10, float64(r.IntN(40)-20)), 'g', -1, 64))
		case 2:
			cases = append(cases, strconv.FormatFloat(r.Float64(), 'f', r.IntN(12), 64))
		default: // midpoints of float32s, written exactly
			f := float64(math.Float32frombits(r.Uint32()&0x7fffffff)) * (1 + 1.0/(1<<24))
			cases = append(cases, strconv.FormatFloat(f, 'g', -1, 64))
		}
	}
	for _, c := range cases {
		n, ok := parseNumber([]byte(c), 0)
		if valid, integer := tensor.ScanJSONNumber([]byte(c)); !ok || n.end != len(c) || n.integer() != integer || !valid {
			if strings.ContainsAny(c, "NI") { // NaN or Inf from the generators
				continue
			}
			t.Fatalf("parseNumber(%q) = %+v, %v", c, n, ok)
		}
		for _, bits := range []int{32, 64} {
			f, exact := n.exactFloat(bits)
			if !exact {
				continue
			}
			want, err := strconv.ParseFloat(c, bits)
			if err != nil || math.Float64bits(f) != math.Float64bits(want) {
				t.Fatalf("exactFloat(%q, %d) = %v (%#x), strconv says %v (%#x), %v", c, bits, f, math.Float64bits(f), want, math.Float64bits(want), err)
			}
		}
	}
	for _, bad := range []string{"", "-", "+1", "01", "1.", ".5", "1e", "1e+", "1-2", "1.5.5", "0x10", "NaN", "-Inf", "1E5e"} {
		if n, ok := parseNumber([]byte(bad), 0); ok && n.end == len(bad) {
			t.Errorf("parseNumber(%q) accepted it", bad)
		}
	}
}

// TestDecodeDataStopsAtFirstExtraElement: data longer than its shape is
// rejected at the first extra element, before the rest (here malformed)
// is read.
func TestDecodeDataStopsAtFirstExtraElement(t *testing.T) {
	tests := []struct{ dt, shape, data, msg string }{
		{"FP32", "[2]", `[1,2,3,@@@`, "expected 2 elements, got at least 3"},
		{"INT64", "[2]", `[1,2,"x",@@@`, "expected 2 elements, got at least 3"},
		{"BOOL", "[1]", `[true,@@@`, "expected 1 elements, got at least 2"},
		{"BYTES", "[1]", `["a","b",@@@`, "expected 1 elements, got at least 2"},
		{"FP32", "[1,2]", `[[1,2],@@@`, "expected 1 elements at dimension 0, got at least 2"},
		{"FP32", "[1,2]", `[[1,2,3,@@@`, "expected 2 elements at dimension 1, got at least 3"},
	}
	for _, tc := range tests {
		t.Run(tc.dt+tc.data, func(t *testing.T) {
			body := oneInput(tc.dt, tc.shape, tc.data)
			_, err := DecodeInferRequest([]byte(body), -1, Limits{})
			if !errors.Is(err, tensor.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want tensor.ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

// TestDecodeDataAllocationBound: a short request claiming a large shape
// cannot make the decoder allocate the shape's storage.
func TestDecodeDataAllocationBound(t *testing.T) {
	tests := []struct{ name, body string }{
		{"fp64 flat", oneInput("FP64", "[8000000]", "[1]")},
		{"fp64 nested", oneInput("FP64", "[4000,2000]", "[[1]]")},
		{"int64 data first", `{"inputs":[{"data":[1,2,3],"name":"x","datatype":"INT64","shape":[8000000]}]}`},
		{"bytes", oneInput("BYTES", "[8000000]", `["a"]`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := DecodeInferRequest([]byte(tc.body), -1, Limits{MaxElements: 1 << 23})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tensor.ErrInvalid) {
				t.Fatalf("err = %v, want tensor.ErrInvalid", err)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
				t.Fatalf("decoding a %d-byte request allocated %d bytes", len(tc.body), n)
			}
		})
	}
}

// TestMaxJSONValuesCountsLikeCountValues: the value limit is enforced
// while scanning, with the count countValues gives for valid JSON.
func TestMaxJSONValuesCountsLikeCountValues(t *testing.T) {
	bodies := []string{
		`{"inputs":[]}`,
		oneInput("FP32", "[2,3]", "[[1,2,3],[4,5,6]]"),
		`{"id":"a,[{","parameters":{"a":1,"b":"]"},"inputs":[{"name":"x","datatype":"BYTES","shape":[2],"data":["[",","]}],"outputs":[{"name":"y"},{"name":"z","parameters":{}}],"u":{"v":[{},[]]}}`,
		`{"inputs":[{"data":[1,2,3,4,5,6,7,8],"name":"x","datatype":"INT8","shape":[8]}]}`,
	}
	for _, body := range bodies {
		t.Run(body, func(t *testing.T) {
			n := countValues([]byte(body))
			if _, err := DecodeInferRequest([]byte(body), -1, Limits{MaxJSONValues: n}); err != nil && errors.Is(err, tensor.ErrTooLarge) {
				t.Fatalf("at the limit of %d values: %v", n, err)
			}
			_, err := DecodeInferRequest([]byte(body), -1, Limits{MaxJSONValues: n - 1})
			if !errors.Is(err, ErrBadRequest) || !errors.Is(err, tensor.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("about %d values, the limit is %d", n, n-1)) {
				t.Fatalf("over the limit: err = %v", err)
			}
		})
	}
}

// TestDecodeInferRequestKeyOrder: an input's members may come in any
// order.
func TestDecodeInferRequestKeyOrder(t *testing.T) {
	members := []string{`"name":"x"`, `"datatype":"FP32"`, `"shape":[2,2]`, `"data":[[1,2],[3,4]]`, `"parameters":{"p":1}`}
	want, err := DecodeInferRequest([]byte(`{"inputs":[{`+strings.Join(members, ",")+`}]}`), -1, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var permute func(k int)
	permute = func(k int) {
		if k == len(members) {
			body := `{"inputs":[{` + strings.Join(members, ",") + `}]}`
			got, err := DecodeInferRequest([]byte(body), -1, Limits{})
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if diff := requestDiff(got, want); diff != "" {
				t.Fatalf("%s: %s", body, diff)
			}
			return
		}
		for i := k; i < len(members); i++ {
			members[k], members[i] = members[i], members[k]
			permute(k + 1)
			members[k], members[i] = members[i], members[k]
		}
	}
	permute(0)
}

// TestDecodeInferRequestAllocs: a small JSON request costs a handful of
// allocations (the request, its strings, the shape and the data).
func TestDecodeInferRequestAllocs(t *testing.T) {
	body, _ := encodeRequest(t, "42", []tensor.Tensor{benchInput()}, nil, `,"outputs":[{"name":"output"}]`)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := DecodeInferRequest(body, -1, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 6 {
		t.Fatalf("DecodeInferRequest allocated %v times per call, want at most 6", allocs)
	}
}

// TestStringArena: strings copied into the arena keep their contents as
// it fills chunks and as longer strings go around it.
func TestStringArena(t *testing.T) {
	tests := []struct {
		name string
		lens []int
	}{
		{"none", nil},
		{"empty", []int{0, 0}},
		{"short", []int{2, 5, 6}},
		{"first chunk overflows", []int{30, 30, 30, 30}},
		{"long first", []int{33, 1, 200}},
		{"half a chunk", []int{arenaChunk / 8, arenaChunk/8 + 1, arenaChunk / 2, arenaChunk/2 + 1}},
		{"many", slices.Repeat([]int{17}, 100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a stringArena
			buf := make([]byte, 0, 64)
			var got, want []string
			for i, n := range tc.lens {
				buf = buf[:0]
				for j := range n {
					buf = append(buf, byte('a'+(i+j)%26))
				}
				want = append(want, string(buf))
				got = append(got, a.str(buf))
				for j := range buf {
					buf[j] = '!' // the arena must not share buf
				}
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("string %d = %q, want %q", i, got[i], want[i])
				}
			}
		})
	}
}
