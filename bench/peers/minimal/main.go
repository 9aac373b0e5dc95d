// Command minimal is the protocol limit of the benchmarks: an OIP v2 HTTP
// server (net/http) and gRPC server (grpc-go) that read each request
// without decoding it and answer with fixed bytes of the same size as
// Kiln's answer for the model. No server that parses its requests and runs
// a model can answer faster over the same stack.
//
// The answers are recorded from Kiln by the benchmark harness and read
// from --responses DIR:
//
//	http-json.body           JSON answer
//	http-binary.body         binary-extension answer (JSON header + raw bytes)
//	http-binary.header       its Inference-Header-Content-Length value
//	grpc.body                ModelInferResponse wire bytes
//	metadata.json            model metadata (GET /v2/models/{m})
//
// Any missing file is synthesised from --input and --output (name:DATATYPE:dims,
// batch dimension -1, which the answers fill with --batch rows).
//
//	go run ./bench/peers/minimal --http 127.0.0.1:9000 --grpc 127.0.0.1:9001 \
//	    --model mlp --input input:FP32:-1,64 --output output:FP32:-1,10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(1)
	}
}

type specList []spec

func (s *specList) String() string { return fmt.Sprint(*s) }
func (s *specList) Set(v string) error {
	sp, err := parseSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, sp)
	return nil
}

func run() error {
	var (
		httpAddr = flag.String("http", "127.0.0.1:9000", "HTTP listen address (empty disables)")
		grpcAddr = flag.String("grpc", "", "gRPC listen address (empty disables)")
		model    = flag.String("model", "mlp", "model name")
		dir      = flag.String("responses", "", "directory of recorded answers (see the package doc)")
		batch    = flag.Int("batch", 1, "rows in synthesised answers")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (on exit)")
		inputs   specList
		outputs  specList
	)
	flag.Var(&inputs, "input", "input name:DATATYPE:d1,d2 for synthesised metadata (repeatable)")
	flag.Var(&outputs, "output", "output name:DATATYPE:d1,d2 for synthesised answers (repeatable)")
	flag.Parse()

	a, err := loadAnswers(*dir, *model, *batch, inputs, outputs)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	errc := make(chan error, 2)
	running := 0
	var hs *http.Server
	if *httpAddr != "" {
		lis, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return err
		}
		hs = &http.Server{Handler: a.httpHandler(*model), ReadHeaderTimeout: 10 * time.Second}
		running++
		go func() { errc <- hs.Serve(lis) }()
		log.Printf("minimal: HTTP on %s", lis.Addr())
	}
	var gs *grpc.Server
	if *grpcAddr != "" {
		lis, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			return err
		}
		gs = a.grpcServer()
		running++
		go func() { errc <- gs.Serve(lis) }()
		log.Printf("minimal: gRPC on %s", lis.Addr())
	}
	if running == 0 {
		return errors.New("nothing to serve: give --http or --grpc")
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		running--
		if !errors.Is(err, http.ErrServerClosed) {
			log.Printf("minimal: %v", err)
		}
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	if gs != nil {
		gs.Stop()
	}
	for ; running > 0; running-- {
		<-errc
	}
	return nil
}

// answers are the fixed bytes the servers send.
type answers struct {
	json, binary []byte
	binaryHeader string
	grpc         []byte
	metadata     []byte
	grpcMetadata []byte
}

