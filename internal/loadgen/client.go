package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kilnai/kiln/internal/grpcapi/inferencepb"
)

// ModelInferMethod is the full gRPC method name of ModelInfer.
const ModelInferMethod = "/inference.GRPCInferenceService/ModelInfer"

// HeaderContentLength is the binary tensor extension's header naming the
// length of the JSON part of a body.
const HeaderContentLength = "Inference-Header-Content-Length"

// StatusError is a non-200 HTTP answer.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d", e.Code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body)
}

// errEmpty marks a 200 answer without a body.
var errEmpty = errors.New("empty response")

// ErrorKind classifies a failed request for the error counts:
// "http_<status>", "grpc_<Code>", "timeout", "canceled", "empty_response"
// or "transport" (connection refused, reset, EOF, …).
func ErrorKind(err error) string {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return "http_" + strconv.Itoa(se.Code)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errEmpty):
		return "empty_response"
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		switch st.Code() {
		case codes.DeadlineExceeded:
			return "timeout"
		case codes.Canceled:
			return "canceled"
		}
		return "grpc_" + st.Code().String()
	} else if ok {
		return "grpc_Unknown"
	}
	return "transport"
}

// caller sends one request; each worker owns one, so a caller is never
// used concurrently and may keep buffers between calls.
type caller interface {
	call(ctx context.Context) error
}

// newHTTPClient returns a client whose transport keeps up to conns idle
// connections to the server, without compression or proxies.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}}
}

// httpCaller posts one pre-encoded body, reusing its request and buffers.
type httpCaller struct {
	hc      *http.Client
	payload []byte
	reader  bytes.Reader
	req     *http.Request
	buf     bytes.Buffer
}

func newHTTPCaller(hc *http.Client, u string, payload []byte, headerLen int) (*httpCaller, error) {
	c := &httpCaller{hc: hc, payload: payload}
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Body = io.NopCloser(&c.reader)
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
	req.ContentLength = int64(len(payload))
	if headerLen >= 0 {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(HeaderContentLength, strconv.Itoa(headerLen))
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	c.req = req
	return c, nil
}

func (c *httpCaller) call(ctx context.Context) error {
	c.reader.Reset(c.payload)
	resp, err := c.hc.Do(c.req.WithContext(ctx))
	if err != nil {
		return err
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode}
	}
	if c.buf.Len() == 0 {
		return errEmpty
	}
	return nil
}

// rawCodec passes pre-encoded protobuf bytes through gRPC untouched: the
// request is marshalled once before the run and responses are kept as
// bytes, so the client spends no time in protobuf on the hot path.
type rawCodec struct{}

// rawMsg holds the wire bytes of one message.
type rawMsg struct{ b []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	m.b = m.b[:0]
	for _, b := range data {
		m.b = append(m.b, b.ReadOnlyData()...)
	}
	return nil
}

var rawCallOptions = []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}

type grpcCaller struct {
	cc   *grpc.ClientConn
	req  rawMsg
	resp rawMsg
}

func (c *grpcCaller) call(ctx context.Context) error {
	if err := c.cc.Invoke(ctx, ModelInferMethod, &c.req, &c.resp, rawCallOptions...); err != nil {
		return err
	}
	if len(c.resp.b) == 0 {
		return errEmpty
	}
	return nil
}

// dialGRPC opens a client connection without TLS that accepts messages up
// to 1 GiB.
func dialGRPC(addr string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)),
	)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return cc, nil
}

// Probe is one request sent and its answer decoded in full, before a run,
// to check that the server answers as the protocol says.
type Probe struct {
	Protocol Protocol `json:"protocol"`
	// Header holds the HTTP answer's headers (nil for gRPC).
	Header http.Header `json:"-"`
	// Body is the raw answer: the HTTP body or the gRPC message bytes.
	Body []byte `json:"-"`
	// RequestBytes and ResponseBytes are the payload sizes.
	RequestBytes  int `json:"request_bytes"`
	ResponseBytes int `json:"response_bytes"`
	// Outputs are the returned tensors' names, datatypes and shapes.
	Outputs []TensorSpec `json:"outputs"`
}

