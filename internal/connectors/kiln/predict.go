// Package kiln provides the pipeline's predict transform: batched calls to
// a model served by Kiln, in-process when the pipeline runs inside the
// server (Env.Models) or over gRPC to a remote `kiln serve`. Columns are
// mapped to input tensors and output tensors back to columns.
package kiln

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/goccy/go-yaml/ast"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kilnai/kiln/internal/config"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/pipeline"
	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

func init() {
	pipeline.RegisterTransform(pipeline.TransformSpec{
		Spec: pipeline.Spec{
			Name: "predict",
			Summary: "call a served model on the rows, in batches: columns become input tensors, output tensors become columns; " +
				"in-process inside `kiln serve` (or `kiln pipeline run --model-repository`), or over gRPC to a remote Kiln",
			Config: func() any {
				return &PredictConfig{BatchSize: 256, MaxInFlight: 2, Timeout: 30 * time.Second, Retries: 2, OnFailure: failReject}
			},
			Examples: []string{
				"{model: iris, inputs: {input: [sepal_length, sepal_width, petal_length, petal_width]}, outputs: {probabilities: [p_setosa, p_versicolor, p_virginica]}, argmax: {probabilities: species}}",
				"{model: churn, version: \"3\", remote: \"kiln.internal:8001\", inputs: {features: [age, income, \"country_*\"]}, outputs: {probability: churn_p}, batch_size: 512, max_in_flight: 4}",
			},
		},
		Build: build,
	})
}

// What predict does with the rows of a call that failed after retries.
const (
	failReject = "reject"
	failError  = "error"
)

// Columns is one column or a list of columns (YAML: a string or a list).
type Columns []string

// UnmarshalYAML accepts `col` and `[col, ...]`.
func (c *Columns) UnmarshalYAML(n ast.Node) error {
	for {
		if t, ok := n.(*ast.TagNode); ok {
			n = t.Value
			continue
		}
		break
	}
	switch t := n.(type) {
	case *ast.StringNode:
		*c = Columns{t.Value}
		return nil
	case *ast.SequenceNode:
		out := make(Columns, 0, len(t.Values))
		for _, v := range t.Values {
			s, ok := v.(*ast.StringNode)
			if !ok {
				return fmt.Errorf("a column name must be a string, not %s", v.Type())
			}
			out = append(out, s.Value)
		}
		*c = out
		return nil
	}
	return fmt.Errorf("expected a column name or a list of column names, not %s", n.Type())
}

// PredictConfig configures predict.
type PredictConfig struct {
	Model       string             `yaml:"model" required:"true" doc:"the served model's name"`
	Version     string             `yaml:"version" doc:"the model version (empty: the server's default, the highest ready version)"`
	Inputs      map[string]Columns `yaml:"inputs" required:"true" doc:"input tensor → column or list of columns (globs such as country_* allowed): one column per element of a row, in order; every model input must be mapped"`
	Outputs     map[string]Columns `yaml:"outputs" doc:"output tensor → column (one value per row, or a fixed-size list column for a row of several values) or a list of columns (one per value of a row)"`
	Argmax      map[string]string  `yaml:"argmax" doc:"output tensor → column receiving the index of its largest value per row (e.g. the class of a probabilities output)"`
	BatchSize   int                `yaml:"batch_size" doc:"rows per inference call"`
	MaxInFlight int                `yaml:"max_in_flight" doc:"inference calls running at once (for the whole transform)"`
	Remote      string             `yaml:"remote" doc:"host:port of a remote Kiln's gRPC endpoint (plaintext); empty: the in-process model server"`
	Headers     map[string]string  `yaml:"headers" doc:"gRPC metadata sent with remote calls (e.g. authorization: \"Bearer ${KILN_TOKEN}\")"`
	Timeout     time.Duration      `yaml:"timeout" doc:"deadline of one call"`
	Retries     int                `yaml:"retries" doc:"retries of a call that failed for a transient reason (overload, unavailable, timeout), with exponential back-off"`
	OnFailure   string             `yaml:"on_failure" doc:"rows of a call that still fails: reject (to on_error with the reason) or error (stop the run)"`
}

