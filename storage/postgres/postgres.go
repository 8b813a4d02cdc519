// Package postgres is the production storage.Storage backend, on PostgreSQL
// through a pgx connection pool; several replicas may share one database.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/smartauth/smartauth/migrations"
	"github.com/smartauth/smartauth/storage"
)

var _ storage.Storage = (*Store)(nil)

// Store is a storage.Storage in a PostgreSQL database. Each method is one
// statement or one transaction.
type Store struct {
	pool *pgxpool.Pool
	// feedPing is how long the change feed waits for a notification before
	// checking that its connection still answers.
	feedPing time.Duration
}

// Open connects to the database at url (a postgres:// URL or key=value
// string) and checks that it answers. Call Migrate before use.
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: ping: %w", err)
	}
	return &Store{pool: pool, feedPing: pingInterval}, nil
}

// Migrate applies the pending migrations and returns the schema version.
// Replicas starting together take turns: a session advisory lock admits one
// migrator at a time, and the others then find nothing left to do.
func (s *Store) Migrate(ctx context.Context) (int64, error) {
	lockID, err := s.migrationLockID(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	// Retry every second rather than goose's default five, for at most the
	// default five minutes, so a waiting replica starts promptly.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("postgres: migrate: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: migrate: read version: %w", err)
	}
	return v, nil
}

// migrationLockID derives the advisory lock from the database and schema
// migrated, so migrators of one schema exclude each other while those of
// different schemas (parallel tests, say) do not wait on each other.
func (s *Store) migrationLockID(ctx context.Context) (int64, error) {
	var database, schema string
	err := s.pool.QueryRow(ctx, `SELECT current_database(), coalesce(current_schema(), '')`).Scan(&database, &schema)
	if err != nil {
		return 0, fmt.Errorf("read current schema: %w", err)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "smartauth migrations\x00%s\x00%s", database, schema)
	return int64(h.Sum64()), nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// wrap names the operation and turns PostgreSQL's errors into the storage
// sentinels: a missing row is ErrNotFound, a unique violation
// ErrAlreadyExists, a foreign key violation (a record of an unknown
// tenant) ErrNotFound, and a lost or refused connection ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: %s: %w", op, storage.ErrNotFound)
	}
	if unavailable(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrAlreadyExists, err)
		case "23503": // foreign_key_violation
			return fmt.Errorf("postgres: %s: unknown tenant: %w: %w", op, storage.ErrNotFound, err)
		case "22021", "22P05", "54000":
			// character_not_in_repertoire (a NUL or bytes that are not UTF-8),
			// untranslatable_character (\u0000 in JSON), program_limit_exceeded
			// (a value too large to index): the caller's input, not an outage.
			return fmt.Errorf("postgres: %s: %w: %w", op, storage.ErrInvalidInput, err)
		}
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// unavailable reports whether err means the database could not be used
// at all, rather than that it refused this statement: no connection could
// be made or acquired in time, the connection broke, or the server is
// shutting down, starting up or out of connection slots.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		// The caller hung up; pgx may also call that a timeout and safe to
		// retry, but the database is fine and no outage should be raised.
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", // admin_shutdown
			pe.Code == "57P02", // crash_shutdown
			pe.Code == "57P03", // cannot_connect_now
			pe.Code == "53300": // too_many_connections
			return true
		}
	}
	var connect *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connect) ||
		// Failed before anything reached the server, such as a dead pooled connection.
		pgconn.SafeToRetry(err) ||
		// A deadline while connecting, acquiring or waiting for an answer;
		// a caller that hung up is context.Canceled and not an outage.
		pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// mustAffect turns an update or delete that matched no row into pgx.ErrNoRows.
func mustAffect(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return pgx.ErrNoRows
	}
	return nil
}

// tstz is an instant as a parameter: NULL for the zero time.
func tstz(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func instant(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
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

func fromJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
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

// params collects positional parameters for a query assembled piece by piece.
type params []any

// add appends v and returns its placeholder.
func (p *params) add(v any) string {
	*p = append(*p, v)
	return fmt.Sprintf("$%d", len(*p))
}

// PoolStats reports the use of the connection pool, named "main".
func (s *Store) PoolStats() []storage.PoolStats {
	st := s.pool.Stat()
	return []storage.PoolStats{{
		Name:     "main",
		Acquired: int64(st.AcquiredConns()),
		Idle:     int64(st.IdleConns()),
		Open:     int64(st.TotalConns()),
		Max:      int64(st.MaxConns()),
		Waits:    st.EmptyAcquireCount(),
		WaitTime: st.EmptyAcquireWaitTime(),
	}}
}

var _ storage.PoolReporter = (*Store)(nil)
