package respcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kilnai/kiln/internal/tensor"
)

// Defaults for RedisOptions.
const (
	DefaultRedisPrefix  = "kiln:cache:"
	DefaultRedisTimeout = 50 * time.Millisecond
)

// RedisOptions tunes a Redis cache. Zero values select the defaults.
type RedisOptions struct {
	// Prefix of every key (default DefaultRedisPrefix). Replicas that share
	// cached responses must use the same prefix and database.
	Prefix string
	// TTL of stored values; 0 means they never expire (Redis's own
	// maxmemory policy then decides what to drop).
	TTL time.Duration
	// Timeout bounds each Get and Set, including connecting and waiting
	// for a pooled connection (default DefaultRedisTimeout).
	Timeout time.Duration
}

// Redis is a Cache in a Redis database, shared by every replica that uses
// the same server, database and prefix. Values are the Encode encoding,
// stored under Prefix + the format version + ":" + the key in hex. Every
// operation is bounded by the configured timeout; failures come back as
// errors (a miss for Get) and never as a hang. It is safe for concurrent
// use.
type Redis struct {
	client  *redis.Client
	prefix  string
	ttl     time.Duration
	timeout time.Duration
}

var _ Cache = (*Redis)(nil)

// NewRedis connects to the Redis server at url (redis://[user:password@]host:port/db
// or rediss:// for TLS; go-redis query parameters such as pool_size are
// accepted) and pings it, bounded by ctx and opts.Timeout. Socket timeouts
// default to opts.Timeout unless the URL sets them.
func NewRedis(ctx context.Context, url string, opts RedisOptions) (*Redis, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("redis cache: negative timeout %v", opts.Timeout)
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("redis cache: negative ttl %v", opts.TTL)
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		// go-redis's parse errors do not echo the URL, which may hold a password.
		return nil, fmt.Errorf("redis cache: %w", err)
	}
	ro.ContextTimeoutEnabled = true
	if ro.DialTimeout == 0 {
		ro.DialTimeout = opts.Timeout
	}
	if ro.ReadTimeout == 0 {
		ro.ReadTimeout = opts.Timeout
	}
	if ro.WriteTimeout == 0 {
		ro.WriteTimeout = opts.Timeout
	}
	if ro.PoolTimeout == 0 {
		ro.PoolTimeout = opts.Timeout
	}
	r := &Redis{
		client:  redis.NewClient(ro),
		prefix:  opts.Prefix,
		ttl:     opts.TTL,
		timeout: opts.Timeout,
	}
	pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := r.client.Ping(pctx).Err(); err != nil {
		_ = r.client.Close()
		return nil, fmt.Errorf("redis cache: ping %s: %w", ro.Addr, err)
	}
	return r, nil
}

// redisKey is the Redis key of k. The format version is part of it, so
// replicas that encode differently never read each other's values.
func (r *Redis) redisKey(k Key) string {
	return fmt.Sprintf("%s%d:%s", r.prefix, FormatVersion, k)
}

// Get fetches and decodes the value under k. A missing key is a miss; a
// Redis failure or a value that does not decode (ErrCorrupt) is a miss with
// the error. The returned tensors are the caller's own.
func (r *Redis) Get(ctx context.Context, k Key) ([]tensor.Tensor, bool, error) {
	if k.IsZero() {
		return nil, false, ErrInvalidKey
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	b, err := r.client.Get(ctx, r.redisKey(k)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("redis cache get: %w", err)
	}
	ts, err := Decode(b)
	if err != nil {
		return nil, false, fmt.Errorf("redis cache get %s: %w", k, err)
	}
	return ts, true, nil
}

// Set encodes outputs and stores them under k with the configured TTL.
func (r *Redis) Set(ctx context.Context, k Key, outputs []tensor.Tensor) error {
	if k.IsZero() {
		return ErrInvalidKey
	}
	b, err := Encode(outputs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Set(ctx, r.redisKey(k), b, r.ttl).Err(); err != nil {
		return fmt.Errorf("redis cache set: %w", err)
	}
	return nil
}

// Close closes the connection pool; later operations fail.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("redis cache close: %w", err)
	}
	return nil
}
