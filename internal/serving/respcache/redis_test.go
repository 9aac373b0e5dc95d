package respcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisURL returns $KILN_TEST_REDIS, skipping the test when it is unset
// unless KILN_REQUIRE_SERVICES=1.
func redisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_REDIS")
	if u == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_REDIS is unset and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_REDIS is unset (e.g. redis://127.0.0.1:6379/0)")
	}
	return u
}

// testPrefix returns a key prefix unique to this test run and deletes every
// key under it when the test ends.
func testPrefix(t *testing.T, rawURL string) string {
	t.Helper()
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	prefix := "kiln:test:respcache:" + hex.EncodeToString(rnd[:]) + ":"
	admin := adminClient(t, rawURL)
	t.Cleanup(func() {
		// t.Context is already canceled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var keys []string
		iter := admin.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scan test keys: %v", err)
			return
		}
		if len(keys) > 0 {
			if err := admin.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("delete test keys: %v", err)
			}
		}
	})
	return prefix
}

// adminClient is a plain client for inspecting and tampering with keys.
func adminClient(t *testing.T, rawURL string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// newTestRedis opens a cache on the test server; a generous timeout keeps
// a loaded CI machine from turning the functional tests flaky.
func newTestRedis(t *testing.T, rawURL string, opts RedisOptions) *Redis {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	r, err := NewRedis(t.Context(), rawURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisRoundTrip(t *testing.T) {
	u := redisURL(t)
	r := newTestRedis(t, u, RedisOptions{Prefix: testPrefix(t, u)})
	ctx := t.Context()
	req := baseRequest()
	k := req.key()
	if _, ok, err := r.Get(ctx, k); ok || err != nil {
		t.Fatalf("before Set: ok=%v err=%v, want a clean miss", ok, err)
	}
	want := sampleOutputs()
	if err := r.Set(ctx, k, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := r.Get(ctx, k)
	if !ok || err != nil {
		t.Fatalf("after Set: ok=%v err=%v", ok, err)
	}
	assertTensorsEqual(t, got, want)

	// Another version of the same model with identical inputs misses.
	other := NewKey(req.model, req.version+1, req.inputs, req.outputs)
	if _, ok, err := r.Get(ctx, other); ok || err != nil {
		t.Errorf("other version: ok=%v err=%v, want a clean miss", ok, err)
	}
	if _, _, err := r.Get(ctx, Key{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero key: %v", err)
	}
}

func TestRedisTTL(t *testing.T) {
	u := redisURL(t)
	prefix := testPrefix(t, u)
	admin := adminClient(t, u)
	ctx := t.Context()
	tests := []struct {
		name string
		ttl  time.Duration
	}{
		{"no expiry", 0},
		{"one hour", time.Hour},
		{"sub-second", 800 * time.Millisecond},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t, u, RedisOptions{Prefix: prefix, TTL: tt.ttl})
			k := keyN(i)
			if err := r.Set(ctx, k, sampleOutputs()); err != nil {
				t.Fatal(err)
			}
			pttl, err := admin.PTTL(ctx, r.redisKey(k)).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tt.ttl == 0 {
				if pttl != -1 { // go-redis reports "no expiry" as -1
					t.Errorf("PTTL %v, want no expiry", pttl)
				}
				return
			}
			if pttl <= 0 || pttl > tt.ttl {
				t.Errorf("PTTL %v, want in (0, %v]", pttl, tt.ttl)
			}
		})
	}
}

func TestRedisSharedByReplicas(t *testing.T) {
	u := redisURL(t)
	prefix := testPrefix(t, u)
	a := newTestRedis(t, u, RedisOptions{Prefix: prefix})
	b := newTestRedis(t, u, RedisOptions{Prefix: prefix})
	elsewhere := newTestRedis(t, u, RedisOptions{Prefix: prefix + "other:"})
	ctx := t.Context()
	k := baseRequest().key()
	want := sampleOutputs()
	if err := a.Set(ctx, k, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Get(ctx, k)
	if !ok || err != nil {
		t.Fatalf("replica b: ok=%v err=%v", ok, err)
	}
	assertTensorsEqual(t, got, want)
	if _, ok, err := elsewhere.Get(ctx, k); ok || err != nil {
		t.Errorf("other prefix: ok=%v err=%v, want a clean miss", ok, err)
	}
}

func TestRedisCorruptValue(t *testing.T) {
	u := redisURL(t)
	r := newTestRedis(t, u, RedisOptions{Prefix: testPrefix(t, u)})
	admin := adminClient(t, u)
	ctx := t.Context()
	valid, err := Encode(sampleOutputs())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		value []byte
	}{
		{"garbage", []byte("not a tensor list")},
		{"empty", []byte{}},
		{"truncated", valid[:len(valid)-1]},
		{"other format version", append([]byte{FormatVersion + 1}, valid[1:]...)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := keyN(100 + i)
			if err := admin.Set(ctx, r.redisKey(k), tt.value, 0).Err(); err != nil {
				t.Fatal(err)
			}
			ts, ok, err := r.Get(ctx, k)
			if ok || ts != nil || !errors.Is(err, ErrCorrupt) {
				t.Errorf("ok=%v tensors=%v err=%v, want a miss with ErrCorrupt", ok, ts, err)
			}
		})
	}
}

func TestRedisUnreachable(t *testing.T) {
	ctx := t.Context()
	for _, u := range []string{"redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0?dial_timeout=20ms"} {
		if r, err := NewRedis(ctx, u, RedisOptions{}); err == nil {
			r.Close()
			t.Errorf("NewRedis(%s) succeeded", u)
		}
		if c, err := Open(ctx, u, 0); err == nil {
			c.Close()
			t.Errorf("Open(%s) succeeded", u)
		}
	}
}

func TestRedisBadOptions(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name string
		url  string
		opts RedisOptions
	}{
		{"negative ttl", "redis://127.0.0.1:6379/0", RedisOptions{TTL: -time.Second}},
		{"negative timeout", "redis://127.0.0.1:6379/0", RedisOptions{Timeout: -time.Second}},
		{"scheme", "http://127.0.0.1:6379/0", RedisOptions{}},
		{"unknown query parameter", "redis://127.0.0.1:6379/0?bogus=1", RedisOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := NewRedis(ctx, tt.url, tt.opts); err == nil {
				r.Close()
				t.Error("NewRedis succeeded")
			}
		})
	}
}