// Validate checks the mapping and the knobs.
func (c *PredictConfig) Validate() error {
	if strings.TrimSpace(c.Model) == "" {
		return errors.New("model must name a served model")
	}
	if c.Version != "" {
		if n, err := strconv.ParseInt(c.Version, 10, 64); err != nil || n < 1 {
			return fmt.Errorf("version must be a positive integer (or empty for the default), not %q", c.Version)
		}
	}
	if len(c.Inputs) == 0 {
		return errors.New("inputs must map at least one input tensor to columns")
	}
	for name, cols := range c.Inputs {
		if len(cols) == 0 {
			return fmt.Errorf("input %q maps no column", name)
		}
		for _, col := range cols {
			if _, err := path.Match(col, ""); err != nil {
				return fmt.Errorf("input %q: bad column pattern %q: %w", name, col, err)
			}
		}
	}
	if len(c.Outputs) == 0 && len(c.Argmax) == 0 {
		return errors.New("map at least one output tensor to columns (outputs or argmax)")
	}
	seen := map[string]string{}
	claim := func(col, what string) error {
		if col == "" {
			return fmt.Errorf("%s: empty column name", what)
		}
		if prev, dup := seen[col]; dup {
			return fmt.Errorf("column %q is written by both %s and %s", col, prev, what)
		}
		seen[col] = what
		return nil
	}
	for name, cols := range c.Outputs {
		if len(cols) == 0 {
			return fmt.Errorf("output %q maps no column", name)
		}
		for _, col := range cols {
			if err := claim(col, "output "+strconv.Quote(name)); err != nil {
				return err
			}
		}
	}
	for name, col := range c.Argmax {
		if err := claim(col, "argmax of "+strconv.Quote(name)); err != nil {
			return err
		}
	}
	if c.BatchSize < 1 {
		return errors.New("batch_size must be positive")
	}
	if c.MaxInFlight < 1 {
		return errors.New("max_in_flight must be positive")
	}
	if c.Timeout <= 0 {
		return errors.New("timeout must be positive")
	}
	if c.Retries < 0 {
		return errors.New("retries must be >= 0")
	}
	if c.OnFailure != failReject && c.OnFailure != failError {
		return fmt.Errorf("on_failure must be reject or error, not %q", c.OnFailure)
	}
	return nil
}

// Models is what predict needs from the in-process model server
// (*serving.Manager implements it).
type Models interface {
	Infer(ctx context.Context, name, ver string, req *serving.Request) (*serving.Response, error)
	Metadata(name, ver string) (*serving.ModelInfo, error)
}

var _ Models = (*serving.Manager)(nil)

// backend runs one inference call: inputs in, outputs (by name) out, and
// the version that answered.
type backend interface {
	metadata(ctx context.Context) (ins, outs []inference.TensorSpec, err error)
	// maxBatch is the model's max_batch_size (0: unknown or not batching).
	maxBatch(ctx context.Context) (int, error)
	infer(ctx context.Context, ins []tensor.Tensor, outs []string) (map[string]tensor.Tensor, string, error)
	// permanent reports whether an error will not go away by retrying.
	permanent(err error) bool
	close() error
}

func build(ctx context.Context, cfg any, env pipeline.Env) (pipeline.Transform, error) {
	c := cfg.(*PredictConfig)
	var be backend
	switch {
	case c.Remote != "":
		r, err := newRemote(c)
		if err != nil {
			return nil, err
		}
		be = r
	default:
		m, ok := env.Models.(Models)
		if mgr, isMgr := env.Models.(*serving.Manager); isMgr && mgr == nil {
			ok = false // a typed nil: no server
		}
		if !ok {
			return nil, fmt.Errorf("predict: no model server in this process: run the pipeline inside `kiln serve` or with `kiln pipeline run --model-repository DIR`, or set remote: host:port")
		}
		be = &local{m: m, model: c.Model, version: c.Version}
	}
	mctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	ins, outs, err := be.metadata(mctx)
	if err != nil {
		_ = be.close()
		return nil, fmt.Errorf("predict: model %q: %w", c.Model, err)
	}
	t := &predictT{cfg: c, be: be, lineage: env.Lineage, sem: make(chan struct{}, c.MaxInFlight), rows: c.BatchSize}
	if mb, err := be.maxBatch(mctx); err != nil {
		_ = be.close()
		return nil, fmt.Errorf("predict: model %q: %w", c.Model, err)
	} else if mb > 0 && mb < t.rows {
		t.rows = mb // the server refuses larger batches
	}
	if err := t.plan(ins, outs); err != nil {
		_ = be.close()
		return nil, fmt.Errorf("predict: model %q: %w", c.Model, err)
	}
	return t, nil
}

