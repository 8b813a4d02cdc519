package migrations

import (
	"io/fs"
	"strings"
	"testing"
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
