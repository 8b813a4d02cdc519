package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/smartauth/smartauth/storage"
)

func TestWrapSentinels(t *testing.T) {
	// A real failed connection attempt: nothing listens on port 1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused := pgconn.Connect(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5")
	var connectErr *pgconn.ConnectError
	if !errors.As(refused, &connectErr) {
		t.Fatalf("connecting to a closed port: %T %v, want a *pgconn.ConnectError", refused, refused)
	}
	pg := func(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code} }
	for _, tc := range []struct {
		name string
		err  error
		want error // the sentinel wrap must add, or nil for none
	}{
		{"connection refused", refused, storage.ErrUnavailable},
		{"connection failure", pg("08006"), storage.ErrUnavailable},
		{"cannot establish connection", pg("08001"), storage.ErrUnavailable},
		{"admin shutdown", pg("57P01"), storage.ErrUnavailable},
		{"crash shutdown", pg("57P02"), storage.ErrUnavailable},
		{"starting up", pg("57P03"), storage.ErrUnavailable},
		{"too many connections", pg("53300"), storage.ErrUnavailable},
		{"pool wait past the deadline", fmt.Errorf("acquire: %w", context.DeadlineExceeded), storage.ErrUnavailable},
		{"connection cut mid-answer", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), storage.ErrUnavailable},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, storage.ErrUnavailable},
		{"closed connection", fmt.Errorf("query: %w", pgconn.ErrConnClosed), storage.ErrUnavailable},
		{"unique violation", pg("23505"), storage.ErrAlreadyExists},
		{"invalid byte sequence", pg("22021"), nil},
		{"serialization failure", pg("40001"), nil},
		{"caller hung up", fmt.Errorf("acquire: %w", context.Canceled), nil},
		{"bad stored JSON", errors.New("decode JSON: unexpected end of JSON input"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wrap("op", tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("wrap lost the cause: %v", got)
			}
			for _, s := range []error{storage.ErrUnavailable, storage.ErrAlreadyExists} {
				if errors.Is(got, s) != (s == tc.want) {
					t.Errorf("wrap(%v) = %v: errors.Is %v is %v", tc.err, got, s, errors.Is(got, s))
				}
			}
		})
	}
}
