// Package migrations embeds the database schema of smartauth, one goose
// migration set per SQL dialect.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Postgres holds the PostgreSQL migrations, rooted at their folder.
var Postgres = mustSub("postgres")

// SQLite holds the SQLite migrations, rooted at their folder.
var SQLite = mustSub("sqlite")

// mustSub panics only if the embed pattern above and the folder names
// disagree, which the package's own test catches.
func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(files, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
