// Package onnx is Kiln's ONNX Runtime backend, built on
// github.com/yalue/onnxruntime_go. The runtime's shared library is opened
// with dlopen on the first Load (see LibraryPath), so a binary builds and
// runs without it; models then fail to load with inference.ErrUnavailable.
//
// Supported tensors: FP32, FP64, FP16, BF16, INT8..INT64, UINT8..UINT64,
// BOOL and BYTES (ONNX strings), including 0-d scalars of every type but
// FP16, BF16 and BYTES. Models without inputs run too. Load rejects with
// inference.ErrUnsupported what the wrapper cannot do safely (see Load).
package onnx

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/tensor"
)

// Name is the backend name in model configs.
const Name = "onnx"

// Platform is the model metadata platform, as Triton reports it.
const Platform = "onnxruntime_onnx"

// The LoadSpec.Parameters the backend understands.
const (
	// ParamIntraOpThreads: threads one operator may use (0 = ORT's default).
	ParamIntraOpThreads = "intra_op_threads"
	// ParamInterOpThreads: threads for running operators in parallel
	// (0 = ORT's default; matters with execution_mode parallel).
	ParamInterOpThreads = "inter_op_threads"
	// ParamGraphOptimizationLevel: disable, basic, extended or all (the default).
	ParamGraphOptimizationLevel = "graph_optimization_level"
	// ParamExecutionMode: sequential (the default) or parallel.
	ParamExecutionMode = "execution_mode"
)

// Options configure a Backend.
type Options struct {
	// LibraryPath is the ONNX Runtime shared library to use when
	// $KILN_ORT_LIB is not set; empty means search (see LibraryPath).
	LibraryPath string
	// MaxElements bounds the elements of one input tensor;
	// 0 means tensor.DefaultMaxElements.
	MaxElements int64
}

// Backend loads ONNX models into ONNX Runtime sessions.
type Backend struct {
	opts Options
}

var _ inference.Backend = (*Backend)(nil)

// New returns an ONNX backend. It does not touch the shared library;
// the first Load does.
func New(opts Options) *Backend { return &Backend{opts: opts} }

// Name returns "onnx".
func (b *Backend) Name() string { return Name }

// Load creates a session for spec.Path. Errors:
//   - inference.ErrUnavailable: the ONNX Runtime library is missing or
//     does not initialise (the message says how to fix it);
//   - inference.ErrUnsupported: an unknown or invalid parameter, a model
//     without outputs, a non-tensor input or output (sequence, map,
//     optional, sparse), an element type outside Kiln's datatypes, a 0-d
//     FP16, BF16 or BYTES tensor, an FP16/BF16 output whose shape Kiln
//     cannot pre-allocate (only dimension 0 may be dynamic, and only as the
//     batch dimension), or a model without inputs whose outputs have
//     dynamic dimensions;
//   - any other error for a missing or malformed model file, or
//     spec.Inputs/Outputs that disagree with the model.
//
// Configured Inputs/Outputs may fix dimensions the model leaves dynamic.
func (b *Backend) Load(ctx context.Context, spec inference.LoadSpec) (inference.Model, error) {
	m, err := b.load(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("onnx: load %s v%d: %w", spec.Name, spec.Version, err)
	}
	return m, nil
}

func (b *Backend) load(ctx context.Context, spec inference.LoadSpec) (*model, error) {
	if _, err := ensureEnv(b.opts.LibraryPath); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(spec.Path); err != nil {
		return nil, err
	}
	opts, err := sessionOptions(spec.Parameters)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()

	ins, outs, err := modelInfo(spec.Path)
	if err != nil {
		return nil, err
	}
	md, err := metadata(ins, outs, spec)
	if err != nil {
		return nil, err
	}
	inNames := make([]string, len(md.Inputs))
	for i, s := range md.Inputs {
		inNames[i] = s.Name
	}
	outNames := make([]string, len(md.Outputs))
	for i, s := range md.Outputs {
		outNames[i] = s.Name
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	before := rssBytes()
	sess, err := ort.NewDynamicAdvancedSession(spec.Path, inNames, outNames, opts)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	maxElements := b.opts.MaxElements
	if maxElements <= 0 {
		maxElements = tensor.DefaultMaxElements
	}
	m := &model{
		name:        spec.Name,
		version:     spec.Version,
		md:          md,
		sess:        sess,
		maxElements: maxElements,
		memory:      max(rssBytes()-before, 0),
	}
	m.runNanos.Store(-1)
	return m, nil
}

// modelInfo reads the model's inputs and outputs through a throwaway
// session without graph optimisation (cheap to create).
func modelInfo(path string) (ins, outs []ort.InputOutputInfo, err error) {
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, err
	}
	defer o.Destroy()
	if err := o.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, err
	}
	if err := o.SetIntraOpNumThreads(1); err != nil {
		return nil, nil, err
	}
	return ort.GetInputOutputInfoWithOptions(path, o)
}

// sessionOptions builds ORT session options from the model parameters.
func sessionOptions(params map[string]string) (*ort.SessionOptions, error) {
	known := []string{ParamExecutionMode, ParamGraphOptimizationLevel, ParamInterOpThreads, ParamIntraOpThreads}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("%w: unknown parameter %q (the onnx backend knows %s)", inference.ErrUnsupported, k, strings.Join(known, ", "))
		}
	}
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	if err := applyParams(o, params, keys); err != nil {
		o.Destroy()
		return nil, err
	}
	return o, nil
}

func applyParams(o *ort.SessionOptions, params map[string]string, keys []string) error {
	for _, k := range keys {
		v := strings.TrimSpace(params[k])
		var err error
		switch k {
		case ParamIntraOpThreads, ParamInterOpThreads:
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 {
				return fmt.Errorf("%w: parameter %s=%q: want a thread count >= 0 (0 = ONNX Runtime's default)", inference.ErrUnsupported, k, v)
			}
			if k == ParamIntraOpThreads {
				err = o.SetIntraOpNumThreads(n)
			} else {
				err = o.SetInterOpNumThreads(n)
			}
		case ParamGraphOptimizationLevel:
			levels := map[string]ort.GraphOptimizationLevel{
				"disable":  ort.GraphOptimizationLevelDisableAll,
				"basic":    ort.GraphOptimizationLevelEnableBasic,
				"extended": ort.GraphOptimizationLevelEnableExtended,
				"all":      ort.GraphOptimizationLevelEnableAll,
			}
			level, ok := levels[v]
			if !ok {
				return fmt.Errorf("%w: parameter %s=%q: want disable, basic, extended or all", inference.ErrUnsupported, k, v)
			}
			err = o.SetGraphOptimizationLevel(level)
		case ParamExecutionMode:
			modes := map[string]ort.ExecutionMode{
				"sequential": ort.ExecutionModeSequential,
				"parallel":   ort.ExecutionModeParallel,
			}
			mode, ok := modes[v]
			if !ok {
				return fmt.Errorf("%w: parameter %s=%q: want sequential or parallel", inference.ErrUnsupported, k, v)
			}
			err = o.SetExecutionMode(mode)
		}
		if err != nil {
			return fmt.Errorf("parameter %s=%q: %w", k, v, err)
		}
	}
	return nil
}

// rssBytes is the process's resident set size, or 0 if unknown.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
