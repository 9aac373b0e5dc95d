// Package transform provides the pipeline's pure transforms over Arrow
// record batches: select, rename, cast, filter and derive (expressions),
// fill_null, standardize and min_max (fitted on the data or given),
// one_hot, bucketize, hash and mask (PII), dedupe, sample and split. Each
// registers itself with the pipeline component registry in init().
//
// The kernels work column by column on Arrow buffers (no per-row maps on
// the hot paths); expressions are compiled once per schema into
// column-wise kernels with a row-by-row fallback on expr's VM (see
// Expression).
package transform

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/kilnai/kiln/internal/pipeline"
)

// decodeMapForm decodes a component body that has a long form (a mapping
// of the config's own keys, long) and a short form (a mapping of column
// names to values, decoded into short). It returns the keys of the
// column mapping in the order written. A body whose keys are all config
// keys is the long form; mapKey names the long form's column mapping.
func decodeMapForm(n ast.Node, long any, longKeys []string, mapKey string, short any) ([]string, error) {
	for {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
			continue
		case *ast.AnchorNode:
			n = t.Value
			continue
		}
		break
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		return nil, errors.New("must be a mapping")
	}
	isLong := len(m.Values) > 0
	for _, mv := range m.Values {
		if !slices.Contains(longKeys, keyOf(mv.Key)) {
			isLong = false
			break
		}
	}
	if !isLong {
		for _, mv := range m.Values {
			if keyOf(mv.Key) != mapKey {
				continue
			}
			if _, nested := mv.Value.(*ast.MappingNode); nested {
				for _, other := range m.Values {
					if k := keyOf(other.Key); !slices.Contains(longKeys, k) {
						return nil, fmt.Errorf("%s: {...} is the long form, whose keys are %s; %q is not one of them (or write the column mapping alone: the short form)", mapKey, strings.Join(longKeys, ", "), k)
					}
				}
			}
		}
		if err := yaml.NodeToValue(m, short, yaml.Strict()); err != nil {
			return nil, err
		}
		return mappingKeys(m), nil
	}
	if err := yaml.NodeToValue(m, long, yaml.Strict()); err != nil {
		return nil, err
	}
	for _, mv := range m.Values {
		if keyOf(mv.Key) == mapKey {
			if inner, ok := mv.Value.(*ast.MappingNode); ok {
				return mappingKeys(inner), nil
			}
		}
	}
	return nil, nil
}

func mappingKeys(m *ast.MappingNode) []string {
	out := make([]string, 0, len(m.Values))
	for _, mv := range m.Values {
		out = append(out, keyOf(mv.Key))
	}
	return out
}

func keyOf(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	if k == nil {
		return ""
	}
	return k.String()
}

// orderedKeys returns the keys of m in the given order, then any others
// sorted (a config built in Go has no written order).
func orderedKeys[V any](m map[string]V, order []string) []string {
	out := make([]string, 0, len(m))
	seen := map[string]bool{}
	for _, k := range order {
		if _, ok := m[k]; ok && !seen[k] {
			out = append(out, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// stageErr prefixes an error with the transform's name.
func stageErr(name string, err error) error {
	return fmt.Errorf("%s: %w", name, err)
}

// Compile-time checks of the contract.
var (
	_ pipeline.Transform = (*selectT)(nil)
	_ pipeline.Transform = (*renameT)(nil)
	_ pipeline.Transform = (*castT)(nil)
	_ pipeline.Transform = (*filterT)(nil)
	_ pipeline.Transform = (*deriveT)(nil)
	_ pipeline.Transform = (*fillNullT)(nil)
	_ pipeline.Transform = (*scaleT)(nil)
	_ pipeline.Transform = (*oneHotT)(nil)
	_ pipeline.Transform = (*bucketizeT)(nil)
	_ pipeline.Transform = (*hashT)(nil)
	_ pipeline.Transform = (*maskT)(nil)
	_ pipeline.Transform = (*dedupeT)(nil)
	_ pipeline.Ordered   = (*dedupeT)(nil)
	_ pipeline.Transform = (*sampleT)(nil)
	_ pipeline.Transform = (*splitT)(nil)
)
