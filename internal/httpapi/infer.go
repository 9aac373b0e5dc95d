package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kilnai/kiln/internal/serving"
	"github.com/kilnai/kiln/internal/tensor"
)

var respPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// infer handles POST /v2/models/{m}[/versions/{v}]/infer: JSON, the binary
// tensor extension, or a raw single-input body.
func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	model, ver := r.PathValue("model"), r.PathValue("version")
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 4<<20 { // do not keep huge buffers alive
			bufPool.Put(buf)
		}
	}()
	if err := s.readBody(w, r, buf); err != nil {
		s.fail(w, r, err)
		return
	}
	body := buf.Bytes()

	headerLen := -1
	if h := r.Header.Get("Inference-Header-Content-Length"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 {
			s.fail(w, r, fmt.Errorf("%w: Inference-Header-Content-Length %q is not a non-negative integer", ErrBadRequest, h))
			return
		}
		if n > len(body) {
			s.fail(w, r, fmt.Errorf("%w: Inference-Header-Content-Length %d exceeds the body length %d", ErrBadRequest, n, len(body)))
			return
		}
		headerLen = n
	}

	req := serving.Request{}
	var wantBinary []bool // per requested output; nil: every output as allBinary says
	allBinary := false
	if headerLen == 0 {
		// Raw binary: the body is the model's only input, batch 1; every
		// output comes back binary.
		info, err := s.mgr.Metadata(model, ver)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if len(info.Inputs) != 1 {
			s.fail(w, r, fmt.Errorf("%w: a raw binary body needs a model with exactly one input; %q has %d", ErrBadRequest, model, len(info.Inputs)))
			return
		}
		in, err := DecodeRawInput(body, info.Inputs[0])
		if err != nil {
			s.fail(w, r, err)
			return
		}
		req.Inputs = []tensor.Tensor{in}
		req.ID = s.newID()
		allBinary = true
	} else {
		ir, err := DecodeInferRequest(body, headerLen, s.limits)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		req.ID = ir.ID
		if req.ID == "" {
			req.ID = s.newID()
		}
		req.Inputs = ir.Inputs
		if err := scheduleParams(ir, &req); err != nil {
			s.fail(w, r, err)
			return
		}
		allBinary = ir.BinaryOutput
		if len(ir.Outputs) > 0 {
			req.Outputs = make([]string, len(ir.Outputs))
			wantBinary = make([]bool, len(ir.Outputs))
			for i, o := range ir.Outputs {
				req.Outputs[i] = o.Name
				wantBinary[i] = ir.BinaryOutput
				if o.BinarySet {
					wantBinary[i] = o.Binary
				}
			}
		}
	}

	resp, err := s.mgr.Infer(r.Context(), model, ver, &req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if wantBinary == nil {
		wantBinary = make([]bool, len(resp.Outputs))
		for i := range wantBinary {
			wantBinary[i] = allBinary
		}
	}
	out := InferResponse{
		ModelName:    resp.Model,
		ModelVersion: strconv.FormatInt(resp.Version, 10),
		ID:           req.ID,
		Outputs:      resp.Outputs,
		Binary:       wantBinary,
	}
	bp := respPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 4<<20 {
			respPool.Put(bp)
		}
	}()
	b, jsonLen, err := AppendInferResponse((*bp)[:0], &out)
	*bp = b[:0]
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	anyBinary := false
	for _, bin := range wantBinary {
		anyBinary = anyBinary || bin
	}
	if anyBinary {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Inference-Header-Content-Length", strconv.Itoa(jsonLen))
	} else {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// scheduleParams reads the schedule_policy extension's request
// parameters: priority (int, 0 = model default, 1 = highest) and timeout
// (int, microseconds).
func scheduleParams(ir *InferRequest, req *serving.Request) error {
	if p, ok, err := intParam(ir, "priority"); err != nil {
		return err
	} else if ok {
		if p < 0 || p > 1<<20 {
			return fmt.Errorf("%w: parameter priority %d is out of range", ErrBadRequest, p)
		}
		req.Priority = int(p)
	}
	if us, ok, err := intParam(ir, "timeout"); err != nil {
		return err
	} else if ok {
		if us < 0 {
			return fmt.Errorf("%w: parameter timeout must be >= 0 microseconds, got %d", ErrBadRequest, us)
		}
		req.Timeout = time.Duration(us) * time.Microsecond
	}
	return nil
}

// intParam reads an integer request parameter.
func intParam(ir *InferRequest, name string) (int64, bool, error) {
	p, ok := ir.Params[name]
	if !ok {
		return 0, false, nil
	}
	v, isInt := p.AsInt64()
	if !isInt {
		return 0, false, fmt.Errorf("%w: parameter %s must be an integer, got %s", ErrBadRequest, name, p)
	}
	return v, true, nil
}
