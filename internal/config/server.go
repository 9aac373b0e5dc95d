package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// Server is the configuration of `kiln serve`. Every field can come from
// the --config YAML file, a KILN_* environment variable or a flag; flags
// win over the environment, which wins over the file.
type Server struct {
	ModelRepository string   `yaml:"model_repository" env:"KILN_MODEL_REPOSITORY" usage:"model repository directory (models/<name>/<version>/model.onnx)"`
	HTTP            string   `yaml:"http" env:"KILN_HTTP" usage:"HTTP listen address (OIP v2 REST, metrics); empty disables"`
	GRPC            string   `yaml:"grpc" env:"KILN_GRPC" usage:"gRPC listen address (OIP v2 gRPC); empty disables"`
	DataDir         string   `yaml:"data_dir" env:"KILN_DATA_DIR" usage:"directory for Kiln's own state"`
	LogLevel        string   `yaml:"log_level" env:"KILN_LOG_LEVEL" usage:"debug, info, warn or error"`
	LogFormat       string   `yaml:"log_format" env:"KILN_LOG_FORMAT" usage:"text, json or auto (text on a terminal)"`
	MaxRequestSize  ByteSize `yaml:"max_request_size" env:"KILN_MAX_REQUEST_SIZE" usage:"largest accepted request body"`
	MaxElements     int64    `yaml:"max_tensor_elements" env:"KILN_MAX_TENSOR_ELEMENTS" usage:"largest element count of one tensor"`
	ORTLib          string   `yaml:"ort_lib" env:"KILN_ORT_LIB" usage:"path of libonnxruntime.so.1 (default: found next to the binary or in third_party/onnxruntime)"`
	Insecure        bool     `yaml:"insecure" env:"KILN_INSECURE" usage:"allow listening on non-loopback addresses without authentication"`
	RepositoryPoll  Duration `yaml:"repository_poll" env:"KILN_REPOSITORY_POLL" usage:"rescan the model repository this often and apply changes (0 = never)"`
	DrainDelay      Duration `yaml:"drain_delay" env:"KILN_DRAIN_DELAY" usage:"on SIGTERM, keep accepting requests this long after readiness turns 503"`
	ExitTimeout     Duration `yaml:"exit_timeout" env:"KILN_EXIT_TIMEOUT" usage:"on shutdown, wait at most this long for in-flight and queued requests"`
	Cache           string   `yaml:"cache" env:"KILN_CACHE" usage:"response cache: memory (in-process LRU) or redis://host:port/db (shared by replicas)"`
	CacheSize       ByteSize `yaml:"cache_size" env:"KILN_CACHE_SIZE" usage:"byte budget of the in-process response cache"`
	Registry        string   `yaml:"registry" env:"KILN_REGISTRY" usage:"model registry database: empty for SQLite at <data_dir>/registry.db, a SQLite path, or postgres://..."`
	MaxUploadSize   ByteSize `yaml:"max_upload_size" env:"KILN_MAX_UPLOAD_SIZE" usage:"largest model artifact accepted by an upload"`
	DebugAddr       string   `yaml:"debug_addr" env:"KILN_DEBUG_ADDR" usage:"listen address of Go's runtime profiles (/debug/pprof/); empty disables"`
	AdaptiveProcs   bool     `yaml:"adaptive_procs" env:"KILN_ADAPTIVE_PROCS" usage:"run Go code on one processor while at most one request is in flight (lower latency at low load; GOMAXPROCS is the maximum)"`
}

// DefaultServer returns the defaults: loopback listeners, ./models, ./data.
func DefaultServer() Server {
	return Server{
		ModelRepository: "models",
		HTTP:            "127.0.0.1:8000",
		GRPC:            "127.0.0.1:8001",
		DataDir:         "data",
		LogLevel:        "info",
		LogFormat:       "auto",
		MaxRequestSize:  64 << 20,
		MaxElements:     64 << 20,
		DrainDelay:      Duration(2 * time.Second),
		ExitTimeout:     Duration(30 * time.Second),
		Cache:           "memory",
		CacheSize:       256 << 20,
		MaxUploadSize:   4 << 30,
		AdaptiveProcs:   true,
	}
}

// LoadServerFile merges a YAML file into s (strict: unknown keys fail).
func LoadServerFile(path string, s *Server) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := unmarshalStrict(data, s); err != nil {
		return fmt.Errorf("%s: %w: %s", path, ErrInvalid, yaml.FormatError(err, false, false))
	}
	return nil
}

// ApplyEnv sets fields from KILN_* variables that are present in the
// environment (lookup is os.LookupEnv in production).
func ApplyEnv(s *Server, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(s).Elem()
	t := v.Type()
	for i := range t.NumField() {
		name := t.Field(i).Tag.Get("env")
		raw, ok := lookup(name)
		if name == "" || !ok {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func setField(f reflect.Value, raw string) error {
	if u, ok := f.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(raw))
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(raw)
	case reflect.Bool:
		switch strings.ToLower(raw) {
		case "1", "true", "yes", "on":
			f.SetBool(true)
		case "0", "false", "no", "off", "":
			f.SetBool(false)
		default:
			return fmt.Errorf("want a boolean, got %q", raw)
		}
	case reflect.Int64, reflect.Int:
		var n int64
		if _, err := fmt.Sscan(raw, &n); err != nil {
			return fmt.Errorf("want an integer, got %q", raw)
		}
		f.SetInt(n)
	default:
		return fmt.Errorf("unsupported field kind %s", f.Kind())
	}
	return nil
}

// Validate checks the server configuration.
func (s *Server) Validate() error {
	var errs []error
	for _, a := range []struct{ name, addr string }{{"http", s.HTTP}, {"grpc", s.GRPC}, {"debug", s.DebugAddr}} {
		if a.addr == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s address %q: %w", a.name, a.addr, err))
			continue
		}
		if !s.Insecure && !isLoopback(host) {
			errs = append(errs, fmt.Errorf("%s address %q is not loopback: Kiln has no authentication configured, so pass --insecure to expose it", a.name, a.addr))
		}
	}
	if s.HTTP == "" && s.GRPC == "" {
		errs = append(errs, errors.New("at least one of http and grpc must be set"))
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", s.LogLevel))
	}
	switch s.LogFormat {
	case "text", "json", "auto":
	default:
		errs = append(errs, fmt.Errorf("log_format %q: want text, json or auto", s.LogFormat))
	}
	if s.MaxRequestSize <= 0 {
		errs = append(errs, errors.New("max_request_size must be > 0"))
	}
	if s.MaxUploadSize <= 0 {
		errs = append(errs, errors.New("max_upload_size must be > 0"))
	}
	if s.MaxElements <= 0 {
		errs = append(errs, errors.New("max_tensor_elements must be > 0"))
	}
	if s.Cache != "" && s.Cache != "memory" && !strings.HasPrefix(s.Cache, "redis://") && !strings.HasPrefix(s.Cache, "rediss://") {
		errs = append(errs, fmt.Errorf("cache %q: want memory or redis://host:port/db", s.Cache))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