// inputPlan is one input tensor and where its values come from.
type inputPlan struct {
	spec     inference.TensorSpec
	patterns []string
	inner    int // fixed elements per row (product of dims after the first); -1: set by the columns
}

// outputPlan is one output tensor and where its values go.
type outputPlan struct {
	spec    inference.TensorSpec
	columns []string // empty: argmax only
	argmax  string
}

type predictT struct {
	cfg     *PredictConfig
	be      backend
	lineage pipeline.Lineage
	sem     chan struct{}
	rows    int // rows per call: batch_size capped by the model's max_batch_size

	ins     []inputPlan
	outs    []outputPlan
	outName []string

	mu   sync.Mutex
	seen map[string]bool // model versions reported to lineage
}

var (
	_ pipeline.Transform = (*predictT)(nil)
	_ io.Closer          = (*predictT)(nil)
	_ backend            = (*local)(nil)
	_ backend            = (*remote)(nil)
)

// Close closes the connection of a remote predict.
func (t *predictT) Close() error { return t.be.close() }

// plan checks the mapping against the model's metadata.
func (t *predictT) plan(ins, outs []inference.TensorSpec) error {
	byName := func(list []inference.TensorSpec, name string) (inference.TensorSpec, bool) {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
		return inference.TensorSpec{}, false
	}
	names := func(list []inference.TensorSpec) string {
		var out []string
		for _, s := range list {
			out = append(out, s.Name)
		}
		return strings.Join(out, ", ")
	}
	for name := range t.cfg.Inputs {
		if _, ok := byName(ins, name); !ok {
			return fmt.Errorf("the model has no input %q (inputs: %s)", name, names(ins))
		}
	}
	for _, spec := range ins {
		cols, ok := t.cfg.Inputs[spec.Name]
		if !ok {
			return fmt.Errorf("model input %q is not mapped to columns (inputs: {%s: [columns...]})", spec.Name, spec.Name)
		}
		if spec.DataType == tensor.FP16 || spec.DataType == tensor.BF16 {
			return fmt.Errorf("input %q is %s, which predict cannot build from columns", spec.Name, spec.DataType)
		}
		if len(spec.Shape) == 0 {
			return fmt.Errorf("input %q has no batch dimension (shape []); predict sends rows along the first dimension", spec.Name)
		}
		if spec.Shape[0] >= 0 {
			return fmt.Errorf("input %q has a fixed first dimension (shape %v); predict needs a model that batches rows along the first dimension (max_batch_size > 0)", spec.Name, spec.Shape)
		}
		inner := 1
		for _, d := range spec.Shape[1:] {
			if d < 0 {
				inner = -1
				break
			}
			inner *= int(d)
		}
		if inner >= 0 && !hasGlob(cols) && len(cols) != inner {
			return fmt.Errorf("input %q takes %d values per row (shape %v), but %d columns are mapped", spec.Name, inner, spec.Shape, len(cols))
		}
		t.ins = append(t.ins, inputPlan{spec: spec, patterns: cols, inner: inner})
	}
	for _, name := range sortedKeys(t.cfg.Outputs, t.cfg.Argmax) {
		spec, ok := byName(outs, name)
		if !ok {
			return fmt.Errorf("the model has no output %q (outputs: %s)", name, names(outs))
		}
		if spec.DataType == tensor.BF16 {
			return fmt.Errorf("output %q is BF16, which predict cannot store in a column", name)
		}
		op := outputPlan{spec: spec, columns: t.cfg.Outputs[name], argmax: t.cfg.Argmax[name]}
		if op.argmax != "" && (spec.DataType == tensor.Bytes || spec.DataType == tensor.Bool) {
			return fmt.Errorf("argmax of output %q: a %s tensor has no largest value", name, spec.DataType)
		}
		if w := fixedWidth(spec.Shape); w > 0 && len(op.columns) > 1 && len(op.columns) != w {
			return fmt.Errorf("output %q has %d values per row (shape %v), but %d columns are mapped", name, w, spec.Shape, len(op.columns))
		}
		t.outs = append(t.outs, op)
		t.outName = append(t.outName, name)
	}
	return nil
}

