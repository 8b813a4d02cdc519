// Package sqlite is the embedded storage.Storage backend: one SQLite file,
// in pure Go (modernc.org/sqlite), so smartauth runs with nothing installed.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/smartauth/smartauth/migrations"
	"github.com/smartauth/smartauth/storage"
)

var _ storage.Storage = (*Store)(nil)

// busyTimeoutMillis is how long a connection waits for another process's
// lock on the file before giving up.
const busyTimeoutMillis = 10000

// Store is a storage.Storage kept in one SQLite file.
//
// SQLite lets one connection write at a time. Store writes through a pool of
// exactly one connection, so its own goroutines queue in Go rather than
// contend for the file lock (which would surface as "database is locked"),
// and reads through a separate read-only pool, which WAL mode lets run beside
// the writer. Write transactions begin IMMEDIATE and every connection has a
// busy timeout, for the case of another process using the same file.
type Store struct {
	w *sql.DB
	r *sql.DB
}

// Open opens or creates the SQLite database at path, a plain file path, and
// creates its folder if needed. Call Migrate before use.
func Open(ctx context.Context, path string) (*Store, error) {
	// Two pools on an in-memory database would be two databases, and a URI or
	// query string would clash with the parameters added below.
	if path == "" || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open %q: want a plain file path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data folder: %w", err)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMillis)
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	// The writer connects first so the file exists and is in WAL mode before
	// any reader opens it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open writer: %w", err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	readers := max(4, runtime.NumCPU())
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	return &Store{w: w, r: r}, nil
}

// Migrate applies the pending migrations and returns the schema version.
func (s *Store) Migrate(ctx context.Context) (int64, error) {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, migrations.SQLite, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("sqlite: migrate: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: migrate: read version: %w", err)
	}
	return v, nil
}

// Ping reports whether both pools answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping writer: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping readers: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// inTx runs fn in one write transaction, committed if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	return tx.Commit()
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// wrap names the operation and turns SQLite's errors into the storage
// sentinels: a missing row is ErrNotFound, a duplicate key ErrAlreadyExists,
// a dangling foreign key (a record of an unknown tenant) ErrNotFound, and a
// file another process kept locked past the busy timeout ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: %s: %w", op, storage.ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("sqlite: %s: %w: %w", op, storage.ErrAlreadyExists, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("sqlite: %s: unknown tenant: %w: %w", op, storage.ErrNotFound, err)
		}
		// Extended codes keep the primary code in their low byte.
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("sqlite: %s: %w: %w", op, storage.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// mustAffect turns an update or delete that matched no row into sql.ErrNoRows.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}

type scanner interface {
	Scan(dest ...any) error
}

// micros is an instant as stored: unix microseconds, or NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func instant(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode JSON: %w", err)
	}
	return string(b), nil
}

// listJSON encodes a list, nil as [] so the column never holds null.
func listJSON[T any](v []T) (string, error) {
	if v == nil {
		v = []T{}
	}
	return toJSON(v)
}

func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decode JSON: %w", err)
	}
	return nil
}

// owned checks that a record handed in with a tenant argument names that
// tenant or none.
func owned(tenantID, recordTenantID, what, id string) error {
	if recordTenantID != "" && recordTenantID != tenantID {
		return fmt.Errorf("%s %q belongs to tenant %q, not %q", what, id, recordTenantID, tenantID)
	}
	return nil
}

// PoolStats reports the use of the two connection pools: "write", of one
// connection, and "read".
func (s *Store) PoolStats() []storage.PoolStats {
	return []storage.PoolStats{dbStats("write", s.w.Stats()), dbStats("read", s.r.Stats())}
}

func dbStats(name string, st sql.DBStats) storage.PoolStats {
	return storage.PoolStats{
		Name: name, Acquired: int64(st.InUse), Idle: int64(st.Idle), Open: int64(st.OpenConnections),
		Max: int64(st.MaxOpenConnections), Waits: st.WaitCount, WaitTime: st.WaitDuration,
	}
}

var _ storage.PoolReporter = (*Store)(nil)
