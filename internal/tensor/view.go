package tensor

import "unsafe"

// Element is a Go type that stores one fixed-width tensor element.
type Element interface {
	~bool | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// View reinterprets little-endian element bytes as a []T without copying
// (Kiln runs on little-endian hosts only). When b is not aligned for T,
// View copies into an aligned slice instead. len(b) must be a multiple of
// the element size; trailing bytes are ignored.
func View[T Element](b []byte) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	n := len(b) / size
	if n == 0 {
		return []T{}
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%unsafe.Alignof(zero) == 0 {
		return unsafe.Slice((*T)(p), n)
	}
	out := make([]T, n)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), n*size), b)
	return out
}

// AsBytes reinterprets a slice of elements as its little-endian bytes
// without copying.
func AsBytes[T Element](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}
