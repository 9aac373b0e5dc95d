package sqlstore

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/valyala/fastjson"

	"github.com/kilnai/kiln/internal/registry"
)

// rowParsers decode the immutable copy on version rows. Reading a page of
// versions decodes one document per version, so this is a hot path; the
// result equals encoding/json's decoding of immutableJSON.
var rowParsers fastjson.ParserPool

// decodeImmutable decodes a version row's immutable_json.
func decodeImmutable(b []byte) (immutableJSON, error) {
	var out immutableJSON
	p := rowParsers.Get()
	defer rowParsers.Put(p)
	v, err := p.ParseBytes(b)
	if err != nil {
		return out, err
	}
	root, err := v.Object()
	if err != nil {
		return out, err
	}
	var ferr error
	fail := func(e error) {
		if ferr == nil {
			ferr = e
		}
	}
	root.Visit(func(key []byte, fv *fastjson.Value) {
		switch string(key) {
		case "metrics":
			out.Metrics, err = decodeMetrics(fv)
		case "params":
			out.Params, err = decodeStrings(fv)
		case "signature":
			if fv.Type() == fastjson.TypeNull {
				return
			}
			var sig registry.Signature
			sig, err = decodeSignature(fv)
			out.Signature = &sig
		case "lineage":
			if fv.Type() == fastjson.TypeNull {
				return
			}
			var lin registry.Lineage
			lin, err = decodeLineage(fv)
			out.Lineage = &lin
		default:
			return
		}
		if err != nil {
			fail(fmt.Errorf("%s: %w", key, err))
		}
	})
	return out, ferr
}

func decodeMetrics(v *fastjson.Value) (map[string]registry.Metric, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	o, err := v.Object()
	if err != nil {
		return nil, err
	}
	out := make(map[string]registry.Metric, o.Len())
	var ferr error
	o.Visit(func(k []byte, mv *fastjson.Value) {
		if ferr != nil {
			return
		}
		mo, err := mv.Object()
		if err != nil {
			ferr = err
			return
		}
		var m registry.Metric
		if x := mo.Get("value"); x != nil && x.Type() != fastjson.TypeNull {
			if m.Value, err = x.Float64(); err != nil {
				ferr = err
				return
			}
		}
		if x := mo.Get("direction"); x != nil && x.Type() != fastjson.TypeNull {
			s, err := x.StringBytes()
			if err != nil {
				ferr = err
				return
			}
			m.Direction = registry.Direction(s)
		}
		out[string(k)] = m
	})
	return out, ferr
}

func decodeStrings(v *fastjson.Value) (map[string]string, error) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	o, err := v.Object()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, o.Len())
	var ferr error
	o.Visit(func(k []byte, sv *fastjson.Value) {
		if ferr != nil {
			return
		}
		s, err := sv.StringBytes()
		if err != nil {
			ferr = err
			return
		}
		out[string(k)] = string(s)
	})
	return out, ferr
}

func decodeSignature(v *fastjson.Value) (registry.Signature, error) {
	var sig registry.Signature
	o, err := v.Object()
	if err != nil {
		return sig, err
	}
	for _, f := range []struct {
		key string
		dst *[]registry.TensorSpec
	}{{"inputs", &sig.Inputs}, {"outputs", &sig.Outputs}} {
		x := o.Get(f.key)
		if x == nil || x.Type() == fastjson.TypeNull {
			continue
		}
		arr, err := x.Array()
		if err != nil {
			return sig, err
		}
		specs := make([]registry.TensorSpec, 0, len(arr))
		for _, tv := range arr {
			to, err := tv.Object()
			if err != nil {
				return sig, err
			}
			var t registry.TensorSpec
			if n := to.Get("name"); n != nil && n.Type() != fastjson.TypeNull {
				s, err := n.StringBytes()
				if err != nil {
					return sig, err
				}
				t.Name = string(s)
			}
			if d := to.Get("datatype"); d != nil && d.Type() != fastjson.TypeNull {
				s, err := d.StringBytes()
				if err != nil {
					return sig, err
				}
				t.Datatype = string(s)
			}
			if sh := to.Get("shape"); sh != nil && sh.Type() != fastjson.TypeNull {
				dims, err := sh.Array()
				if err != nil {
					return sig, err
				}
				t.Shape = make([]int64, len(dims))
				for i, d := range dims {
					if t.Shape[i], err = d.Int64(); err != nil {
						return sig, err
					}
				}
			}
			specs = append(specs, t)
		}
		*f.dst = specs
	}
	return sig, nil
}

func decodeLineage(v *fastjson.Value) (registry.Lineage, error) {
	var lin registry.Lineage
	o, err := v.Object()
	if err != nil {
		return lin, err
	}
	if x := o.Get("pipeline_run_id"); x != nil && x.Type() != fastjson.TypeNull {
		s, err := x.StringBytes()
		if err != nil {
			return lin, err
		}
		lin.PipelineRunID = string(s)
	}
	if x := o.Get("dataset_digests"); x != nil && x.Type() != fastjson.TypeNull {
		arr, err := x.Array()
		if err != nil {
			return lin, err
		}
		lin.DatasetDigests = make([]string, len(arr))
		for i, d := range arr {
			s, err := d.StringBytes()
			if err != nil {
				return lin, err
			}
			lin.DatasetDigests[i] = string(s)
		}
	}
	return lin, nil
}

// immCacheSize bounds the decoded documents an immCache holds (a few
// hundred bytes each).
const immCacheSize = 8192

// immCache remembers decoded immutable documents by version row id. An
// entry is used only when the row's document is byte for byte the one it
// was decoded from, so a reused row id (SQLite may reuse the id of a
// deleted last row) or a row written by another replica can never be
// served stale. Hits return deep copies: callers own what they get.
type immCache struct {
	mu sync.Mutex
	m  map[int64]immEntry
}

type immEntry struct {
	raw []byte
	doc immutableJSON
}

// decode returns the decoded document raw of row id.
func (c *immCache) decode(id int64, raw []byte) (immutableJSON, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.doc.clone(), nil
	}
	doc, err := decodeImmutable(raw)
	if err != nil {
		return doc, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[int64]immEntry, 256)
	}
	if len(c.m) >= immCacheSize {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[id] = immEntry{raw: bytes.Clone(raw), doc: doc.clone()}
	c.mu.Unlock()
	return doc, nil
}

// clone returns a deep copy of d.
func (d immutableJSON) clone() immutableJSON {
	out := immutableJSON{Metrics: maps.Clone(d.Metrics), Params: maps.Clone(d.Params)}
	if d.Signature != nil {
		sig := registry.Signature{Inputs: cloneSpecs(d.Signature.Inputs), Outputs: cloneSpecs(d.Signature.Outputs)}
		out.Signature = &sig
	}
	if d.Lineage != nil {
		lin := *d.Lineage
		lin.DatasetDigests = slices.Clone(lin.DatasetDigests)
		out.Lineage = &lin
	}
	return out
}

func cloneSpecs(ts []registry.TensorSpec) []registry.TensorSpec {
	if ts == nil {
		return nil
	}
	out := make([]registry.TensorSpec, len(ts))
	for i, t := range ts {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}
