package config

import (
	"errors"
	"testing"
)

func FuzzParseModel(f *testing.F) {
	for _, s := range []string{
		"", "max_batch_size: 4", "version_policy: all", "version_policy: {specific: [1,2]}",
		"dynamic_batching: {max_queue_delay: 1ms, preferred_batch_sizes: [2]}\nmax_batch_size: 8",
		"inputs: [{name: x, datatype: FP32, dims: [-1, 3]}]", "parameters: {a: 1, b: true, c: x}",
		"warmup: [{name: w, batch_size: 2, inputs: {x: {random_data: true, dims: [3]}}}]",
		"{[", "max_batch_size: [1]", "version_policy: {latest: -3}",
		"inputs: !0 00", // the YAML library panicked on a tagged scalar where a list belongs
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseModel(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
		_ = m.VersionPolicy.Select([]int64{3, 1, 2})
	})
}
