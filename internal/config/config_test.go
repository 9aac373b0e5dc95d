package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseModel(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, m *Model)
	}{
		{name: "empty", yaml: "", check: func(t *testing.T, m *Model) {
			if m.MaxBatchSize != nil || m.VersionPolicy != nil {
				t.Fatalf("empty config has values: %+v", m)
			}
		}},
		{name: "full", yaml: `
backend: onnx
max_batch_size: 64
instances: 2
inputs: [{name: x, datatype: FP32, dims: [4]}]
outputs: [{name: y, datatype: TYPE_INT64, dims: [-1]}]
dynamic_batching:
  max_queue_delay: 2ms
  preferred_batch_sizes: [16, 32]
  max_queue_size: 1024
  default_timeout: 1s
  priority_levels: 2
  default_priority: 2
  preserve_ordering: true
version_policy: {latest: 2}
parameters: {intra_op_threads: 1, graph_optimization_level: all}
`, check: func(t *testing.T, m *Model) {
			if *m.MaxBatchSize != 64 || m.Instances != 2 || m.DynamicBatching.MaxQueueDelay.D() != 2*time.Millisecond ||
				m.DynamicBatching.DefaultTimeout.D() != time.Second || m.VersionPolicy.Latest != 2 ||
				m.Parameters["intra_op_threads"] != "1" || m.Parameters["graph_optimization_level"] != "all" {
				t.Fatalf("decoded %+v %+v", m, m.DynamicBatching)
			}
		}},
		{name: "policy all scalar", yaml: "version_policy: all", check: func(t *testing.T, m *Model) {
			if !m.VersionPolicy.All {
				t.Fatal("all not set")
			}
		}},
		{name: "policy specific", yaml: "version_policy: {specific: [1, 3]}", check: func(t *testing.T, m *Model) {
			if len(m.VersionPolicy.Specific) != 2 {
				t.Fatal("specific not set")
			}
		}},
		{name: "unknown key", yaml: "max_batch_size: 4\nmax_batchsize: 8\n", wantErr: "max_batchsize"},
		{name: "unknown nested key", yaml: "dynamic_batching: {delay: 1ms}", wantErr: "delay"},
		{name: "bad duration", yaml: "dynamic_batching: {max_queue_delay: 5}", wantErr: "duration"},
		{name: "negative batch", yaml: "max_batch_size: -1", wantErr: "max_batch_size"},
		{name: "bad datatype", yaml: "inputs: [{name: x, datatype: FLOAT, dims: [1]}]", wantErr: "unknown datatype"},
		{name: "duplicate input", yaml: "inputs: [{name: x, datatype: FP32, dims: [1]}, {name: x, datatype: FP32, dims: [1]}]", wantErr: "duplicate"},
		{name: "bad dims", yaml: "inputs: [{name: x, datatype: FP32, dims: [-2]}]", wantErr: "dims"},
		{name: "two policies", yaml: "version_policy: {latest: 1, all: true}", wantErr: "exactly one"},
		{name: "bad policy word", yaml: "version_policy: newest", wantErr: "version_policy"},
		{name: "latest zero", yaml: "version_policy: {latest: 0}", wantErr: "latest"},
		{name: "preferred above max", yaml: "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [16]}", wantErr: "preferred"},
		{name: "nested parameter", yaml: "parameters: {a: {b: 1}}", wantErr: "scalar"},
		{name: "not yaml", yaml: "{[", wantErr: "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseModel([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err %v does not wrap ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, m)
		})
	}
}

func TestVersionPolicySelect(t *testing.T) {
	avail := []int64{3, 1, 10, 2}
	tests := []struct {
		p    *VersionPolicy
		want string
	}{
		{nil, "[10]"},
		{&VersionPolicy{Latest: 2}, "[3 10]"},
		{&VersionPolicy{Latest: 9}, "[1 2 3 10]"},
		{&VersionPolicy{All: true}, "[1 2 3 10]"},
		{&VersionPolicy{Specific: []int64{2, 7}}, "[2]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(tc.p.Select(avail)); got != tc.want {
			t.Errorf("%+v: got %s want %s", tc.p, got, tc.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"512", 512, false}, {"64KiB", 64 << 10, false}, {"16MiB", 16 << 20, false}, {"1GiB", 1 << 30, false},
		{"10MB", 10e6, false}, {"1.5KiB", 1536, false}, {"-1", 0, true}, {"12XB", 0, true}, {"", 0, true}, {"MiB", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String: %s", s)
	}
}

func TestServerValidateAndEnv(t *testing.T) {
	s := DefaultServer()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KILN_HTTP": "0.0.0.0:9000", "KILN_MAX_REQUEST_SIZE": "1MiB", "KILN_INSECURE": "false"}
	if err := ApplyEnv(&s, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if s.HTTP != "0.0.0.0:9000" || s.MaxRequestSize != 1<<20 {
		t.Fatalf("env not applied: %+v", s)
	}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("non-loopback without --insecure: %v", err)
	}
	s.Insecure = true
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{"KILN_MAX_TENSOR_ELEMENTS": "lots"}
	if err := ApplyEnv(&s, func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil {
		t.Fatal("bad integer accepted")
	}
}
