package loadgen

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRawHTTPAnswers(t *testing.T) {
	big := strings.Repeat("x", 10000)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		kind    string // ErrorKind, "" for success
		body    int
	}{
		{"content length", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"outputs":[]}`) }, "", 14},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, big)
			w.(http.Flusher).Flush()
			io.WriteString(w, big)
		}, "", 20000},
		{"connection close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "ok")
		}, "", 2},
		{"503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }, "http_503", 0},
		{"empty 200", func(w http.ResponseWriter, r *http.Request) {}, "empty_response", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
				mu.Unlock()
				tt.handler(w, r)
			}))
			defer srv.Close()
			c, err := newRawHTTPCaller(srv.URL+"/v2/models/m/infer", []byte(`{"inputs":[]}`), -1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			for i := range 3 { // the same connection is reused, or reopened after a close
				err := c.call(context.Background())
				if kind := kindOf(err); kind != tt.kind {
					t.Fatalf("call %d: error %v (kind %q), want kind %q", i, err, kind, tt.kind)
				}
				if tt.kind == "" && len(c.body) != tt.body {
					t.Fatalf("call %d: body of %d bytes, want %d", i, len(c.body), tt.body)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 3 || got[0] != `POST /v2/models/m/infer application/json {"inputs":[]}` {
				t.Errorf("server saw %q", got)
			}
		})
	}
}

func kindOf(err error) string {
	if err == nil {
		return ""
	}
	return ErrorKind(err)
}

func TestRawHTTPReconnectsAfterServerClose(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	c, err := newRawHTTPCaller(srv.URL+"/x", []byte("{}"), 3, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range 4 {
		if err := c.call(context.Background()); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		srv.CloseClientConnections() // the kept-alive connection goes stale
	}
}

func TestRawHTTPBodyUntilClose(t *testing.T) {
	// An HTTP/1.0-style answer without Content-Length ends when the
	// server closes the connection.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2 {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			for {
				l, err := br.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			io.CopyN(io.Discard, br, 2)
			io.WriteString(conn, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")
			conn.Close()
		}
	}()
	c, err := newRawHTTPCaller("http://"+lis.Addr().String()+"/x", []byte("{}"), -1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range 2 {
		if err := c.call(context.Background()); err != nil || string(c.body) != "hello" {
			t.Fatalf("call %d: %v, body %q", i, err, c.body)
		}
	}
	<-done
}

func TestRawHTTPTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	c, err := newRawHTTPCaller(srv.URL+"/x", []byte("{}"), -1, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.call(context.Background()); ErrorKind(err) != "timeout" {
		t.Errorf("slow server: %v (kind %q), want timeout", err, kindOf(err))
	}

	c, err = newRawHTTPCaller(srv.URL+"/x", []byte("{}"), -1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := abortOnCancel(ctx, c)
	defer stop()
	// Cancel once the request is on its way; the call must return then
	// rather than after its one-minute timeout.
	go func() {
		defer cancel()
		for range 5000 {
			c.mu.Lock()
			up := c.conn != nil
			c.mu.Unlock()
			if up {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if err := c.call(ctx); ErrorKind(err) != "canceled" {
		t.Errorf("cancelled run: %v (kind %q), want canceled", err, kindOf(err))
	}
}

func TestRawHTTPRejectsHTTPS(t *testing.T) {
	if _, err := newRawHTTPCaller("https://example.com/x", nil, -1, time.Second); err == nil {
		t.Error("https accepted")
	}
}
