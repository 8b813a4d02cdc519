package conformance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/smartauth/smartauth/storage"
)

// RawRows reads every row of a table behind the store's back, each row as
// its column values as the database driver returns them.
type RawRows = func(t *testing.T, table string) [][]any

// NewRawStore returns an empty, migrated store that is closed when t ends,
// and a RawRows reading the same database.
type NewRawStore = func(t *testing.T) (storage.Storage, RawRows)

// RunAtRest checks what a backend writes to its database, by reading the
// rows directly: a launch value is stored only as its storage.LaunchKey.
func RunAtRest(t *testing.T, newStore NewRawStore) {
	t.Run("LaunchValue", func(t *testing.T) {
		s, rows := newStore(t)
		testLaunchValueAtRest(t, s, rows)
	})
}

// rowText joins a row's values into one string, byte slices as text, so a
// value stored in any column shows up in it.
func rowText(row []any) string {
	parts := make([]string, 0, len(row))
	for _, v := range row {
		if b, ok := v.([]byte); ok {
			parts = append(parts, string(b))
			continue
		}
		parts = append(parts, fmt.Sprint(v))
	}
	return strings.Join(parts, "|")
}

func testLaunchValueAtRest(t *testing.T, s storage.Storage, rows RawRows) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	// No fixture field contains this value, and no hex digest can.
	const raw = "raw-launch-value-QwZy"
	l := launchFixture("acme", raw)
	must(t, "create launch", s.CreateLaunch(ctx, l))

	check := func(when string) {
		t.Helper()
		stored := rows(t, "launches")
		if len(stored) != 1 {
			t.Fatalf("%s: got %d launch rows, want 1", when, len(stored))
		}
		text := rowText(stored[0])
		if strings.Contains(text, raw) {
			t.Fatalf("%s: the launch row holds the raw launch value: %s", when, text)
		}
		// Every backend stores the same key, so a launch can move between them.
		if !strings.Contains(text, storage.LaunchKey(raw)) {
			t.Fatalf("%s: the launch row does not hold the launch key %s: %s", when, storage.LaunchKey(raw), text)
		}
	}
	check("after create")

	// The key is not a launch value: presenting it finds nothing.
	_, err := s.GetLaunch(ctx, "acme", storage.LaunchKey(raw), t0())
	mustErr(t, "get launch by its key", err, storage.ErrNotFound)
	_, err = s.ConsumeLaunch(ctx, "acme", storage.LaunchKey(raw), t0())
	mustErr(t, "consume launch by its key", err, storage.ErrNotFound)

	// The raw value finds the launch, which carries the raw value as its ID.
	got, err := s.GetLaunch(ctx, "acme", raw, t0())
	must(t, "get launch", err)
	mustEqual(t, "launch", got, l)
	got, err = s.ConsumeLaunch(ctx, "acme", raw, t0())
	must(t, "consume launch", err)
	mustEqual(t, "consumed launch", got, l)
	check("after consume")
}
