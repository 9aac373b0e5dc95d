package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kilnai/kiln/internal/catalog"
	"github.com/kilnai/kiln/internal/httpapi"
	"github.com/kilnai/kiln/internal/inference"
	"github.com/kilnai/kiln/internal/inference/inferencetest"
	"github.com/kilnai/kiln/internal/serving"
)

const gatedSpec = `{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,2]}],"outputs":[{"name":"y","datatype":"FP32","shape":[-1,2],"from":"x"}]}`

func gatedServer(t *testing.T, config string) (*httptest.Server, *inferencetest.Fake, func(), chan inferencetest.Call) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "m", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "m", "1", "model.fake.json"), []byte(gatedSpec), 0o644)
	os.WriteFile(filepath.Join(dir, "m", "config.yaml"), []byte(config), 0o644)
	fake := inferencetest.NewFake()
	gate := make(chan struct{})
	entered := make(chan inferencetest.Call, 64)
	fake.SetGate(gate)
	fake.SetEntered(entered)
	reg := prometheus.NewRegistry()
	mgr := serving.New(serving.Options{Catalog: catalog.NewRepository(dir), Backends: []inference.Backend{fake}, Registerer: reg})
	if err := mgr.LoadAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	api := httpapi.New(httpapi.Options{Manager: mgr, Gatherer: reg, Registerer: reg})
	api.SetStarted()
	srv := httptest.NewServer(api)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() {
		release()
		srv.Close()
		_ = mgr.Close(context.Background())
	})
	return srv, fake, release, entered
}

func inferBody(v string) string {
	return `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[` + v + `,1]}]}`
}

func doPost(url, body string, hdr http.Header) (*http.Response, string, error) {
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// TestOverload: with the backend blocked and max_queue_size N, request
// N+1 (beyond the one executing) is refused at once with 503 and
// Retry-After, while health and metrics still answer.
func TestOverload(t *testing.T) {
	const queue = 3
	srv, _, release, entered := gatedServer(t, "max_batch_size: 1\ndynamic_batching: {max_queue_size: 3}\n")
	results := make(chan int, queue+1)
	go func() {
		resp, _, err := doPost(srv.URL+"/v2/models/m/infer", inferBody("0"), nil)
		if err != nil {
			results <- -1
			return
		}
		results <- resp.StatusCode
	}()
	<-entered // one request is executing and blocks the only instance
	for i := 0; i < queue; i++ {
		go func() {
			resp, _, err := doPost(srv.URL+"/v2/models/m/infer", inferBody("1"), nil)
			if err != nil {
				results <- -1
				return
			}
			results <- resp.StatusCode
		}()
	}
	// Wait until the queue is full, as the pending-requests gauge says.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body, err := doGet(srv.URL + "/metrics")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("metrics during overload: %v %v", resp, err)
		}
		if strings.Contains(body, `kiln_inference_pending_requests{model="m",version="1"} 3`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue never filled:\n%s", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, body, err := doPost(srv.URL+"/v2/models/m/infer", inferBody("2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "queue") {
		t.Fatalf("overflowing request: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, _, err := doGet(srv.URL + "/v2/health/live"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("live during overload: %v %v", resp, err)
	}
	release()
	for i := 0; i < queue+1; i++ {
		if code := <-results; code != 200 {
			t.Fatalf("admitted request got %d", code)
		}
	}
}

func doGet(url string) (*http.Response, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// TestTimeoutAndDisconnectNeverReachBackend: a request whose timeout
// parameter expires in the queue gets 504, one whose client disconnects is
// dropped, and the backend never sees either.
func TestTimeoutAndDisconnectNeverReachBackend(t *testing.T) {
	srv, fake, release, entered := gatedServer(t, "max_batch_size: 4\n")
	first := make(chan int, 1)
	go func() {
		resp, _, err := doPost(srv.URL+"/v2/models/m/infer", inferBody("0"), nil)
		if err != nil {
			first <- -1
			return
		}
		first <- resp.StatusCode
	}()
	<-entered // the instance is busy until the gate opens

	// Queue timeout of 20ms.
	resp, body, err := doPost(srv.URL+"/v2/models/m/infer", `{"parameters":{"timeout":20000},"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[7,7]}]}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("expired request: %d %s", resp.StatusCode, body)
	}

	// A client that gives up while queued.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/models/m/infer", strings.NewReader(inferBody("8")))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request with an expired client context succeeded")
	}
	cancel()
	// Let the server notice the disconnect before opening the gate.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m, _ := doGet(srv.URL + "/metrics")
		if strings.Contains(m, `kiln_inference_failures_total{model="m",reason="canceled",version="1"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("disconnect not noticed:\n%s", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	if code := <-first; code != 200 {
		t.Fatalf("first request: %d", code)
	}
	for _, c := range fake.Calls() {
		if c.BatchSize != 1 {
			t.Fatalf("backend saw a batch of %d: expired work reached it", c.BatchSize)
		}
	}
	if n := len(fake.Calls()); n != 1 {
		t.Fatalf("backend ran %d times, want 1 (only the first request)", n)
	}
}
