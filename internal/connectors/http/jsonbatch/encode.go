package jsonbatch

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// AppendRow appends row of b as a JSON object, keys in column order, to
// dst. Nulls (and NaN or infinite floats, which JSON cannot represent) are
// null; timestamps are RFC 3339 text in UTC; dates are YYYY-MM-DD.
func AppendRow(dst []byte, b arrow.RecordBatch, row int) []byte {
	dst = append(dst, '{')
	for c := range int(b.NumCols()) {
		if c > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, b.ColumnName(c))
		dst = append(dst, ':')
		dst = AppendValue(dst, b.Column(c), row)
	}
	return append(dst, '}')
}

// AppendValue appends the JSON form of one array value.
func AppendValue(dst []byte, a arrow.Array, i int) []byte {
	if a.IsNull(i) {
		return append(dst, "null"...)
	}
	switch t := a.(type) {
	case *array.Int64:
		return strconv.AppendInt(dst, t.Value(i), 10)
	case *array.Int32:
		return strconv.AppendInt(dst, int64(t.Value(i)), 10)
	case *array.Int16:
		return strconv.AppendInt(dst, int64(t.Value(i)), 10)
	case *array.Int8:
		return strconv.AppendInt(dst, int64(t.Value(i)), 10)
	case *array.Uint64:
		return strconv.AppendUint(dst, t.Value(i), 10)
	case *array.Uint32:
		return strconv.AppendUint(dst, uint64(t.Value(i)), 10)
	case *array.Uint16:
		return strconv.AppendUint(dst, uint64(t.Value(i)), 10)
	case *array.Uint8:
		return strconv.AppendUint(dst, uint64(t.Value(i)), 10)
	case *array.Float64:
		return appendFloat(dst, t.Value(i), 64)
	case *array.Float32:
		return appendFloat(dst, float64(t.Value(i)), 32)
	case *array.Boolean:
		return strconv.AppendBool(dst, t.Value(i))
	case *array.String:
		return appendString(dst, t.Value(i))
	case *array.LargeString:
		return appendString(dst, t.Value(i))
	case *array.StringView:
		return appendString(dst, t.Value(i))
	case *array.Timestamp:
		unit := t.DataType().(*arrow.TimestampType).Unit
		dst = append(dst, '"')
		dst = t.Value(i).ToTime(unit).UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	case *array.Date32:
		dst = append(dst, '"')
		dst = t.Value(i).ToTime().AppendFormat(dst, time.DateOnly)
		return append(dst, '"')
	case *array.Date64:
		dst = append(dst, '"')
		dst = t.Value(i).ToTime().AppendFormat(dst, time.DateOnly)
		return append(dst, '"')
	}
	v, err := json.Marshal(a.GetOneForMarshal(i))
	if err != nil {
		return appendString(dst, a.ValueStr(i))
	}
	return append(dst, v...)
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// appendString appends s as a JSON string, escaped as encoding/json
// does (HTML characters and U+2028/U+2029 included); invalid UTF-8
// becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
