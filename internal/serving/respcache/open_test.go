package respcache

import (
	"testing"
	"time"
)

func TestOpenMemory(t *testing.T) {
	for _, spec := range []string{"", "memory"} {
		c, err := Open(t.Context(), spec, 1<<20)
		if err != nil {
			t.Fatalf("Open(%q): %v", spec, err)
		}
		lru, ok := c.(*LRU)
		if !ok {
			t.Fatalf("Open(%q) = %T, want *LRU", spec, c)
		}
		if st := lru.Stats(); st.MaxBytes != 1<<20 {
			t.Errorf("Open(%q): budget %d", spec, st.MaxBytes)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	for _, spec := range []string{"memcached://x", "Memory", "redis", "redis://h:6379/0?ttl=forever", "redis://h:6379/0?timeout=-1s", "redis://h:6379/0?key_prefix="} {
		if c, err := Open(t.Context(), spec, 1<<20); err == nil {
			c.Close()
			t.Errorf("Open(%q) succeeded", spec)
		}
	}
}

func TestSplitRedisSpec(t *testing.T) {
	tests := []struct {
		spec    string
		wantURL string
		want    RedisOptions
	}{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", RedisOptions{}},
		{
			"redis://:secret@cache:6379/2?ttl=1h&timeout=20ms&key_prefix=kiln:a:&pool_size=4",
			"redis://:secret@cache:6379/2?pool_size=4",
			RedisOptions{Prefix: "kiln:a:", TTL: time.Hour, Timeout: 20 * time.Millisecond},
		},
		{"rediss://cache/1?ttl=0s", "rediss://cache/1", RedisOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			u, opts, err := splitRedisSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if u != tt.wantURL || opts != tt.want {
				t.Errorf("got %q %+v, want %q %+v", u, opts, tt.wantURL, tt.want)
			}
		})
	}
}

func TestOpenRedis(t *testing.T) {
	u := redisURL(t)
	prefix := testPrefix(t, u)
	c, err := Open(t.Context(), u+"?timeout=5s&ttl=1m&key_prefix="+prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, ok := c.(*Redis)
	if !ok {
		t.Fatalf("Open = %T, want *Redis", c)
	}
	if r.prefix != prefix || r.ttl != time.Minute || r.timeout != 5*time.Second {
		t.Errorf("options not applied: prefix %q ttl %v timeout %v", r.prefix, r.ttl, r.timeout)
	}
	k := keyN(1)
	if err := c.Set(t.Context(), k, sampleOutputs()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(t.Context(), k); !ok || err != nil {
		t.Errorf("Get: ok=%v err=%v", ok, err)
	}
}
