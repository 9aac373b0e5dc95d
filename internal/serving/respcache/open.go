package respcache

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Open returns the cache a server setting names:
//
//   - "" or "memory": an LRU of maxBytes (see NewLRU);
//   - "redis://host:port/db" or "rediss://...": a Redis cache (see NewRedis).
//
// A Redis URL may carry Kiln's own query parameters, removed before the
// URL reaches go-redis: key_prefix (RedisOptions.Prefix), ttl and timeout
// (Go durations such as 10m and 50ms). Example:
// redis://cache:6379/0?ttl=1h&timeout=20ms.
func Open(ctx context.Context, spec string, maxBytes int64) (Cache, error) {
	switch {
	case spec == "" || spec == "memory":
		return NewLRU(maxBytes), nil
	case strings.HasPrefix(spec, "redis://"), strings.HasPrefix(spec, "rediss://"):
		u, opts, err := splitRedisSpec(spec)
		if err != nil {
			return nil, err
		}
		return NewRedis(ctx, u, opts)
	default:
		scheme, _, _ := strings.Cut(spec, ":")
		return nil, fmt.Errorf("response cache: unknown kind %q (want memory, redis:// or rediss://)", scheme)
	}
}

// splitRedisSpec takes Kiln's query parameters out of a Redis URL.
func splitRedisSpec(spec string) (string, RedisOptions, error) {
	var opts RedisOptions
	u, err := url.Parse(spec)
	if err != nil {
		// url.Error would echo the URL, password included.
		return "", opts, fmt.Errorf("response cache: malformed redis URL: %w", errUnwrapURL(err))
	}
	q := u.Query()
	if v := q.Get("key_prefix"); q.Has("key_prefix") {
		if v == "" {
			return "", opts, fmt.Errorf("response cache: %s: empty key_prefix", u.Redacted())
		}
		opts.Prefix = v
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{"ttl", &opts.TTL}, {"timeout", &opts.Timeout}} {
		if !q.Has(p.name) {
			continue
		}
		d, err := time.ParseDuration(q.Get(p.name))
		if err != nil || d < 0 {
			return "", opts, fmt.Errorf("response cache: %s: %s=%q: want a non-negative duration such as 50ms", u.Redacted(), p.name, q.Get(p.name))
		}
		*p.dst = d
	}
	q.Del("key_prefix")
	q.Del("ttl")
	q.Del("timeout")
	u.RawQuery = q.Encode()
	return u.String(), opts, nil
}

func errUnwrapURL(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
