package inference

import (
	"fmt"

	"github.com/kilnai/kiln/internal/tensor"
)

// ValidateInputs checks a request against a model's metadata before any
// backend work: every model input is present exactly once, no unknown
// names, each tensor's datatype equals the model's, its shape has the
// model's rank and agrees with every fixed dimension, and its data is
// consistent with its datatype and shape (tensor.Tensor.Validate, with
// maxElements as the element limit; <= 0 means tensor.DefaultMaxElements).
//
// Every error wraps ErrInvalidInput and names the offending tensor.
func ValidateInputs(md Metadata, inputs []tensor.Tensor, maxElements int64) error {
	seen := make([]bool, len(md.Inputs))
	for i := range inputs {
		in := &inputs[i]
		j := indexOf(md.Inputs, in.Name)
		if j < 0 {
			return fmt.Errorf("%w: unknown input %q (model inputs: %s)", ErrInvalidInput, in.Name, names(md.Inputs))
		}
		if seen[j] {
			return fmt.Errorf("%w: input %q given more than once", ErrInvalidInput, in.Name)
		}
		seen[j] = true
		spec := &md.Inputs[j]
		if in.DataType != spec.DataType {
			return fmt.Errorf("%w: input %q has datatype %s, model expects %s", ErrInvalidInput, in.Name, in.DataType, spec.DataType)
		}
		if !in.Shape.Matches(spec.Shape) {
			return fmt.Errorf("%w: input %q has shape %v, model expects %v", ErrInvalidInput, in.Name, in.Shape, spec.Shape)
		}
		if err := in.Validate(maxElements); err != nil {
			return fmt.Errorf("%w: input %q: %w", ErrInvalidInput, in.Name, err)
		}
	}
	for j, ok := range seen {
		if !ok {
			return fmt.Errorf("%w: missing input %q", ErrInvalidInput, md.Inputs[j].Name)
		}
	}
	return nil
}

// ResolveOutputs maps requested output names to indexes into md.Outputs,
// in the order asked. No names means every output in metadata order. An
// unknown name wraps ErrNotFound; a name asked twice wraps ErrInvalidInput.
func ResolveOutputs(md Metadata, names []string) ([]int, error) {
	if len(names) == 0 {
		idx := make([]int, len(md.Outputs))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	idx := make([]int, len(names))
	for i, name := range names {
		j := indexOf(md.Outputs, name)
		if j < 0 {
			return nil, fmt.Errorf("%w: unknown output %q", ErrNotFound, name)
		}
		for _, prev := range idx[:i] {
			if prev == j {
				return nil, fmt.Errorf("%w: output %q requested more than once", ErrInvalidInput, name)
			}
		}
		idx[i] = j
	}
	return idx, nil
}

func indexOf(specs []TensorSpec, name string) int {
	for i := range specs {
		if specs[i].Name == name {
			return i
		}
	}
	return -1
}

// names lists spec names for error messages, at most a handful.
func names(specs []TensorSpec) string {
	const limit = 8
	s := ""
	for i := range specs {
		if i == limit {
			s += fmt.Sprintf(", ... (%d more)", len(specs)-limit)
			break
		}
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", specs[i].Name)
	}
	if s == "" {
		return "none"
	}
	return s
}
