// Package grpcapi serves Kiln's gRPC API: the Open Inference Protocol's
// inference.GRPCInferenceService (field-compatible with Triton's and
// KServe's clients, see inferencepb) over the model manager, and the
// standard grpc.health.v1 service. It converts between the protocol's
// messages and serving's requests, and it is the only place where errors
// become gRPC status codes (codeOf).
package grpcapi

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/kilnai/kiln/internal/config"
	pb "github.com/kilnai/kiln/internal/grpcapi/inferencepb"
	"github.com/kilnai/kiln/internal/serving"
)

// ServiceName is the full name of the inference service, also the name
// under which grpc.health.v1 reports it.
const ServiceName = "inference.GRPCInferenceService"

// DefaultExtensions are the OIP extensions advertised by ServerMetadata
// when Options.Extensions is nil.
var DefaultExtensions = []string{"model_repository", "model_configuration", "statistics", "schedule_policy"}

// DefaultMaxMessageSize is the message size limit NewGRPCServer uses when
// given none (64 MiB, the HTTP body limit's default).
const DefaultMaxMessageSize = 64 << 20

// Manager is what the gRPC API needs from the model manager
// (*serving.Manager implements it).
type Manager interface {
	Infer(ctx context.Context, name, ver string, req *serving.Request) (*serving.Response, error)
	Metadata(name, ver string) (*serving.ModelInfo, error)
	Ready(name, ver string) (bool, error)
	AllReady() bool
	Config(name, ver string) (*config.Model, error)
	Index(ctx context.Context, readyOnly bool) ([]serving.IndexEntry, error)
	Load(ctx context.Context, name string) error
	Unload(ctx context.Context, name string) error
	Statistics(name, ver string) ([]serving.Stats, error)
}

// Options configure the gRPC API.
type Options struct {
	Manager       Manager
	Logger        *slog.Logger
	ServerName    string // default "kiln"
	ServerVersion string
	// MaxElements bounds the element count of each request tensor; it is
	// checked before anything is allocated (<= 0: tensor.DefaultMaxElements).
	MaxElements int64
	// Extensions advertised by ServerMetadata (nil: DefaultExtensions).
	Extensions []string
}

// Server implements inference.GRPCInferenceService over a Manager, and
// owns the grpc.health.v1 service that reports it.
type Server struct {
	pb.UnimplementedGRPCInferenceServiceServer

	opts     Options
	log      *slog.Logger
	mgr      Manager
	health   *health.Server
	started  atomic.Bool
	draining atomic.Bool
	idPrefix string
	idSeq    atomic.Uint64
}

var _ pb.GRPCInferenceServiceServer = (*Server)(nil)

// New builds the gRPC API. Health reports NOT_SERVING until SetStarted.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ServerName == "" {
		opts.ServerName = "kiln"
	}
	if opts.Extensions == nil {
		opts.Extensions = DefaultExtensions
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		mgr:      opts.Manager,
		health:   health.NewServer(),
		idPrefix: strconv.FormatInt(time.Now().UnixNano()&0xffffffffff, 36),
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// Register registers the inference service and grpc.health.v1 on r
// (usually a *grpc.Server from NewGRPCServer).
func (s *Server) Register(r grpc.ServiceRegistrar) {
	pb.RegisterGRPCInferenceServiceServer(r, s)
	healthpb.RegisterHealthServer(r, s.health)
}

// SetStarted marks start-up (initial model loading) as finished: health
// reports SERVING for "" and ServiceName, and ServerReady may answer true.
func (s *Server) SetStarted() {
	s.started.Store(true)
	if !s.draining.Load() {
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		s.health.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	}
}

// SetDraining makes health report NOT_SERVING and ServerReady answer false
// from now on (graceful shutdown); it cannot be undone.
func (s *Server) SetDraining() {
	s.draining.Store(true)
	s.health.Shutdown() // every service NOT_SERVING, later updates ignored
}

// NewGRPCServer returns a grpc.Server with Kiln's transport settings:
// requests up to maxMessageSize bytes (<= 0: DefaultMaxMessageSize;
// responses are not limited beyond gRPC's own default), keepalive pings of
// idle connections and a lenient enforcement policy for clients' pings, and
// a bound on concurrent streams per connection. extra options are applied
// after these, so they win.
//
// Start it with Serve(listener) in a goroutine; stop it with GracefulStop
// (after Server.SetDraining), falling back to Stop when a deadline passes.
func NewGRPCServer(maxMessageSize int64, extra ...grpc.ServerOption) *grpc.Server {
	if maxMessageSize <= 0 {
		maxMessageSize = DefaultMaxMessageSize
	}
	limit := int(min(maxMessageSize, math.MaxInt32))
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(limit),
		// Clients may ping every 10 s, also without active calls (Triton's
		// and KServe's clients keep idle channels alive this way); faster
		// pingers get GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Ping a connection idle for 2 minutes and drop it when the ping is
		// not answered within 20 seconds, so dead peers release their streams.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.MaxConcurrentStreams(1024),
	}
	return grpc.NewServer(append(opts, extra...)...)
}

// newID returns a request id for requests that carry none.
func (s *Server) newID() string {
	return s.idPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 36)
}
