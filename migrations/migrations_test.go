package migrations

import (
	"database/sql"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"

	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// TestLayout checks that each dialect has goose migrations at the root of its
// file system, each with an Up and a Down section, and that both dialects
// carry the same versions.
func TestLayout(t *testing.T) {
	dialects := map[string]fs.FS{"postgres": Postgres, "sqlite": SQLite}
	names := map[string][]string{}
	for dialect, fsys := range dialects {
		matches, err := fs.Glob(fsys, "*.sql")
		if err != nil {
			t.Fatalf("%s: glob: %v", dialect, err)
		}
		if len(matches) == 0 {
			t.Fatalf("%s: no migrations at the root of the file system", dialect)
		}
		for _, name := range matches {
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				t.Fatalf("%s: read %s: %v", dialect, name, err)
			}
			for _, marker := range []string{"-- +goose Up", "-- +goose Down"} {
				if !strings.Contains(string(b), marker) {
					t.Errorf("%s/%s: missing %q", dialect, name, marker)
				}
			}
		}
		names[dialect] = matches
	}
	if strings.Join(names["postgres"], ",") != strings.Join(names["sqlite"], ",") {
		t.Errorf("dialects disagree on migrations: postgres %v, sqlite %v", names["postgres"], names["sqlite"])
	}
}

// TestUpDownUp applies every migration, rolls all of them back and applies
// them again, so each Down section really undoes its Up.
func TestUpDownUp(t *testing.T) {
	cases := []struct {
		name    string
		dialect goose.Dialect
		fsys    fs.FS
		open    func(t *testing.T) *sql.DB
	}{
		{"sqlite", goose.DialectSQLite3, SQLite, func(t *testing.T) *sql.DB {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db")+"?_pragma=foreign_keys(1)")
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return db
		}},
		{"postgres", goose.DialectPostgres, Postgres, func(t *testing.T) *sql.DB {
			db, err := sql.Open("pgx", pgtest.URL(t))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return db
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := tc.open(t)
			t.Cleanup(func() { db.Close() })
			p, err := goose.NewProvider(tc.dialect, db, tc.fsys, goose.WithDisableGlobalRegistry(true))
			if err != nil {
				t.Fatalf("provider: %v", err)
			}
			ctx := t.Context()
			if _, err := p.Up(ctx); err != nil {
				t.Fatalf("up: %v", err)
			}
			if _, err := p.DownTo(ctx, 0); err != nil {
				t.Fatalf("down: %v", err)
			}
			if _, err := p.Up(ctx); err != nil {
				t.Fatalf("up after down: %v", err)
			}
		})
	}
}
