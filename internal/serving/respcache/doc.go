// Package respcache provides the storage side of Kiln's opt-in per-model
// response cache: a request key (NewKey) that hashes the model name, the
// resolved model version, the canonical input tensors and the requested
// outputs; a validated binary encoding for lists of tensors (Encode,
// Decode); and two Cache implementations — an in-process LRU bounded in
// bytes (NewLRU) and a Redis-backed cache shared by replicas (NewRedis).
// Open picks one from a server setting.
//
// The package stores and fetches; deciding which models and requests are
// cacheable, logging failures and counting hits and misses in metrics are
// the caller's job. Every failure of the cache degrades to a miss: Get
// returns ok == false together with the error, and the caller is expected to
// log it and run the model.
package respcache

import (
	"context"
	"errors"

	"github.com/kilnai/kiln/internal/tensor"
)

// Cache stores the outputs of successful inference responses under a Key.
//
// Get reports a hit with ok == true. A miss is ok == false with a nil error;
// a failure (an unreachable or slow backend, a corrupt stored value, a
// closed cache, an invalid key) is ok == false with a non-nil error. The
// returned tensors may be kept by the caller indefinitely but must not be
// modified: their Data may be shared with the cache and with other callers.
//
// Set stores a copy of outputs; the caller may reuse or modify outputs
// after Set returns. Implementations are safe for concurrent use.
type Cache interface {
	Get(ctx context.Context, k Key) ([]tensor.Tensor, bool, error)
	Set(ctx context.Context, k Key, outputs []tensor.Tensor) error
	Close() error
}

var (
	// ErrInvalidKey is returned for the zero Key, which NewKey produces
	// when it is not given a resolved model version (version < 1).
	ErrInvalidKey = errors.New("invalid response cache key: no resolved model version")
	// ErrCorrupt marks a stored value that does not decode.
	ErrCorrupt = errors.New("corrupt cached response")
	// ErrClosed is returned by a cache after Close.
	ErrClosed = errors.New("response cache closed")
)
