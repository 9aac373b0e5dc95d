package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// rawHTTPCaller speaks HTTP/1.1 itself over one kept-alive TCP connection:
// the request line, headers and body are one pre-built byte slice written
// with a single call, and the answer is parsed from a reused buffered
// reader into a reused body buffer. Per request it allocates nothing and
// involves no other goroutine, unlike net/http's client (three goroutines
// and some thirty allocations per request), which matters when client and
// server share two cores.
type rawHTTPCaller struct {
	addr    string
	req     []byte
	timeout time.Duration
	mu      sync.Mutex // guards conn against abort; only the owning worker changes it
	conn    net.Conn
	br      *bufio.Reader
	body    []byte
	used    bool // the connection has answered a request before
}

// newRawHTTPCaller prepares requests to u (http only).
func newRawHTTPCaller(u string, payload []byte, headerLen int, timeout time.Duration) (*rawHTTPCaller, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if pu.Scheme != "http" {
		return nil, fmt.Errorf("raw HTTP client: scheme %q is not http", pu.Scheme)
	}
	addr := pu.Host
	if pu.Port() == "" {
		addr = net.JoinHostPort(pu.Hostname(), "80")
	}
	var b bytes.Buffer
	b.Grow(256 + len(payload))
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: kiln-bench\r\n", pu.RequestURI(), pu.Host)
	if headerLen >= 0 {
		fmt.Fprintf(&b, "Content-Type: application/octet-stream\r\n%s: %d\r\n", HeaderContentLength, headerLen)
	} else {
		b.WriteString("Content-Type: application/json\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(payload))
	b.Write(payload)
	return &rawHTTPCaller{addr: addr, req: b.Bytes(), timeout: timeout}, nil
}

func (c *rawHTTPCaller) close() {
	if c.conn != nil {
		c.conn.Close()
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
	}
}

// abort makes a blocked call return at once (the run was cancelled); it
// may be called from another goroutine.
func (c *rawHTTPCaller) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (c *rawHTTPCaller) call(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.roundTrip(ctx)
	if err != nil && c.used && errors.Is(err, errStale) {
		// The server closed an idle kept-alive connection: one retry on a
		// fresh connection, as net/http does.
		err = c.roundTrip(ctx)
	}
	return err
}

// errStale marks a kept-alive connection that failed before any byte of
// the answer arrived.
var errStale = errors.New("connection closed before the answer")

func (c *rawHTTPCaller) roundTrip(ctx context.Context) error {
	if c.conn == nil {
		d := net.Dialer{Timeout: min(c.timeout, 5*time.Second)}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.conn, c.used = conn, false
		c.mu.Unlock()
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 32<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		c.close()
		return err
	}
	if err := ctx.Err(); err != nil {
		return err // cancelled while this deadline replaced abort's
	}
	if _, err := c.conn.Write(c.req); err != nil {
		used := c.used
		c.close()
		if used {
			return fmt.Errorf("%w: %w", errStale, err)
		}
		return err
	}
	code, keep, err := c.readAnswer()
	if err != nil {
		c.close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return err
	}
	c.used = true
	if !keep {
		c.close()
	}
	if code != 200 {
		return &StatusError{Code: code}
	}
	if len(c.body) == 0 {
		return errEmpty
	}
	return nil
}

// readAnswer parses one HTTP/1.1 answer: status, the headers that matter
// (Content-Length, Transfer-Encoding: chunked, Connection: close) and the
// body, which it reads into c.body.
func (c *rawHTTPCaller) readAnswer() (code int, keepAlive bool, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && c.used && (errors.Is(err, io.EOF) || isReset(err)) {
			return 0, false, fmt.Errorf("%w: %w", errStale, err)
		}
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("malformed status line %q", trimCRLF(line))
	}
	keepAlive = line[7] == '1' // HTTP/1.1 keeps alive by default, 1.0 does not
	length, chunked := -1, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h = trimCRLF(h)
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				keepAlive = false
			case bytes.EqualFold(value, []byte("keep-alive")):
				keepAlive = true
			}
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		err = c.readChunked()
	case length >= 0:
		c.body = grow(c.body, length)
		_, err = io.ReadFull(c.br, c.body)
	default: // the body runs to the end of the connection
		var b bytes.Buffer
		_, err = b.ReadFrom(c.br)
		c.body, keepAlive = append(c.body, b.Bytes()...), false
	}
	return code, keepAlive, err
}

func (c *rawHTTPCaller) readChunked() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 31)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, then the empty line
				t, err := c.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(trimCRLF(t)) == 0 {
					return nil
				}
			}
		}
		start := len(c.body)
		c.body = grow(c.body, start+int(n))
		if _, err := io.ReadFull(c.br, c.body[start:]); err != nil {
			return err
		}
		if crlf, err := c.br.ReadSlice('\n'); err != nil || len(trimCRLF(crlf)) != 0 {
			return errors.New("chunk not followed by CRLF")
		}
	}
}

// grow returns b resized to n bytes, keeping its contents.
func grow(b []byte, n int) []byte {
	if n <= cap(b) {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}