// TestRedisDegradesToMiss runs a cache through a proxy that can swallow
// traffic or vanish: every operation must come back (bounded by Timeout)
// as a miss or an error, never hang and never hit.
func TestRedisDegradesToMiss(t *testing.T) {
	u := redisURL(t)
	prefix := testPrefix(t, u)
	target, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, target.Host)
	via := *target
	via.Host = p.addr()
	r, err := NewRedis(t.Context(), via.String(), RedisOptions{Prefix: prefix, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := t.Context()
	k := baseRequest().key()
	// The key is stored, so a hit is what the cache would return if the
	// proxy passed the request on.
	direct := newTestRedis(t, u, RedisOptions{Prefix: prefix})
	if err := direct.Set(ctx, k, sampleOutputs()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Get(ctx, k); !ok || err != nil {
		t.Fatalf("through the proxy: ok=%v err=%v", ok, err)
	}

	p.stall(true)
	if ts, ok, err := r.Get(ctx, k); ok || ts != nil || err == nil {
		t.Errorf("stalled Get: ok=%v err=%v, want a miss with an error", ok, err)
	}
	if err := r.Set(ctx, k, sampleOutputs()); err == nil {
		t.Error("stalled Set succeeded")
	}

	p.close()
	if ts, ok, err := r.Get(ctx, k); ok || ts != nil || err == nil {
		t.Errorf("Get with Redis gone: ok=%v err=%v, want a miss with an error", ok, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Get(ctx, k); ok || err == nil {
		t.Errorf("Get after Close: ok=%v err=%v", ok, err)
	}
}

// proxy forwards TCP connections to a Redis server; when stalled it
// silently drops what clients send, like a server that stopped answering.
type proxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	stalled atomic.Bool
	wg      sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string  { return p.ln.Addr().String() }
func (p *proxy) stall(on bool) { p.stalled.Store(on) }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !p.track(client) {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(server) {
			return
		}
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && !p.stalled.Load() {
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					server.Close()
					return
				}
			}
		})
		p.wg.Go(func() {
			_, _ = io.Copy(client, server)
			client.Close()
		})
	}
}

// close stops the listener, cuts every connection and waits for the
// forwarding goroutines.
func (p *proxy) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.ln.Close()
		for _, c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