func sortedKeys[A, B any](a map[string]A, b map[string]B) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, dup := a[k]; !dup {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// fixedWidth is the number of values per row of a [-1, ...] shape, or -1
// when a dimension after the first is variable.
func fixedWidth(s tensor.Shape) int {
	w := 1
	for _, d := range s[min(1, len(s)):] {
		if d < 0 {
			return -1
		}
		w *= int(d)
	}
	return w
}

func hasGlob(cols []string) bool {
	for _, c := range cols {
		if strings.ContainsAny(c, "*?[\\") {
			return true
		}
	}
	return false
}

// resolve expands the input patterns against a schema.
func resolve(s *arrow.Schema, patterns []string) ([]int, error) {
	var out []int
	for _, p := range patterns {
		found := false
		if !hasGlob([]string{p}) {
			if idx := s.FieldIndices(p); len(idx) > 0 {
				out = append(out, idx[0])
				found = true
			}
		} else {
			for i, f := range s.Fields() {
				if ok, _ := path.Match(p, f.Name); ok {
					out = append(out, i)
					found = true
				}
			}
		}
		if !found {
			var names []string
			for _, f := range s.Fields() {
				names = append(names, f.Name)
			}
			return nil, fmt.Errorf("no column matches %q (columns: %s)", p, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// noteVersion records the model version that answered in the run's
// lineage (once per version).
func (t *predictT) noteVersion(v string) {
	if t.lineage == nil || v == "" {
		return
	}
	t.mu.Lock()
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	first := !t.seen[v]
	t.seen[v] = true
	t.mu.Unlock()
	if first {
		t.lineage.UsedModel(t.cfg.Model, v)
	}
}

// ---- backends ----

// local calls the in-process model server.
type local struct {
	m              Models
	model, version string
}

func (l *local) metadata(context.Context) ([]inference.TensorSpec, []inference.TensorSpec, error) {
	md, err := l.m.Metadata(l.model, l.version)
	if err != nil {
		return nil, nil, err
	}
	return md.Inputs, md.Outputs, nil
}

// configs is implemented by model servers that expose model configs
// (*serving.Manager does).
type configs interface {
	Config(name, ver string) (*config.Model, error)
}

func (l *local) maxBatch(context.Context) (int, error) {
	c, ok := l.m.(configs)
	if !ok {
		return 0, nil
	}
	cfg, err := c.Config(l.model, l.version)
	if err != nil {
		return 0, err
	}
	if cfg.MaxBatchSize == nil {
		return 0, nil
	}
	return *cfg.MaxBatchSize, nil
}

func (l *local) infer(ctx context.Context, ins []tensor.Tensor, outs []string) (map[string]tensor.Tensor, string, error) {
	resp, err := l.m.Infer(ctx, l.model, l.version, &serving.Request{Inputs: ins, Outputs: outs})
	if err != nil {
		return nil, "", err
	}
	res := make(map[string]tensor.Tensor, len(resp.Outputs))
	for _, o := range resp.Outputs {
		res[o.Name] = o
	}
	return res, strconv.FormatInt(resp.Version, 10), nil
}

func (l *local) permanent(err error) bool {
	return errors.Is(err, inference.ErrInvalidInput) || errors.Is(err, serving.ErrModelNotFound) ||
		errors.Is(err, inference.ErrNotFound) || errors.Is(err, inference.ErrUnsupported)
}

func (l *local) close() error { return nil }

// remote calls a Kiln over gRPC. The connection is closed by Close, and
// also after a minute without calls (it is dialled again when needed), so
// that a run whose engine does not close transforms does not keep it.
type remote struct {
	cfg *PredictConfig
	md  metadata.MD

	mu    sync.Mutex
	conn  *grpc.ClientConn
	users int
	idle  *time.Timer
}

const remoteIdle = time.Minute

func newRemote(c *PredictConfig) (*remote, error) {
	r := &remote{cfg: c, md: metadata.New(c.Headers)}
	return r, nil
}

// client returns a client on a (possibly new) connection; done must be
// called when the call is over.
func (r *remote) client() (pb.GRPCInferenceServiceClient, func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		conn, err := grpc.NewClient(r.cfg.Remote,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
		if err != nil {
			return nil, nil, fmt.Errorf("remote %q: %w", r.cfg.Remote, err)
		}
		r.conn = conn
	}
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	r.users++
	conn := r.conn
	return pb.NewGRPCInferenceServiceClient(conn), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.users--
		if r.users == 0 && r.conn == conn {
			r.idle = time.AfterFunc(remoteIdle, r.closeIdle)
		}
	}, nil
}

func (r *remote) closeIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users == 0 && r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
	}
}

func (r *remote) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	if r.conn == nil {
		return nil
	}
	err := r.conn.Close()
	r.conn = nil
	return err
}

func (r *remote) ctx(ctx context.Context) context.Context {
	if len(r.md) == 0 {
		return ctx
	}
	return metadata.NewOutgoingContext(ctx, r.md)
}

func (r *remote) metadata(ctx context.Context) ([]inference.TensorSpec, []inference.TensorSpec, error) {
	cl, done, err := r.client()
	if err != nil {
		return nil, nil, err
	}
	defer done()
	resp, err := cl.ModelMetadata(r.ctx(ctx), &pb.ModelMetadataRequest{Name: r.cfg.Model, Version: r.cfg.Version})
	if err != nil {
		return nil, nil, fmt.Errorf("remote %s: %w", r.cfg.Remote, err)
	}
	conv := func(list []*pb.ModelMetadataResponse_TensorMetadata) ([]inference.TensorSpec, error) {
		out := make([]inference.TensorSpec, 0, len(list))
		for _, m := range list {
			dt, err := tensor.ParseDataType(m.GetDatatype())
			if err != nil {
				return nil, fmt.Errorf("remote metadata of %q: %w", m.GetName(), err)
			}
			out = append(out, inference.TensorSpec{Name: m.GetName(), DataType: dt, Shape: tensor.Shape(m.GetShape())})
		}
		return out, nil
	}
	ins, err := conv(resp.GetInputs())
	if err != nil {
		return nil, nil, err
	}
	outs, err := conv(resp.GetOutputs())
	if err != nil {
		return nil, nil, err
	}
	return ins, outs, nil
}

func (r *remote) maxBatch(ctx context.Context) (int, error) {
	cl, done, err := r.client()
	if err != nil {
		return 0, err
	}
	defer done()
	resp, err := cl.ModelConfig(r.ctx(ctx), &pb.ModelConfigRequest{Name: r.cfg.Model, Version: r.cfg.Version})
	if status.Code(err) == codes.Unimplemented {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("remote %s: %w", r.cfg.Remote, err)
	}
	return int(resp.GetConfig().GetMaxBatchSize()), nil
}

func (r *remote) infer(ctx context.Context, ins []tensor.Tensor, outs []string) (map[string]tensor.Tensor, string, error) {
	cl, done, err := r.client()
	if err != nil {
		return nil, "", err
	}
	defer done()
	req := &pb.ModelInferRequest{ModelName: r.cfg.Model, ModelVersion: r.cfg.Version}
	for _, in := range ins {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: in.Name, Datatype: in.DataType.String(), Shape: in.Shape})
		req.RawInputContents = append(req.RawInputContents, in.Data)
	}
	for _, o := range outs {
		req.Outputs = append(req.Outputs, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: o})
	}
	resp, err := cl.ModelInfer(r.ctx(ctx), req)
	if err != nil {
		return nil, "", fmt.Errorf("remote %s: %w", r.cfg.Remote, err)
	}
	res := make(map[string]tensor.Tensor, len(resp.GetOutputs()))
	raw := resp.GetRawOutputContents()
	for i, o := range resp.GetOutputs() {
		dt, err := tensor.ParseDataType(o.GetDatatype())
		if err != nil {
			return nil, "", fmt.Errorf("remote output %q: %w", o.GetName(), err)
		}
		var data []byte
		if i < len(raw) {
			data = raw[i]
		} else {
			data = contentsBytes(dt, o.GetContents())
		}
		t := tensor.Tensor{Name: o.GetName(), DataType: dt, Shape: tensor.Shape(o.GetShape()), Data: data}
		if err := t.Validate(0); err != nil {
			return nil, "", fmt.Errorf("remote output: %w", err)
		}
		res[t.Name] = t
	}
	return res, resp.GetModelVersion(), nil
}

func (r *remote) permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.Unimplemented, codes.FailedPrecondition,
		codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange:
		return true
	}
	return false
}
