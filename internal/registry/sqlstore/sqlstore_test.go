package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

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
