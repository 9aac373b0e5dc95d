package runstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kilnai/kiln/internal/pipeline"
)

func openSQLite(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), DefaultDSN(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens a store in a fresh schema of the test database.
func openPostgres(t *testing.T) *Store {
	t.Helper()
	dsn := os.Getenv("KILN_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_POSTGRES is not set and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_POSTGRES not set")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "kiln_runs_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	s, err := Open(context.Background(), dsn+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStores(t *testing.T) {
	for name, open := range map[string]func(*testing.T) *Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			testStore(t, s)
		})
	}
}

func testStore(t *testing.T, s *Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, id := range []string{"a", "b", "c"} {
		r := &pipeline.RunRecord{ID: id, Pipeline: "p", SpecDigest: "d" + id, Status: pipeline.StatusRunning, Started: t0.Add(time.Duration(i) * time.Minute)}
		if err := s.CreateRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRun(ctx, &pipeline.RunRecord{ID: "a", Pipeline: "p", Started: t0}); err == nil {
		t.Error("duplicate id accepted")
	}
	upd := &pipeline.RunRecord{ID: "b", Pipeline: "p", SpecDigest: "db", Status: pipeline.StatusSucceeded,
		Started: t0.Add(time.Minute), Finished: t0.Add(2 * time.Minute), Duration: time.Minute,
		RowsIn: 10, RowsOut: 8, RowsRejected: 2, CacheKey: "k",
		Stages:  []pipeline.StageStats{{Stage: "source", Component: "file", RowsOut: 10, Bytes: 80, Duration: time.Second}},
		Params:  map[string]map[string]any{"transforms[0].standardize": {"mean": map[string]any{"age": 41.5}}},
		Lineage: []pipeline.ModelRef{{Model: "iris", Version: "1"}, {Model: "churn", Version: "3"}},
	}
	if err := s.UpdateRun(ctx, upd); err != nil {
		t.Fatal(err)
	}
	// Updating again replaces the lineage rather than adding to it.
	if err := s.UpdateRun(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRun(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != pipeline.StatusSucceeded || got.RowsOut != 8 || !got.Finished.Equal(upd.Finished) || got.Duration != time.Minute || got.CacheKey != "k" {
		t.Errorf("got %+v", got)
	}
	if len(got.Stages) != 1 || got.Stages[0].Duration != time.Second || got.Stages[0].Bytes != 80 {
		t.Errorf("stages %+v", got.Stages)
	}
	if m := got.Params["transforms[0].standardize"]["mean"].(map[string]any)["age"]; m != 41.5 {
		t.Errorf("params %+v", got.Params)
	}
	if len(got.Lineage) != 2 || got.Lineage[0].Model != "churn" {
		t.Errorf("lineage %+v", got.Lineage)
	}
	if _, err := s.GetRun(ctx, "zzz"); !errors.Is(err, pipeline.ErrRunNotFound) {
		t.Errorf("missing run: %v", err)
	}
	if err := s.UpdateRun(ctx, &pipeline.RunRecord{ID: "zzz"}); !errors.Is(err, pipeline.ErrRunNotFound) {
		t.Errorf("update missing run: %v", err)
	}
	list, err := s.ListRuns(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "c" || list[1].ID != "b" || len(list[1].Lineage) != 2 {
		t.Errorf("list = %v %v", list[0].ID, list[1].ID)
	}
	ids, err := s.RunsForModel(ctx, "iris", "1")
	if err != nil || len(ids) != 1 || ids[0] != "b" {
		t.Errorf("runs for model = %v %v", ids, err)
	}
}

func TestReopenAndConcurrentMigrate(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			s, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "r.db"))
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM pipeline_schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Errorf("migrations = %d %v", n, err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, dsn := range []string{"mysql://x", "sqlite:", "postgres://user:secret@127.0.0.1:1/db?connect_timeout=1"} {
		_, err := Open(context.Background(), dsn)
		if err == nil {
			t.Errorf("%s: no error", dsn)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("password in error: %v", err)
		}
	}
}
