package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
)

// maxMLflowBody bounds an MLflow request body.
const maxMLflowBody = 1 << 20

// flexString is a proto string field that clients may also send as a JSON
// number (version numbers).
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %s", b)
	}
	*f = flexString(n.String())
	return nil
}

// flexInt is a proto int64 field: a JSON number or a decimal string (the
// proto JSON mapping of int64).
type flexInt struct {
	Set bool
	N   int64
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	s = strings.Trim(s, `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer, got %s", b)
	}
	*f = flexInt{Set: true, N: n}
	return nil
}

// flexBool is a proto bool: true/false or their string forms.
type flexBool struct {
	Set bool
	V   bool
}

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.ToLower(strings.Trim(string(b), `"`)) {
	case "true":
		*f = flexBool{Set: true, V: true}
	case "false":
		*f = flexBool{Set: true}
	case "null":
	default:
		return fmt.Errorf("want a boolean, got %s", b)
	}
	return nil
}

// mlflowTag is the {key, value} pair of RegisteredModelTag and
// ModelVersionTag.
type mlflowTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// decodeMLflow fills v (a pointer to a struct of the field types above,
// strings and []string, with json tags) from the request: query
// parameters for GET (repeated fields repeat the key), the JSON body
// otherwise (DELETE falls back to query parameters when it has no body).
// Unknown fields are ignored, as MLflow's protobuf parsing does.
func decodeMLflow(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMLflowBody+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %w", ErrBadRequest, err)
	}
	if len(body) > maxMLflowBody {
		return fmt.Errorf("%w: body larger than %d bytes", errTooLarge, maxMLflowBody)
	}
	if r.Method == http.MethodGet || len(bytes.TrimSpace(body)) == 0 {
		return decodeMLflowQuery(r.URL.RawQuery, v)
	}
	return decodeMLflowJSON(body, v)
}

func decodeMLflowJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: malformed JSON body: %w", errMLflowBadRequest, err)
	}
	return nil
}

var (
	flexStringType = reflect.TypeFor[flexString]()
	flexIntType    = reflect.TypeFor[flexInt]()
	flexBoolType   = reflect.TypeFor[flexBool]()
)

func decodeMLflowQuery(rawQuery string, v any) error {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("%w: query string: %w", errMLflowBadRequest, err)
	}
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		vals, ok := q[name]
		if !ok || len(vals) == 0 {
			continue
		}
		f := rv.Field(i)
		switch f.Type() {
		case flexStringType:
			f.SetString(vals[0])
			continue
		case flexIntType:
			n, err := strconv.ParseInt(vals[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%w: parameter %s: want an integer, got %q", errMLflowInvalid, name, vals[0])
			}
			f.Set(reflect.ValueOf(flexInt{Set: true, N: n}))
			continue
		case flexBoolType:
			var fb flexBool
			if err := fb.UnmarshalJSON([]byte(vals[0])); err != nil {
				return fmt.Errorf("%w: parameter %s: %w", errMLflowInvalid, name, err)
			}
			f.Set(reflect.ValueOf(fb))
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString(vals[0])
		case reflect.Slice:
			if f.Type().Elem().Kind() != reflect.String {
				return fmt.Errorf("%w: parameter %s cannot be given in a query string", errMLflowInvalid, name)
			}
			f.Set(reflect.ValueOf(append([]string(nil), vals...)))
		default:
			return fmt.Errorf("%w: parameter %s cannot be given in a query string", errMLflowInvalid, name)
		}
	}
	return nil
}