func loadAnswers(dir, model string, batch int, inputs, outputs []spec) (*answers, error) {
	a := &answers{}
	read := func(name string) ([]byte, bool, error) {
		if dir == "" {
			return nil, false, nil
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		return b, err == nil, err
	}
	var err error
	var ok bool
	if a.json, ok, err = read("http-json.body"); err != nil {
		return nil, err
	} else if !ok {
		a.json = synthJSON(model, batch, outputs)
	}
	if a.binary, ok, err = read("http-binary.body"); err != nil {
		return nil, err
	} else if ok {
		h, hok, err := read("http-binary.header")
		if err != nil || !hok {
			return nil, fmt.Errorf("http-binary.body needs http-binary.header: %v", err)
		}
		a.binaryHeader = strings.TrimSpace(string(h))
		if n, err := strconv.Atoi(a.binaryHeader); err != nil || n < 0 || n > len(a.binary) {
			return nil, fmt.Errorf("http-binary.header %q: not a length within the body", a.binaryHeader)
		}
	} else {
		var n int
		a.binary, n = synthBinary(model, batch, outputs)
		a.binaryHeader = strconv.Itoa(n)
	}
	if a.grpc, ok, err = read("grpc.body"); err != nil {
		return nil, err
	} else if !ok {
		a.grpc = synthGRPC(model, batch, outputs)
	}
	if a.metadata, ok, err = read("metadata.json"); err != nil {
		return nil, err
	} else if !ok {
		a.metadata = synthMetadata(model, inputs, outputs)
	}
	if a.grpcMetadata, err = grpcMetadata(a.metadata); err != nil {
		return nil, err
	}
	if len(a.json) == 0 || len(a.grpc) == 0 {
		return nil, errors.New("no answer: give --output or --responses")
	}
	return a, nil
}

func (a *answers) httpHandler(model string) http.Handler {
	mux := http.NewServeMux()
	ok := []byte(`{"live":true,"ready":true}`)
	writeFixed := func(w http.ResponseWriter, ctype string, b []byte) {
		h := w.Header()
		h["Content-Type"] = []string{ctype}
		h["Content-Length"] = []string{strconv.Itoa(len(b))}
		_, _ = w.Write(b)
	}
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) { writeFixed(w, "application/json", ok) })
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) { writeFixed(w, "application/json", ok) })
	mux.HandleFunc("GET /v2/models/"+model, func(w http.ResponseWriter, _ *http.Request) {
		writeFixed(w, "application/json", a.metadata)
	})
	jsonLen := strconv.Itoa(len(a.json))
	binLen := strconv.Itoa(len(a.binary))
	mux.HandleFunc("POST /v2/models/"+model+"/infer", func(w http.ResponseWriter, r *http.Request) {
		// Read the body (a server must) and decode nothing.
		if err := drain(r); err != nil {
			http.Error(w, `{"error":"reading body"}`, http.StatusBadRequest)
			return
		}
		h := w.Header()
		if r.Header.Get("Inference-Header-Content-Length") != "" {
			h["Content-Type"] = []string{"application/octet-stream"}
			h["Inference-Header-Content-Length"] = []string{a.binaryHeader}
			h["Content-Length"] = []string{binLen}
			_, _ = w.Write(a.binary)
			return
		}
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{jsonLen}
		_, _ = w.Write(a.json)
	})
	return mux
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// drain reads a request body into a reused buffer and discards it.
func drain(r *http.Request) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		_, err := r.Body.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// rawCodec hands message bytes through untouched, so the gRPC server
// decodes nothing and writes pre-encoded answers.
type rawCodec struct{}

type rawMsg struct{ b []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(_ mem.BufferSlice, v any) error {
	if _, ok := v.(*rawMsg); !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	return nil // the request is read by the transport and not decoded
}

func (a *answers) grpcServer() *grpc.Server {
	fixed := func(b []byte) grpc.MethodHandler {
		return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&rawMsg{}); err != nil {
				return nil, err
			}
			return &rawMsg{b: b}, nil
		}
	}
	trueMsg := []byte{0x08, 0x01} // field 1 (live / ready) = true
	desc := grpc.ServiceDesc{
		ServiceName: "inference.GRPCInferenceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "ModelInfer", Handler: fixed(a.grpc)},
			{MethodName: "ModelMetadata", Handler: fixed(a.grpcMetadata)},
			{MethodName: "ServerLive", Handler: fixed(trueMsg)},
			{MethodName: "ServerReady", Handler: fixed(trueMsg)},
			{MethodName: "ModelReady", Handler: fixed(trueMsg)},
		},
		Metadata: "inference.proto",
	}
	s := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.MaxRecvMsgSize(1<<30), grpc.MaxSendMsgSize(1<<30))
	s.RegisterService(&desc, struct{}{})
	return s
}
