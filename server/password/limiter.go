package password

import (
	"context"
	"fmt"
)

// Limiter bounds how many verifications run at once. Each argon2id
// verification holds 19 MiB, so without a bound a burst of sign-ins is a
// memory exhaustion attack; with one, the burst waits its turn.
type Limiter struct {
	slots chan struct{}
}

// NewLimiter allows n verifications at once (at least one).
func NewLimiter(n int) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(n, 1))}
}

// Verify is Verify run in a free slot; it gives up when ctx ends first.
func (l *Limiter) Verify(ctx context.Context, hash, pw string) error {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting to verify a password: %w", ctx.Err())
	}
	defer func() { <-l.slots }()
	return Verify(hash, pw)
}
