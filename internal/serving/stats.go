package serving

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Duration is a count and a total duration, as the statistics extension reports.
type Duration struct {
	Count uint64
	NS    uint64
}

// BatchStats are the execution statistics for one batch size.
type BatchStats struct {
	BatchSize     uint64
	ComputeInput  Duration
	ComputeInfer  Duration
	ComputeOutput Duration
}

// Stats are one model version's statistics (the OIP statistics extension).
type Stats struct {
	Name           string
	Version        string
	LastInference  uint64 // ms since the epoch
	InferenceCount uint64 // rows inferred (a batch of n counts n; cache hits excluded)
	ExecutionCount uint64 // backend executions
	Success        Duration
	Fail           Duration
	Queue          Duration
	ComputeInput   Duration
	ComputeInfer   Duration
	ComputeOutput  Duration
	CacheHit       Duration
	CacheMiss      Duration
	Batches        []BatchStats
	MemoryBytes    uint64
}

type atomicDuration struct{ count, ns atomic.Uint64 }

func (d *atomicDuration) add(t time.Duration) {
	d.count.Add(1)
	d.ns.Add(uint64(max(t, 0)))
}

func (d *atomicDuration) get() Duration { return Duration{Count: d.count.Load(), NS: d.ns.Load()} }

type batchAccum struct {
	in, infer, out atomicDuration
}

type versionStats struct {
	lastInference  atomic.Int64
	inferenceCount atomic.Uint64
	executionCount atomic.Uint64
	success, fail  atomicDuration
	queue          atomicDuration
	computeInput   atomicDuration
	computeInfer   atomicDuration
	computeOutput  atomicDuration
	cacheHit       atomicDuration
	cacheMiss      atomicDuration

	mu      sync.Mutex
	batches map[int]*batchAccum
}

func (s *versionStats) batch(size int) *batchAccum {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.batches == nil {
		s.batches = map[int]*batchAccum{}
	}
	b := s.batches[size]
	if b == nil {
		b = &batchAccum{}
		s.batches[size] = b
	}
	return b
}

func (s *versionStats) snapshot(name, version string, mem uint64) Stats {
	st := Stats{
		Name: name, Version: version,
		LastInference:  uint64(max(s.lastInference.Load(), 0)),
		InferenceCount: s.inferenceCount.Load(),
		ExecutionCount: s.executionCount.Load(),
		Success:        s.success.get(), Fail: s.fail.get(), Queue: s.queue.get(),
		ComputeInput: s.computeInput.get(), ComputeInfer: s.computeInfer.get(), ComputeOutput: s.computeOutput.get(),
		CacheHit: s.cacheHit.get(), CacheMiss: s.cacheMiss.get(),
		MemoryBytes: mem,
	}
	s.mu.Lock()
	for size, b := range s.batches {
		st.Batches = append(st.Batches, BatchStats{BatchSize: uint64(size), ComputeInput: b.in.get(), ComputeInfer: b.infer.get(), ComputeOutput: b.out.get()})
	}
	s.mu.Unlock()
	sort.Slice(st.Batches, func(i, j int) bool { return st.Batches[i].BatchSize < st.Batches[j].BatchSize })
	return st
}
