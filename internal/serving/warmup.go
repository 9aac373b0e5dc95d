package serving

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/kilnai/kiln/internal/config"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// warmupInputs builds the input tensors of one warm-up sample.
func warmupInputs(modelDir string, cfg *config.Model, meta inference.Metadata, w config.Warmup, maxElems int64) ([]tensor.Tensor, error) {
	for name := range w.Inputs {
		found := false
		for _, in := range meta.Inputs {
			found = found || in.Name == name
		}
		if !found {
			return nil, fmt.Errorf("warmup %q: the model has no input %q", w.Name, name)
		}
	}
	batch := int64(max(w.BatchSize, 1))
	rng := rand.New(rand.NewPCG(uint64(len(w.Name)), 42))
	out := make([]tensor.Tensor, len(meta.Inputs))
	for i, spec := range meta.Inputs {
		ws := w.Inputs[spec.Name]
		model := spec.Shape
		if meta.BatchDim {
			model = model[1:]
		}
		dims := tensor.Shape(ws.Dims)
		if dims == nil {
			dims = model.Clone()
		}
		if len(dims) != len(model) {
			return nil, fmt.Errorf("warmup %q input %q: dims %v do not fit the model's %v", w.Name, spec.Name, dims, model)
		}
		for d := range dims {
			if dims[d] < 0 {
				return nil, fmt.Errorf("warmup %q input %q: dimension %d is variable, give dims", w.Name, spec.Name, d)
			}
			if model[d] >= 0 && dims[d] != model[d] {
				return nil, fmt.Errorf("warmup %q input %q: dims %v do not fit the model's %v", w.Name, spec.Name, dims, model)
			}
		}
		shape := dims
		if meta.BatchDim {
			shape = append(tensor.Shape{batch}, dims...)
		}
		n, err := shape.Elements(maxElems)
		if err != nil {
			return nil, fmt.Errorf("warmup %q input %q: %w", w.Name, spec.Name, err)
		}
		t := tensor.Tensor{Name: spec.Name, DataType: spec.DataType, Shape: shape}
		switch {
		case ws.InputDataFile != "":
			data, err := readInside(modelDir, ws.InputDataFile)
			if err != nil {
				return nil, fmt.Errorf("warmup %q input %q: %w", w.Name, spec.Name, err)
			}
			t.Data = data
		case ws.RandomData:
			t.Data = randomData(rng, spec.DataType, n)
		default:
			if spec.DataType == tensor.Bytes {
				t.Data = make([]byte, 4*n) // n empty strings
			} else {
				t.Data = make([]byte, n*int64(spec.DataType.Size()))
			}
		}
		if err := t.Validate(maxElems); err != nil {
			return nil, fmt.Errorf("warmup %q: %w", w.Name, err)
		}
		out[i] = t
	}
	return out, nil
}

// readInside reads a file that must stay inside the model directory.
func readInside(dir, rel string) ([]byte, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, err := fs.ReadFile(root.FS(), filepath.ToSlash(filepath.Clean(rel)))
	if err != nil {
		return nil, fmt.Errorf("input_data_file %q: %w", rel, err)
	}
	return b, nil
}

func randomData(rng *rand.Rand, dt tensor.DataType, n int64) []byte {
	if dt == tensor.Bytes {
		var b []byte
		for i := int64(0); i < n; i++ {
			l := rng.IntN(16)
			b = append(b, byte(l), 0, 0, 0)
			for k := 0; k < l; k++ {
				b = append(b, byte('a'+rng.IntN(26)))
			}
		}
		return b
	}
	b := make([]byte, n*int64(dt.Size()))
	switch dt {
	case tensor.FP32:
		f := tensor.View[float32](b)
		for i := range f {
			f[i] = rng.Float32()
		}
	case tensor.FP64:
		f := tensor.View[float64](b)
		for i := range f {
			f[i] = rng.Float64()
		}
	case tensor.FP16:
		h := tensor.View[uint16](b)
		for i := range h {
			h[i] = tensor.Float16Bits(rng.Float32())
		}
	case tensor.BF16:
		h := tensor.View[uint16](b)
		for i := range h {
			h[i] = tensor.BFloat16Bits(rng.Float32())
		}
	case tensor.Bool:
		for i := range b {
			b[i] = byte(rng.IntN(2))
		}
	default: // integers: small non-negative values are valid indexes and ids
		size := dt.Size()
		for i := 0; i < len(b); i += size {
			b[i] = byte(rng.IntN(8))
		}
	}
	return b
}

// warmup runs every sample on every instance; any failure fails the load.
func (v *version) warmup(ctx context.Context, modelDir string) error {
	for _, w := range v.cfg.Warmup {
		inputs, err := warmupInputs(modelDir, v.cfg, v.meta, w, v.maxElems)
		if err != nil {
			return err
		}
		for i, inst := range v.instances {
			for c := 0; c < max(w.Count, 1); c++ {
				if _, err := inst.Infer(ctx, inputs, nil); err != nil {
					return fmt.Errorf("warmup %q on instance %d: %w", w.Name, i, err)
				}
			}
		}
	}
	return nil
}
