package e2e

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// pgSchema creates a fresh PostgreSQL schema for one test and returns a
// DSN whose search_path is that schema (dropped at the end), or skips when
// KILN_TEST_POSTGRES is unset (fails under KILN_REQUIRE_SERVICES=1).
func pgSchema(t *testing.T) (dsn string, db *sql.DB) {
	t.Helper()
	base := os.Getenv("KILN_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_POSTGRES is not set and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_POSTGRES is not set")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "kiln_e2e_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`)
		admin.Close()
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	dsn = base + sep + "search_path=" + schema
	db, err = sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// exampleEnv maps the variables an example uses to test services. It
// reports false when a variable names a service this run does not have
// (the example is then only validated, with a placeholder value).
func exampleEnv(t *testing.T, spec []byte) (env []string, runnable bool, pgDSN string) {
	t.Helper()
	runnable = true
	seen := map[string]bool{}
	for _, m := range varRef.FindAllSubmatch(spec, -1) {
		name, hasDefault := string(m[1]), len(m[2]) > 0
		if seen[name] {
			continue
		}
		seen[name] = true
		switch {
		case name == "DATABASE_URL" || strings.Contains(name, "POSTGRES"):
			if os.Getenv("KILN_TEST_POSTGRES") == "" {
				runnable = false
				env = append(env, name+"=postgres://kiln@127.0.0.1:5432/kiln")
				continue
			}
			if pgDSN == "" {
				pgDSN, _ = pgSchema(t)
			}
			env = append(env, name+"="+pgDSN)
		case strings.Contains(name, "NATS"):
			if u := os.Getenv("KILN_TEST_NATS"); u != "" {
				env = append(env, name+"="+u)
			} else {
				runnable = false
				env = append(env, name+"=nats://127.0.0.1:4222")
			}
		case strings.Contains(name, "SALT") || strings.Contains(name, "SECRET") || strings.Contains(name, "TOKEN"):
			env = append(env, name+"=e2e-secret-0123456789abcdef")
		case hasDefault:
		case name == "KILN_GRPC_ADDR":
			// A remote Kiln: start one with gRPC on a free port.
			if _, err := os.Stat(ortLib()); err != nil {
				runnable = false
				env = append(env, name+"=127.0.0.1:9")
				continue
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			startServer(t, true, "--model-repository", "models", "--grpc", addr)
			env = append(env, name+"="+addr)
		case strings.HasSuffix(name, "_ADDR"):
			runnable = false
			env = append(env, name+"=127.0.0.1:9")
		default:
			// A service the examples test does not provide (an HTTP API):
			// validate with a placeholder, do not run.
			runnable = false
			env = append(env, name+"=http://127.0.0.1:9/placeholder")
		}
	}
	return env, runnable, pgDSN
}

// TestPipelineExamples validates every examples/pipelines/*.yaml with the
// binary and runs those whose services exist here, in a scratch directory
// (inputs under examples/ resolve through a link; outputs land in it).
func TestPipelineExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(), "examples", "pipelines", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples in examples/pipelines")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			spec, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			env, runnable, pgDSN := exampleEnv(t, spec)
			work := t.TempDir()
			if err := os.Symlink(filepath.Join(repoRoot(), "examples"), filepath.Join(work, "examples")); err != nil {
				t.Fatal(err)
			}
			rel := filepath.Join("examples", "pipelines", filepath.Base(f))
			out, errOut, code := runIn(t, work, env, "pipeline", "validate", rel)
			if code != 0 {
				t.Fatalf("validate: exit %d\n%s%s", code, out, errOut)
			}
			if !runnable {
				t.Logf("validated; not run (needs a service this test run does not have)")
				return
			}
			args := []string{"pipeline", "run", rel, "--data-dir", filepath.Join(work, "data"), "--progress", "log"}
			if bytes.Contains(spec, []byte("predict:")) && !bytes.Contains(spec, []byte("remote:")) {
				requireORT(t)
				args = append(args, "--model-repository", filepath.Join(repoRoot(), "models"))
				env = append(env, "KILN_ORT_LIB="+ortLib())
			}
			out, errOut, code = runIn(t, work, env, args...)
			if code != 0 {
				t.Fatalf("run: exit %d\n%s%s", code, out, errOut)
			}
			if !strings.Contains(out, " succeeded in ") {
				t.Fatalf("run summary: %s", out)
			}
			if name == "seed-scenario" {
				checkSeedScenario(t, work, pgDSN, args, env)
			}
		})
	}
}

// ortLib is the ONNX Runtime library the tests use.
func ortLib() string {
	if lib := os.Getenv("KILN_ORT_LIB"); lib != "" {
		return lib
	}
	return filepath.Join(repoRoot(), "third_party", "onnxruntime", "libonnxruntime.so.1")
}

// runIn runs the binary in dir with extra environment.
func runIn(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(kilnBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// checkSeedScenario checks the seed scenario's outputs after its first
// run, then runs it again: the result cache answers (no source read) and
// the upserted table still has one row per input row.
func checkSeedScenario(t *testing.T, work, pgDSN string, args, env []string) {
	t.Helper()
	st, err := os.Stat(filepath.Join(work, "out", "iris-scored.parquet"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("parquet output: %v", err)
	}
	db, err := sql.Open("pgx", pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() (n, correct int) {
		t.Helper()
		if err := db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE predicted_species = species) FROM iris_scores`).Scan(&n, &correct); err != nil {
			t.Fatal(err)
		}
		return n, correct
	}
	n, correct := count()
	if n != 150 || correct < 135 {
		t.Errorf("iris_scores: %d rows, %d predicted right", n, correct)
	}
	out, errOut, code := runIn(t, work, env, args...)
	if code != 0 || !strings.Contains(out, " cached in ") || !strings.Contains(out, "source (cache)") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	if n2, _ := count(); n2 != 150 {
		t.Errorf("after the cached re-run iris_scores has %d rows", n2)
	}
}
