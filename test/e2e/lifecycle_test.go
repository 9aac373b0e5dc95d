package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// copyModel copies models/<name> into repo/<as> with an optional config.yaml.
func copyModel(t *testing.T, repo, name, as, config string) {
	t.Helper()
	src := filepath.Join(repoRoot(), "models", name, "1", "model.onnx")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(repo, as, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(repo, as, "config.yaml"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// irisBinary builds a binary-extension request for one iris row asking for
// binary probabilities, so outputs can be compared bit for bit.
func irisBinary(row [4]float32) (map[string]string, []byte) {
	head := `{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],` +
		`"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}`
	body := []byte(head)
	for _, v := range row {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
	}
	return map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(head))}, body
}

// binaryOutput returns the binary part of a response.
func binaryOutput(r result) ([]byte, error) {
	n, err := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
	if err != nil || n > len(r.body) {
		return nil, fmt.Errorf("bad Inference-Header-Content-Length %q", r.header.Get("Inference-Header-Content-Length"))
	}
	return r.body[n:], nil
}

func rowFor(i int) [4]float32 {
	return [4]float32{4.3 + float32(i%36)/10, 2 + float32(i%24)/10, 1 + float32(i%59)/10, 0.1 + float32(i%25)/10}
}

// TestDynamicBatching: 32 concurrent batch-1 clients with a queue delay
// form batches averaging more than 8 rows, and every output is
// bit-identical to the same row inferred alone.
func TestDynamicBatching(t *testing.T) {
	requireORT(t)
	repo := t.TempDir()
	copyModel(t, repo, "iris", "iris", "max_batch_size: 64\ndynamic_batching: {max_queue_delay: 20ms}\nparameters: {intra_op_threads: 1}\n")
	s := startServer(t, true, "--model-repository", repo)
	const clients, perClient = 32, 8
	alone := make([][]byte, clients*perClient)
	for i := range alone {
		hdr, body := irisBinary(rowFor(i))
		r := s.do(t, "POST", "/v2/models/iris/infer", hdr, body)
		if r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		out, err := binaryOutput(r)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = out
	}
	before := stats(t, s, "iris")
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perClient; k++ {
				i := c*perClient + k
				hdr, body := irisBinary(rowFor(i))
				r, err := doRaw(s.url+"/v2/models/iris/infer", hdr, body)
				if err != nil {
					errs <- err
					return
				}
				out, err := binaryOutput(r)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(out, alone[i]) {
					errs <- fmt.Errorf("row %d: batched output %x differs from unbatched %x", i, out, alone[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := stats(t, s, "iris")
	inferences := after.InferenceCount - before.InferenceCount
	executions := after.ExecutionCount - before.ExecutionCount
	if inferences != clients*perClient {
		t.Fatalf("inference_count grew by %d, want %d", inferences, clients*perClient)
	}
	mean := float64(inferences) / float64(executions)
	t.Logf("32 clients x %d requests: %d rows in %d executions, mean batch %.1f", perClient, inferences, executions, mean)
	if mean <= 8 {
		t.Fatalf("mean executed batch size %.1f, want > 8", mean)
	}
}

type modelStats struct {
	InferenceCount uint64 `json:"inference_count"`
	ExecutionCount uint64 `json:"execution_count"`
}

func stats(t *testing.T, s *server, model string) modelStats {
	t.Helper()
	var st struct {
		ModelStats []modelStats `json:"model_stats"`
	}
	s.get(t, "/v2/models/"+model+"/stats").json(t, &st)
	if len(st.ModelStats) != 1 {
		t.Fatalf("stats: %+v", st)
	}
	return st.ModelStats[0]
}

func doRaw(url string, hdr map[string]string, body []byte) (result, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode != 200 {
		return result{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, data)
	}
	return result{code: resp.StatusCode, header: resp.Header, body: data}, nil
}

// TestHotReloadUnderLoad: 100 reloads of a changed model file while 16
// clients send continuously: no request fails.
func TestHotReloadUnderLoad(t *testing.T) {
	requireORT(t)
	repo := t.TempDir()
	copyModel(t, repo, "iris", "iris", "max_batch_size: 16\ninstances: 2\nparameters: {intra_op_threads: 1}\nwarmup: [{name: zeros, batch_size: 4}]\n")
	s := startServer(t, true, "--model-repository", repo)
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := doRaw(s.url+"/v2/models/iris/infer", nil, []byte(irisRequest("")))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	model := filepath.Join(repo, "iris", "1", "model.onnx")
	for i := 0; i < 100; i++ {
		// A new modification time makes the reload load a new incarnation.
		ts := time.Now().Add(time.Duration(i+1) * time.Second)
		if err := os.Chtimes(model, ts, ts); err != nil {
			t.Fatal(err)
		}
		if r := s.post(t, "/v2/repository/models/iris/load", ""); r.code != 200 {
			t.Fatalf("reload %d: %d %s", i, r.code, r.body)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("100 hot reloads under 16 clients: %d requests succeeded, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during reloads; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request completed")
	}
}

// TestGracefulShutdown: on SIGTERM readiness turns 503 at once, queued and
// in-flight requests still complete, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	requireORT(t)
	repo := t.TempDir()
	// A long queue delay keeps requests queued when SIGTERM arrives.
	copyModel(t, repo, "iris", "iris", "max_batch_size: 64\ndynamic_batching: {max_queue_delay: 1500ms, preferred_batch_sizes: [64]}\n")
	s := startServer(t, true, "--model-repository", repo, "--drain-delay", "500ms", "--exit-timeout", "20s")
	const n = 8
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := doRaw(s.url+"/v2/models/iris/infer", nil, []byte(irisRequest("")))
			results <- err
		}()
	}
	// Let the requests reach the queue.
	time.Sleep(200 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(s.url + "/v2/health/ready")
		if err == nil {
			var body map[string]bool
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == 503 && !body["ready"] {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("readiness did not turn 503 after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < n; i++ {
		if err := <-results; err != nil {
			t.Fatalf("request during shutdown failed: %v", err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("kiln exited with %v after SIGTERM; log:\n%s", err, s.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kiln did not exit after SIGTERM")
	}
}

// TestRedisResponseCacheSharedByReplicas: two Kiln processes with the same
// Redis cache: a response computed by one is a cache hit on the other.
func TestRedisResponseCacheSharedByReplicas(t *testing.T) {
	requireORT(t)
	url := os.Getenv("KILN_TEST_REDIS")
	if url == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_REDIS is not set")
		}
		t.Skip("KILN_TEST_REDIS is not set")
	}
	repo := t.TempDir()
	copyModel(t, repo, "iris", "iris", "max_batch_size: 8\nresponse_cache: true\n")
	// A prefix of this run's own keeps runs apart.
	prefix := fmt.Sprintf("kiln:e2e:%d:", time.Now().UnixNano())
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	cacheURL := url + sep + "key_prefix=" + prefix + "&ttl=5m"
	a := startServer(t, true, "--model-repository", repo, "--cache", cacheURL)
	b := startServer(t, true, "--model-repository", repo, "--cache", cacheURL)
	body := irisRequest(`"id":"c",`)
	ra := a.post(t, "/v2/models/iris/infer", body)
	rb := b.post(t, "/v2/models/iris/infer", body)
	if ra.code != 200 || rb.code != 200 || string(ra.body) != string(rb.body) {
		t.Fatalf("replica answers differ:\n%s\n%s", ra.body, rb.body)
	}
	var st struct {
		ModelStats []struct {
			InferenceCount uint64 `json:"inference_count"`
			InferenceStats map[string]struct {
				Count uint64 `json:"count"`
			} `json:"inference_stats"`
		} `json:"model_stats"`
	}
	b.get(t, "/v2/models/iris/stats").json(t, &st)
	s := st.ModelStats[0]
	if s.InferenceStats["cache_hit"].Count != 1 || s.InferenceCount != 0 {
		t.Fatalf("replica b: cache_hit %d, inference_count %d; want 1 and 0", s.InferenceStats["cache_hit"].Count, s.InferenceCount)
	}
}
