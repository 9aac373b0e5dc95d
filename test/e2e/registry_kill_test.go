package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// ackedVersion is a registration the server acknowledged with 2xx.
type ackedVersion struct {
	Version int64
	Digest  string
}

type regVersion struct {
	Model    string `json:"model"`
	Version  int64  `json:"version"`
	Stage    string `json:"stage"`
	Artifact struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
		Format string `json:"format"`
	} `json:"artifact"`
	Aliases []string `json:"aliases"`
}

// registerOnce uploads content and registers it as a version of model;
// a transport error (the server died) is returned as err.
func registerOnce(ctx context.Context, base, model string, content []byte, key string) (ackedVersion, int, error) {
	req, _ := http.NewRequestWithContext(ctx, "PUT", base+"/api/v1/artifacts", bytes.NewReader(content))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ackedVersion{}, 0, err
	}
	var art struct {
		Digest string `json:"digest"`
	}
	err = json.NewDecoder(resp.Body).Decode(&art)
	resp.Body.Close()
	if resp.StatusCode != 201 || err != nil {
		return ackedVersion{}, resp.StatusCode, fmt.Errorf("upload: HTTP %d %v", resp.StatusCode, err)
	}
	body := fmt.Sprintf(`{"artifact":{"digest":%q,"format":"onnx"},"metrics":{"accuracy":{"value":0.9,"direction":"higher"}}}`, art.Digest)
	req, _ = http.NewRequestWithContext(ctx, "POST", base+"/api/v1/models/"+model+"/versions", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return ackedVersion{}, 0, err
	}
	defer resp.Body.Close()
	var v regVersion
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return ackedVersion{}, resp.StatusCode, err
	}
	if resp.StatusCode != 201 {
		return ackedVersion{}, resp.StatusCode, fmt.Errorf("create version: HTTP %d", resp.StatusCode)
	}
	return ackedVersion{Version: v.Version, Digest: v.Artifact.Digest}, resp.StatusCode, nil
}

func listAllVersions(t *testing.T, s *server, model string) []regVersion {
	t.Helper()
	var all []regVersion
	token := ""
	for {
		r := s.get(t, "/api/v1/models/"+model+"/versions?max_results=50&page_token="+token)
		if r.code != 200 {
			t.Fatalf("list versions: HTTP %d %s", r.code, r.body)
		}
		var page struct {
			Versions      []regVersion `json:"versions"`
			NextPageToken string       `json:"next_page_token"`
		}
		r.json(t, &page)
		all = append(all, page.Versions...)
		if page.NextPageToken == "" {
			return all
		}
		token = page.NextPageToken
	}
}

func TestRegistryKill9(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var extra []string
			if backend == "postgres" {
				dsn, _ := pgSchema(t)
				extra = append(extra, "--registry", dsn)
			}
			dataDir := t.TempDir()
			args := append([]string{"--data-dir", dataDir, "--model-repository", t.TempDir()}, extra...)
			s := startServer(t, false, args...)
			if r := s.post(t, "/api/v1/models", `{"name":"killme"}`); r.code != 201 {
				t.Fatalf("create model: HTTP %d %s", r.code, r.body)
			}

			const writers = 4
			var (
				mu    sync.Mutex
				acked []ackedVersion
				wg    sync.WaitGroup
			)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			enough := make(chan struct{})
			var once sync.Once
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						content := bytes.Repeat([]byte(fmt.Sprintf("writer %d model %d %d|", w, i, time.Now().UnixNano())), 2000)
						a, code, err := registerOnce(ctx, s.url, "killme", content, fmt.Sprintf("w%d-%d", w, i))
						if err != nil {
							if code != 0 && code/100 != 5 {
								t.Errorf("registration refused before the kill: %v", err)
							}
							return // the server is gone
						}
						mu.Lock()
						acked = append(acked, a)
						if len(acked) >= 24 {
							once.Do(func() { close(enough) })
						}
						mu.Unlock()
					}
				}()
			}
			select {
			case <-enough:
			case <-ctx.Done():
				t.Fatal("registrations did not progress")
			}
			if err := s.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			_ = s.cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d registrations acknowledged before SIGKILL", len(acked))

			s2 := startServer(t, false, args...)
			if left, _ := os.ReadDir(filepath.Join(dataDir, "blobs", "tmp")); len(left) != 0 {
				t.Fatalf("unfinished uploads survive a restart: %v", left)
			}
			got := listAllVersions(t, s2, "killme")
			byNum := map[int64]regVersion{}
			for _, v := range got {
				byNum[v.Version] = v
			}
			for _, a := range acked {
				v, ok := byNum[a.Version]
				if !ok {
					t.Fatalf("acknowledged version %d lost after kill -9", a.Version)
				}
				if v.Artifact.Digest != a.Digest {
					t.Fatalf("version %d: digest %s, acknowledged %s", a.Version, v.Artifact.Digest, a.Digest)
				}
			}
			nums := make([]int, 0, len(got))
			for _, v := range got {
				nums = append(nums, int(v.Version))
				// Every version's blob is there and verifies.
				r := s2.get(t, "/api/v1/artifacts/"+v.Artifact.Digest)
				if r.code != 200 {
					t.Fatalf("version %d: artifact %s: HTTP %d %s", v.Version, v.Artifact.Digest, r.code, r.body)
				}
				h := sha256.Sum256(r.body)
				if "sha256:"+hex.EncodeToString(h[:]) != v.Artifact.Digest || int64(len(r.body)) != v.Artifact.Size {
					t.Fatalf("version %d: downloaded bytes do not match %s", v.Version, v.Artifact.Digest)
				}
			}
			sort.Ints(nums)
			for i, n := range nums {
				if n != i+1 {
					t.Fatalf("version numbers after restart are not 1..%d: %v", len(nums), nums)
				}
			}
			// The registry keeps working and numbering continues.
			next, code, err := registerOnce(context.Background(), s2.url, "killme", []byte("after restart"), "after-restart")
			if err != nil {
				t.Fatalf("registration after restart: HTTP %d %v", code, err)
			}
			if next.Version != int64(len(nums)+1) {
				t.Fatalf("next version %d, want %d", next.Version, len(nums)+1)
			}
			r := s2.get(t, "/api/v1/artifacts/"+next.Digest)
			if b, _ := io.ReadAll(bytes.NewReader(r.body)); string(b) != "after restart" {
				t.Fatalf("artifact after restart: %q", b)
			}
		})
	}
}
