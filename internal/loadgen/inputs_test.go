package loadgen

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestRequestShapes(t *testing.T) {
	in := func(shapes ...[]int64) []TensorSpec {
		var out []TensorSpec
		for i, s := range shapes {
			out = append(out, TensorSpec{Name: string(rune('a' + i)), DataType: "FP32", Shape: s})
		}
		return out
	}
	tests := []struct {
		name      string
		inputs    []TensorSpec
		batch     int
		overrides map[string][]int64
		want      [][]int64
		rows      int
		err       string
	}{
		{"batched", in([]int64{-1, 64}), 8, nil, [][]int64{{8, 64}}, 8, ""},
		{"image", in([]int64{-1, 3, 224, 224}), 2, nil, [][]int64{{2, 3, 224, 224}}, 2, ""},
		{"two inputs", in([]int64{-1, 4}, []int64{-1}), 3, nil, [][]int64{{3, 4}, {3}}, 3, ""},
		{"fixed shape batch 1", in([]int64{1, 4}), 1, nil, [][]int64{{1, 4}}, 1, ""},
		{"fixed shape batch 2", in([]int64{1, 4}), 2, nil, nil, 0, "without a variable batch dimension"},
		{"variable inner", in([]int64{-1, -1}), 1, nil, nil, 0, "dimension 1"},
		{"override", in([]int64{-1, -1}), 1, map[string][]int64{"a": {4, 16}}, [][]int64{{4, 16}}, 4, ""},
		{"zero batch", in([]int64{-1, 4}), 0, nil, nil, 0, "batch size 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rows, err := RequestShapes(tt.inputs, tt.batch, tt.overrides)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows != tt.rows || len(got) != len(tt.want) {
				t.Fatalf("got %v rows %d, want %v rows %d", got, rows, tt.want, tt.rows)
			}
			for i := range got {
				if !slices.Equal(got[i], tt.want[i]) {
					t.Errorf("shape %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseShapes(t *testing.T) {
	got, err := ParseShapes([]string{"a=1,2;b=3", "c=4"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["a"], []int64{1, 2}) || !slices.Equal(got["b"], []int64{3}) || !slices.Equal(got["c"], []int64{4}) {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"a", "=1", "a=x", "a=-1"} {
		if _, err := ParseShapes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRandomInputsAreSeeded(t *testing.T) {
	types := []string{"FP32", "FP64", "FP16", "BF16", "INT64", "INT32", "UINT8", "BOOL", "BYTES"}
	for _, dt := range types {
		t.Run(dt, func(t *testing.T) {
			spec := []TensorSpec{{Name: "x", DataType: dt, Shape: []int64{-1, 5}}}
			shapes := [][]int64{{3, 5}}
			a, err := RandomInputs(spec, shapes, 7)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := RandomInputs(spec, shapes, 7)
			c, _ := RandomInputs(spec, shapes, 8)
			if !bytes.Equal(a[0].Data, b[0].Data) {
				t.Error("same seed, different data")
			}
			if dt != "BOOL" && bytes.Equal(a[0].Data, c[0].Data) {
				t.Error("different seeds, same data")
			}
			if err := a[0].Validate(0); err != nil {
				t.Errorf("invalid tensor: %v", err)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	spec := []TensorSpec{{Name: "x", DataType: "FP32", Shape: []int64{-1, 3}}, {Name: "ids", DataType: "INT64", Shape: []int64{-1}}}
	ts, err := RandomInputs(spec, [][]int64{{2, 3}, {2}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("json", func(t *testing.T) {
		b, err := EncodeJSON(ts)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseRequest(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ts {
			if back[i].Name != ts[i].Name || back[i].DataType != ts[i].DataType ||
				!slices.Equal(back[i].Shape, ts[i].Shape) || !bytes.Equal(back[i].Data, ts[i].Data) {
				t.Errorf("input %d: got %+v, want %+v", i, back[i], ts[i])
			}
		}
	})
	t.Run("binary", func(t *testing.T) {
		b, n := EncodeBinary(ts)
		var hdr struct {
			Inputs []struct {
				Name       string
				Datatype   string
				Shape      []int64
				Parameters map[string]int
			}
			Parameters map[string]bool
		}
		if err := json.Unmarshal(b[:n], &hdr); err != nil {
			t.Fatal(err)
		}
		if !hdr.Parameters["binary_data_output"] || len(hdr.Inputs) != 2 {
			t.Fatalf("header %+v", hdr)
		}
		rest := b[n:]
		for i, in := range hdr.Inputs {
			size := in.Parameters["binary_data_size"]
			if in.Name != ts[i].Name || in.Datatype != ts[i].DataType.String() || !bytes.Equal(rest[:size], ts[i].Data) {
				t.Errorf("input %d: %+v", i, in)
			}
			rest = rest[size:]
		}
		if len(rest) != 0 {
			t.Errorf("%d trailing bytes", len(rest))
		}
	})
	t.Run("grpc", func(t *testing.T) {
		req := GRPCRequest("m", "2", ts)
		if req.GetModelName() != "m" || req.GetModelVersion() != "2" || len(req.GetRawInputContents()) != 2 ||
			!bytes.Equal(req.GetRawInputContents()[1], ts[1].Data) || req.GetInputs()[0].GetDatatype() != "FP32" {
			t.Errorf("request %v", req)
		}
	})
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not json", `{`, "parsing"},
		{"no inputs", `{"inputs":[]}`, "no inputs"},
		{"no name", `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`, "no name"},
		{"bad type", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}`, "datatype"},
		{"no data", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}`, "no data"},
		{"short data", `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1]}]}`, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
