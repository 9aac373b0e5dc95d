package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kilnai/kiln/internal/registry"
	"github.com/kilnai/kiln/internal/registry/registrytest"
	"github.com/kilnai/kiln/internal/registry/sqlstore"
)

func TestSQLite(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		s, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "registry.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// postgresDSN returns KILN_TEST_POSTGRES, or skips (fails under
// KILN_REQUIRE_SERVICES=1) when it is unset.
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("KILN_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("KILN_REQUIRE_SERVICES") == "1" {
			t.Fatal("KILN_TEST_POSTGRES is not set and KILN_REQUIRE_SERVICES=1")
		}
		t.Skip("KILN_TEST_POSTGRES not set")
	}
	return dsn
}

// freshSchema creates a uniquely named schema, drops it when the test ends,
// and returns dsn with search_path set to it.
func freshSchema(t *testing.T, dsn string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "regtest_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	registrytest.Run(t, func(t *testing.T) registry.Store {
		s, err := sqlstore.Open(context.Background(), freshSchema(t, dsn), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenAndSchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "registry.db")
	s, err := sqlstore.Open(ctx, path, nil) // a bare path, in a directory that does not exist yet
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(s, registry.Options{})
	if _, err := svc.CreateModel(ctx, "a", registry.CreateModelInput{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateVersion(ctx, "a", registry.CreateVersionInput{Model: "m", Artifact: registry.Artifact{Digest: "sha256:" + hex.EncodeToString(make([]byte, 32))}}); err != nil {
		t.Fatal(err)
	}
	v1, err := s.SchemaVersion(ctx)
	if err != nil || v1 < 2 {
		t.Fatalf("schema version = %d, %v", v1, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = sqlstore.Open(ctx, "sqlite:"+path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if v2, err := s.SchemaVersion(ctx); err != nil || v2 != v1 {
		t.Fatalf("schema version after reopen = %d, %v; want %d", v2, err, v1)
	}
	v, err := registry.NewService(s, registry.Options{}).GetVersion(ctx, "m", 1)
	if err != nil || v.Model != "m" {
		t.Fatalf("version after reopen = %+v, %v", v, err)
	}
	s.Close()

	// a database from a newer Kiln is refused, not migrated backwards
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO registry_schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := sqlstore.Open(ctx, path, nil); err == nil {
		s.Close()
		t.Fatal("a newer schema was accepted")
	}
}

func TestOpenErrors(t *testing.T) {
	for _, dsn := range []string{"", "sqlite:", "sqlite:registry.db?mode=ro", "postgres://127.0.0.1:1/none?connect_timeout=1"} {
		if s, err := sqlstore.Open(context.Background(), dsn, nil); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", dsn)
		}
	}
}

// TestPostgresNotify checks that stage and alias changes reach LISTEN
// kiln_registry with the change in the payload.
func TestPostgresNotify(t *testing.T) {
	dsn := freshSchema(t, postgresDSN(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sqlstore.Open(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN kiln_registry"); err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(s, registry.Options{})
	if _, err := svc.CreateModel(ctx, "a", registry.CreateModelInput{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateVersion(ctx, "a", registry.CreateVersionInput{Model: "m", Artifact: registry.Artifact{Digest: "sha256:" + hex.EncodeToString(make([]byte, 32))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Transition(ctx, "a", registry.TransitionInput{Model: "m", Version: 1, To: registry.StageProduction}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetAlias(ctx, "a", registry.SetAliasInput{Model: "m", Alias: "champion", Version: 1}); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"kind": "stage_changed", "model": "m", "version": float64(1), "to": "production"},
		{"kind": "alias_changed", "model": "m", "alias": "champion", "version": float64(1)},
	}
	for _, w := range want {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(n.Payload), &got); err != nil {
			t.Fatalf("payload %q: %v", n.Payload, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("notification = %v, want %v", got, w)
		}
	}
}

// TestRowsWithoutImmutableCopy reads versions written before migration 5
// (no copy of metrics and params on the row) from the key/value tables.
func TestRowsWithoutImmutableCopy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := sqlstore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	svc := registry.NewService(s, registry.Options{})
	if _, err := svc.CreateModel(ctx, "a", registry.CreateModelInput{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	in := registry.CreateVersionInput{Model: "m", Artifact: registry.Artifact{Digest: "sha256:" + hex.EncodeToString(make([]byte, 32))},
		Metrics: map[string]registry.Metric{"acc": {Value: 0.5, Direction: registry.HigherIsBetter}},
		Params:  map[string]string{"lr": "0.1"}, Tags: map[string]string{"t": "1"},
		Signature: registry.Signature{Inputs: []registry.TensorSpec{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 2}}}},
		Lineage:   registry.Lineage{PipelineRunID: "run-1", DatasetDigests: []string{"sha256:aa"}}}
	for i := 0; i < 2; i++ {
		if _, _, err := svc.CreateVersion(ctx, "a", in); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE registry_versions SET immutable_json = '' WHERE version = 1`); err != nil {
		t.Fatal(err)
	}
	p, err := svc.SearchVersions(ctx, registry.SearchQuery{Filter: "name = 'm'"})
	if err != nil || len(p.Versions) != 2 {
		t.Fatalf("search = %+v, %v", p, err)
	}
	for _, v := range p.Versions {
		if !reflect.DeepEqual(v.Metrics, in.Metrics) || !reflect.DeepEqual(v.Params, in.Params) || !reflect.DeepEqual(v.Tags, in.Tags) ||
			!reflect.DeepEqual(v.Signature, in.Signature) || !reflect.DeepEqual(v.Lineage, in.Lineage) {
			t.Fatalf("version %d = metrics %v params %v tags %v", v.Version, v.Metrics, v.Params, v.Tags)
		}
	}
}