func probeHTTP(ctx context.Context, hc *http.Client, u string, payload []byte, headerLen int) (Probe, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	p := Probe{Protocol: HTTPJSON, RequestBytes: len(payload)}
	if headerLen >= 0 {
		p.Protocol = HTTPBinary
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(HeaderContentLength, strconv.Itoa(headerLen))
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Probe{}, fmt.Errorf("probe: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Probe{}, fmt.Errorf("probe: %w", &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))})
	}
	p.Header, p.Body, p.ResponseBytes = resp.Header, body, len(body)
	jsonPart, binPart := body, []byte(nil)
	if h := resp.Header.Get(HeaderContentLength); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 || n > len(body) {
			return Probe{}, fmt.Errorf("probe: bad %s %q for a %d-byte body", HeaderContentLength, h, len(body))
		}
		jsonPart, binPart = body[:n], body[n:]
	}
	if p.Outputs, err = checkJSONAnswer(jsonPart, binPart); err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	return p, nil
}

// checkJSONAnswer decodes an OIP JSON answer (with binPart holding the
// binary chunks, if any) and checks every output's data against its shape.
func checkJSONAnswer(jsonPart, binPart []byte) ([]TensorSpec, error) {
	var ps fastjson.Parser
	v, err := ps.ParseBytes(jsonPart)
	if err != nil {
		return nil, fmt.Errorf("answer is not JSON: %w", err)
	}
	outs := v.GetArray("outputs")
	if len(outs) == 0 {
		return nil, errors.New("answer has no outputs")
	}
	var specs []TensorSpec
	used := 0
	for _, o := range outs {
		spec := TensorSpec{Name: string(o.GetStringBytes("name")), DataType: string(o.GetStringBytes("datatype"))}
		n := int64(1)
		for _, d := range o.GetArray("shape") {
			spec.Shape = append(spec.Shape, d.GetInt64())
			n *= d.GetInt64()
		}
		if size := o.Get("parameters", "binary_data_size"); size != nil {
			sz := size.GetInt()
			if sz < 0 || used+sz > len(binPart) {
				return nil, fmt.Errorf("output %q: binary_data_size %d exceeds the %d bytes left", spec.Name, sz, len(binPart)-used)
			}
			used += sz
		} else if data := o.Get("data"); data == nil {
			return nil, fmt.Errorf("output %q has neither data nor binary_data_size", spec.Name)
		} else if got := countLeaves(data); got != n {
			return nil, fmt.Errorf("output %q: %d elements for shape %v", spec.Name, got, spec.Shape)
		}
		specs = append(specs, spec)
	}
	if used != len(binPart) {
		return nil, fmt.Errorf("answer has %d binary bytes, outputs declare %d", len(binPart), used)
	}
	return specs, nil
}

func countLeaves(v *fastjson.Value) int64 {
	if v.Type() != fastjson.TypeArray {
		return 1
	}
	var n int64
	for _, e := range v.GetArray() {
		n += countLeaves(e)
	}
	return n
}

func probeGRPC(ctx context.Context, cc *grpc.ClientConn, payload []byte) (Probe, error) {
	var resp rawMsg
	if err := cc.Invoke(ctx, ModelInferMethod, &rawMsg{b: payload}, &resp, rawCallOptions...); err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	var m inferencepb.ModelInferResponse
	if err := proto.Unmarshal(resp.b, &m); err != nil {
		return Probe{}, fmt.Errorf("probe: decoding ModelInferResponse: %w", err)
	}
	p := Probe{Protocol: GRPC, Body: resp.b, RequestBytes: len(payload), ResponseBytes: len(resp.b)}
	if len(m.GetOutputs()) == 0 {
		return Probe{}, errors.New("probe: answer has no outputs")
	}
	raw := m.GetRawOutputContents()
	if len(raw) != 0 && len(raw) != len(m.GetOutputs()) {
		return Probe{}, fmt.Errorf("probe: %d raw_output_contents for %d outputs", len(raw), len(m.GetOutputs()))
	}
	for _, o := range m.GetOutputs() {
		p.Outputs = append(p.Outputs, TensorSpec{Name: o.GetName(), DataType: o.GetDatatype(), Shape: o.GetShape()})
	}
	return p, nil
}

// inferURL is {base}/v2/models/{model}[/versions/{version}]/infer.
func inferURL(base, model, version string) string {
	u := strings.TrimRight(base, "/") + "/v2/models/" + url.PathEscape(model)
	if version != "" {
		u += "/versions/" + url.PathEscape(version)
	}
	return u + "/infer"
}
