package onnx

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/tensor"
)

// loadRaw loads a testdata model as the backend's own type.
func loadRaw(t *testing.T, name string) *model {
	t.Helper()
	m, err := requireORT(t).load(context.Background(), inference.LoadSpec{Name: name, Path: filepath.Join("testdata", name+".onnx")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// reversedRows returns t with its rows (first dimension) in reverse order:
// same shape, other contents.
func reversedRows(t tensor.Tensor) tensor.Tensor {
	out := tensor.Tensor{Name: t.Name, DataType: t.DataType, Shape: t.Shape.Clone(), Data: slices.Clone(t.Data)}
	if len(t.Shape) == 0 || t.Shape[0] < 2 || t.DataType == tensor.Bytes {
		return out
	}
	per := len(t.Data) / int(t.Shape[0])
	for i, j := 0, int(t.Shape[0])-1; i < j; i, j = i+1, j-1 {
		a, b := out.Data[i*per:(i+1)*per], out.Data[j*per:(j+1)*per]
		tmp := slices.Clone(a)
		copy(a, b)
		copy(b, tmp)
	}
	return out
}

// TestBoundPathMatchesGeneral runs every testdata model through the bound
// path and, on a second session with the bound path ruled out, through the
// general one: the outputs must be identical, also when calls of one
// signature alternate between different contents (a slot must never
// answer with the previous call's data).
func TestBoundPathMatchesGeneral(t *testing.T) {
	requireORT(t)
	bound := map[string]bool{ // models whose every output can be pre-allocated
		"fp32": true, "fp64": true, "int32": true, "int64": true, "bool": true, "uint8": true,
		"fp16": true, "bf16": true, "multi": true, "mlp": true,
	}
	for _, name := range modelNames {
		t.Run(name, func(t *testing.T) {
			fast, slow := loadRaw(t, name), loadRaw(t, name)
			slow.noBound.Store(true)
			c := testCase(t, name)
			for _, batch := range []int{1, 2, 3} {
				in, _ := c.Example(batch)
				rev := make([]tensor.Tensor, len(in))
				for i := range in {
					rev[i] = reversedRows(in[i])
				}
				for round, inputs := range [][]tensor.Tensor{in, rev, in, rev} {
					got, err := fast.Infer(context.Background(), inputs, nil)
					if err != nil {
						t.Fatalf("batch %d round %d: bound: %v", batch, round, err)
					}
					want, err := slow.Infer(context.Background(), inputs, nil)
					if err != nil {
						t.Fatalf("batch %d round %d: general: %v", batch, round, err)
					}
					if len(got) != len(want) {
						t.Fatalf("batch %d round %d: %d outputs, general path %d", batch, round, len(got), len(want))
					}
					for i := range want {
						if err := inferencetest.CompareTensor(got[i], want[i], 0); err != nil {
							t.Errorf("batch %d round %d: %v", batch, round, err)
						}
					}
				}
			}
			if used := fast.slots > 0; used != bound[name] {
				t.Errorf("bound path used: %v, want %v", used, bound[name])
			}
			if slow.slots != 0 {
				t.Errorf("session with the bound path ruled out holds %d slots", slow.slots)
			}
		})
	}
}

// TestBoundPathBools sends bools as bytes other than 0 and 1: the bound
// path normalises them as the general path does.
func TestBoundPathBools(t *testing.T) {
	fast, slow := loadRaw(t, "bool"), loadRaw(t, "bool")
	slow.noBound.Store(true)
	in, _ := testCase(t, "bool").Example(2)
	for i := range in {
		if in[i].DataType == tensor.Bool {
			for k := range in[i].Data {
				in[i].Data[k] *= byte(k%5 + 1) // 0 stays 0, 1 becomes 1..5
			}
		}
	}
	got, err := fast.Infer(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := slow.Infer(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if err := inferencetest.CompareTensor(got[i], want[i], 0); err != nil {
			t.Error(err)
		}
	}
	if fast.slots == 0 {
		t.Error("the bound path was not used")
	}
}

// TestBoundPathSlots cycles through more signatures than a model keeps
// slots for: results stay right and the slot count stays bounded; a
// signature too large for a slot takes the general path.
func TestBoundPathSlots(t *testing.T) {
	m := loadRaw(t, "mlp")
	ref := loadRaw(t, "mlp")
	ref.noBound.Store(true)
	for round := range 2 {
		for batch := 1; batch <= maxSlots+4; batch++ {
			x := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{int64(batch), 64}, Data: make([]byte, batch*64*4)}
			for i := range x.Data {
				x.Data[i] = byte(i*7 + batch + round)
			}
			got, err := m.Infer(context.Background(), []tensor.Tensor{x}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.Infer(context.Background(), []tensor.Tensor{x}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := inferencetest.CompareTensor(got[0], want[0], 0); err != nil {
				t.Fatalf("round %d batch %d: %v", round, batch, err)
			}
		}
	}
	m.mu.Lock()
	slots, idle := m.slots, len(m.idleSlots)
	m.mu.Unlock()
	if slots != maxSlots || idle != maxSlots {
		t.Errorf("%d slots, %d idle; want %d of each", slots, idle, maxSlots)
	}

	big := loadRaw(t, "mlp")
	rows := slotMaxBytes/(64*4) + 1
	x := tensor.Tensor{Name: "input", DataType: tensor.FP32, Shape: tensor.Shape{int64(rows), 64}, Data: make([]byte, rows*64*4)}
	if _, err := big.Infer(context.Background(), []tensor.Tensor{x}, nil); err != nil {
		t.Fatal(err)
	}
	if big.slots != 0 {
		t.Errorf("a %d-byte input took the bound path", len(x.Data))
	}
}

// TestBoundPathCancellable checks when a call whose context can end may
// take the bound path (which cannot be terminated): only once the model's
// runs are known to be short.
func TestBoundPathCancellable(t *testing.T) {
	m := loadRaw(t, "mlp")
	in, _ := testCase(t, "mlp").Example(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := m.Infer(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
	if m.slots != 0 {
		t.Fatal("the first call, with run times unknown, took the bound path")
	}
	if _, err := m.Infer(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
	if m.runNanos.Load() <= int64(shortRun) && m.slots == 0 {
		t.Errorf("runs are short (%v) but the bound path was not taken", time.Duration(m.runNanos.Load()))
	}

	slowRuns := loadRaw(t, "mlp")
	slowRuns.runNanos.Store(int64(10 * shortRun))
	if _, err := slowRuns.Infer(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
	if slowRuns.slots != 0 {
		t.Error("a model with long runs took the bound path for a cancellable call")
	}
	// Without a context that can end, the bound path is always open.
	if _, err := slowRuns.Infer(context.Background(), in, nil); err != nil {
		t.Fatal(err)
	}
	if slowRuns.slots == 0 {
		t.Error("a call that cannot be cancelled did not take the bound path")
	}
}
