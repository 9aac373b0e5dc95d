package cli

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/kilnai/kiln/internal/tensor"
)

func npyFile(version byte, header string, data []byte) []byte {
	b := []byte("\x93NUMPY")
	b = append(b, version, 0)
	if version == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(header)))
	}
	return append(append(b, header...), data...)
}

func TestParseNPY(t *testing.T) {
	tests := []struct {
		name  string
		file  []byte
		dt    tensor.DataType
		shape string
		err   string
	}{
		{"fp32 2x2", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", make([]byte, 16)), tensor.FP32, "[2,2]", ""},
		{"int64 vector v2", npyFile(2, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }\n", make([]byte, 24)), tensor.Int64, "[3]", ""},
		{"bool scalar", npyFile(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", []byte{1}), tensor.Bool, "[]", ""},
		{"big endian", npyFile(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", make([]byte, 4)), 0, "", "dtype"},
		{"fortran", npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n", make([]byte, 4)), 0, "", "C order"},
		{"short data", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", make([]byte, 4)), 0, "", "needs 16"},
		{"object dtype", npyFile(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", make([]byte, 8)), 0, "", "dtype"},
		{"not npy", []byte("{\"inputs\":[]}"), 0, "", "magic"},
		{"header past end", append([]byte("\x93NUMPY\x01\x00\xff\x7f"), 'x'), 0, "", "header length"},
		{"huge shape", npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }\n", nil), 0, "", "elements"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNPY(tc.file, 0)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.DataType != tc.dt || got.Shape.String() != tc.shape {
				t.Fatalf("got %s%v", got.DataType, got.Shape)
			}
		})
	}
}

func FuzzParseNPY(f *testing.F) {
	f.Add(npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", make([]byte, 16)))
	f.Add([]byte("\x93NUMPY\x02\x00\x10\x00\x00\x00{'descr': '<i8'}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := parseNPY(b, 1<<20)
		if err == nil {
			if err := ts.Validate(1 << 20); err != nil {
				t.Fatalf("accepted an invalid tensor: %v", err)
			}
		}
	})
}
