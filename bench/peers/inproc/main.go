// Command inproc is the compute limit of the benchmarks: it runs an ONNX
// model in-process from Go through github.com/yalue/onnxruntime_go, with
// the same ONNX Runtime library and thread settings as Kiln, and reports
// rows per second.
//
// Like Kiln's model instances, --instances goroutines each own a session
// (intra-op and inter-op threads as given) and call Run back to back on
// pre-allocated input and output tensors, so nothing but ONNX Runtime is
// measured. Two ways to choose batch sizes:
//
//	--batches 1,8,32          each size measured on its own
//	--mix 1:120,7:900,16:40   batch size:executions, the sizes Kiln's batcher
//	                          formed (from its statistics endpoint); the
//	                          executions are replayed in these proportions
//
// Output is a JSON array (or a table with --format table) on stdout.
//
//	go run ./bench/peers/inproc --model bench/models/mlp.onnx --instances 2 --mix 1:10,8:90
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/kilnai/kiln/internal/loadgen"
)

// Result is one measured configuration.
type Result struct {
	// Batch is the batch size, or 0 for a mix.
	Batch     int     `json:"batch"`
	Mix       string  `json:"mix,omitempty"`
	MeanBatch float64 `json:"mean_batch"`
	Instances int     `json:"instances"`
	IntraOp   int     `json:"intra_op_threads"`
	InterOp   int     `json:"inter_op_threads"`
	Calls     int64   `json:"calls"`
	Rows      int64   `json:"rows"`
	Seconds   float64 `json:"seconds"`
	RowsPerS  float64 `json:"rows_per_s"`
	CallsPerS float64 `json:"calls_per_s"`
	// Call latency of one Run, in microseconds.
	CallP50US  float64 `json:"call_p50_us"`
	CallMeanUS float64 `json:"call_mean_us"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inproc:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		model     = flag.String("model", "", "ONNX model file (FP32 inputs with a leading batch dimension)")
		lib       = flag.String("ort-lib", defaultLib(), "path of libonnxruntime.so.1 (env KILN_ORT_LIB)")
		instances = flag.Int("instances", 2, "concurrent sessions, one goroutine each (as Kiln's instances)")
		intra     = flag.Int("intra-op", 1, "intra-op threads per session")
		inter     = flag.Int("inter-op", 1, "inter-op threads per session")
		batches   = flag.String("batches", "1", "batch sizes to measure one by one, comma-separated")
		mix       = flag.String("mix", "", "batch size:executions list to replay instead of --batches")
		duration  = flag.Duration("duration", 3*time.Second, "measurement time per configuration")
		warmup    = flag.Duration("warmup", time.Second, "warm-up per configuration, not measured")
		format    = flag.String("format", "json", "json or table")
		version   = flag.Bool("version", false, "print ONNX Runtime's version and exit")
	)
	flag.Parse()
	if *version {
		ort.SetSharedLibraryPath(*lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			return fmt.Errorf("initializing ONNX Runtime: %w", err)
		}
		defer ort.DestroyEnvironment()
		fmt.Println(ort.GetVersion())
		return nil
	}
	if *model == "" {
		return errors.New("--model is required")
	}
	if *instances < 1 {
		return errors.New("--instances must be at least 1")
	}
	ort.SetSharedLibraryPath(*lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initializing ONNX Runtime: %w", err)
	}
	defer ort.DestroyEnvironment()

	r, err := newRunner(*model, *instances, *intra, *inter)
	if err != nil {
		return err
	}
	defer r.close()

	var results []Result
	if *mix != "" {
		seq, label, err := parseMix(*mix)
		if err != nil {
			return err
		}
		res, err := r.measure(seq, *warmup, *duration)
		if err != nil {
			return err
		}
		res.Mix = label
		results = append(results, res)
	} else {
		for f := range strings.SplitSeq(*batches, ",") {
			b, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || b < 1 {
				return fmt.Errorf("--batches: bad size %q", f)
			}
			res, err := r.measure([]int{b}, *warmup, *duration)
			if err != nil {
				return err
			}
			res.Batch = b
			results = append(results, res)
		}
	}
	for i := range results {
		results[i].Instances, results[i].IntraOp, results[i].InterOp = *instances, *intra, *inter
	}
	if *format == "table" {
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "batch\tmean batch\tinstances\trows/s\tcalls/s\tcall p50 µs\tcall mean µs\t")
		for _, r := range results {
			fmt.Fprintf(tw, "%d\t%.2f\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t\n", r.Batch, r.MeanBatch, r.Instances, r.RowsPerS, r.CallsPerS, r.CallP50US, r.CallMeanUS)
		}
		return tw.Flush()
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// defaultLib is $KILN_ORT_LIB or the repository's fetched copy.
func defaultLib() string {
	if p := os.Getenv("KILN_ORT_LIB"); p != "" {
		return p
	}
	return filepath.Join("third_party", "onnxruntime", "libonnxruntime.so.1")
}

// parseMix turns "1:120,7:900" into a shuffled sequence of at most about
// 100 000 batch sizes in the given proportions of executions. A size too
// rare to get one entry at that resolution is left out, so the sequence's
// mean batch size stays that of the mix.
func parseMix(s string) ([]int, string, error) {
	type entry struct{ size, count int }
	var es []entry
	total := 0
	for f := range strings.SplitSeq(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(f), ":")
		size, err1 := strconv.Atoi(a)
		count, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || size < 1 || count < 0 {
			return nil, "", fmt.Errorf("--mix: bad entry %q (want size:executions)", f)
		}
		if count > 0 {
			es = append(es, entry{size, count})
			total += count
		}
	}
	if total == 0 {
		return nil, "", errors.New("--mix has no executions")
	}
	const resolution = 100_000
	scale := min(1.0, resolution/float64(total))
	var seq []int
	for _, e := range es {
		for range int(float64(e.count)*scale + 0.5) {
			seq = append(seq, e.size)
		}
	}
	if len(seq) == 0 { // cannot happen with total > 0, but keep the run alive
		seq = append(seq, es[0].size)
	}
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
	return seq, s, nil
}

// runner holds one session per instance.
type runner struct {
	sessions []*ort.DynamicAdvancedSession
	inputs   []ort.InputOutputInfo
	outputs  []ort.InputOutputInfo
}

func newRunner(path string, instances, intra, inter int) (*runner, error) {
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	for _, io := range slices.Concat(ins, outs) {
		if io.DataType != ort.TensorElementDataTypeFloat {
			return nil, fmt.Errorf("%s: tensor %q is not FP32; this peer handles FP32 models only", path, io.Name)
		}
	}
	r := &runner{inputs: ins, outputs: outs}
	names := func(l []ort.InputOutputInfo) []string {
		var out []string
		for _, x := range l {
			out = append(out, x.Name)
		}
		return out
	}
	for range instances {
		opts, err := ort.NewSessionOptions()
		if err != nil {
			r.close()
			return nil, err
		}
		err = errors.Join(opts.SetIntraOpNumThreads(intra), opts.SetInterOpNumThreads(inter))
		var s *ort.DynamicAdvancedSession
		if err == nil {
			s, err = ort.NewDynamicAdvancedSession(path, names(ins), names(outs), opts)
		}
		opts.Destroy()
		if err != nil {
			r.close()
			return nil, fmt.Errorf("creating session: %w", err)
		}
		r.sessions = append(r.sessions, s)
	}
	return r, nil
}

func (r *runner) close() {
	for _, s := range r.sessions {
		s.Destroy()
	}
}

// shapeAt replaces a leading -1 with batch.
func shapeAt(dims ort.Shape, batch int) (ort.Shape, error) {
	s := slices.Clone(dims)
	for i, d := range s {
		if d < 0 {
			if i != 0 {
				return nil, fmt.Errorf("shape %v has a variable dimension other than the first", dims)
			}
			s[i] = int64(batch)
		}
	}
	return s, nil
}

// tensors are one instance's pre-allocated inputs and outputs for one
// batch size.
type tensors struct {
	in, out []ort.Value
}

func (r *runner) alloc(batch int, rng *rand.Rand) (tensors, error) {
	var t tensors
	for _, in := range r.inputs {
		s, err := shapeAt(in.Dimensions, batch)
		if err != nil {
			return t, err
		}
		data := make([]float32, s.FlattenedSize())
		for i := range data {
			data[i] = rng.Float32()*2 - 1
		}
		v, err := ort.NewTensor(s, data)
		if err != nil {
			return t, err
		}
		t.in = append(t.in, v)
	}
	for _, out := range r.outputs {
		s, err := shapeAt(out.Dimensions, batch)
		if err != nil {
			return t, err
		}
		v, err := ort.NewEmptyTensor[float32](s)
		if err != nil {
			return t, err
		}
		t.out = append(t.out, v)
	}
	return t, nil
}

func (t tensors) destroy() {
	for _, v := range slices.Concat(t.in, t.out) {
		v.Destroy()
	}
}

// measure runs every instance through seq (each from its own offset),
// first for warmup, then for d, and counts executions and rows.
func (r *runner) measure(seq []int, warmup, d time.Duration) (Result, error) {
	type stat struct {
		calls, rows int64
		lat         []time.Duration
		err         error
	}
	stats := make([]stat, len(r.sessions))
	var wg sync.WaitGroup
	start := time.Now()
	mStart := start.Add(warmup)
	mEnd := mStart.Add(d)
	for i, sess := range r.sessions {
		st := &stats[i]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			ts := map[int]tensors{}
			defer func() {
				for _, t := range ts {
					t.destroy()
				}
			}()
			for _, b := range seq {
				if _, ok := ts[b]; !ok {
					t, err := r.alloc(b, rng)
					if err != nil {
						st.err = err
						return
					}
					ts[b] = t
				}
			}
			for k := i * len(seq) / len(r.sessions); ; k++ {
				b := seq[k%len(seq)]
				t := ts[b]
				t0 := time.Now()
				if err := sess.Run(t.in, t.out); err != nil {
					st.err = err
					return
				}
				t1 := time.Now()
				if t1.After(mEnd) {
					return
				}
				if t1.Before(mStart) {
					continue
				}
				st.calls++
				st.rows += int64(b)
				st.lat = append(st.lat, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
	var res Result
	var lat []time.Duration
	for _, st := range stats {
		if st.err != nil {
			return res, fmt.Errorf("run: %w", st.err)
		}
		res.Calls += st.calls
		res.Rows += st.rows
		lat = append(lat, st.lat...)
	}
	sum := loadgen.Summarize(lat)
	res.Seconds = d.Seconds()
	res.RowsPerS = float64(res.Rows) / res.Seconds
	res.CallsPerS = float64(res.Calls) / res.Seconds
	if res.Calls > 0 {
		res.MeanBatch = float64(res.Rows) / float64(res.Calls)
	}
	res.CallP50US = float64(sum.P50) / float64(time.Microsecond)
	res.CallMeanUS = float64(sum.Mean) / float64(time.Microsecond)
	return res, nil
}
