package cli

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/internal/tensor"
)

var npyDescr = map[string]tensor.DataType{
	"|b1": tensor.Bool, "|u1": tensor.Uint8, "<u1": tensor.Uint8, "|i1": tensor.Int8, "<i1": tensor.Int8,
	"<u2": tensor.Uint16, "<u4": tensor.Uint32, "<u8": tensor.Uint64,
	"<i2": tensor.Int16, "<i4": tensor.Int32, "<i8": tensor.Int64,
	"<f2": tensor.FP16, "<f4": tensor.FP32, "<f8": tensor.FP64,
}

var (
	npyDescrRE   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	npyFortranRE = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	npyShapeRE   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// parseNPY decodes a NumPy .npy file (format versions 1-3, C order,
// little-endian numeric or bool dtypes) into a tensor.
func parseNPY(b []byte, maxElements int64) (tensor.Tensor, error) {
	var t tensor.Tensor
	if len(b) < 10 || !bytes.Equal(b[:6], []byte("\x93NUMPY")) {
		return t, errors.New("not a .npy file (missing \\x93NUMPY magic)")
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return t, errors.New(".npy header truncated")
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:12])), 12
	default:
		return t, fmt.Errorf(".npy format version %d is not supported", b[6])
	}
	if hlen < 0 || off+hlen > len(b) {
		return t, errors.New(".npy header length runs past the end of the file")
	}
	header := string(b[off : off+hlen])
	data := b[off+hlen:]
	m := npyDescrRE.FindStringSubmatch(header)
	if m == nil {
		return t, errors.New(".npy header has no descr")
	}
	dt, ok := npyDescr[m[1]]
	if !ok {
		return t, fmt.Errorf(".npy dtype %q is not supported (use little-endian bool, int, uint or float)", m[1])
	}
	if f := npyFortranRE.FindStringSubmatch(header); f == nil || f[1] == "True" {
		return t, errors.New(".npy array must be in C order (fortran_order False)")
	}
	s := npyShapeRE.FindStringSubmatch(header)
	if s == nil {
		return t, errors.New(".npy header has no shape")
	}
	shape := tensor.Shape{}
	for _, part := range strings.Split(s[1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return t, fmt.Errorf(".npy shape %q: %w", s[1], err)
		}
		shape = append(shape, d)
	}
	size, err := tensor.ByteSize(dt, shape, maxElements)
	if err != nil {
		return t, err
	}
	if int64(len(data)) != size {
		return t, fmt.Errorf(".npy data is %d bytes, %s%v needs %d", len(data), dt, shape, size)
	}
	return tensor.Tensor{DataType: dt, Shape: shape, Data: data}, nil
}
