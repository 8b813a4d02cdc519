package password

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrBusy means every slot stayed taken for the limiter's longest wait.
var ErrBusy = errors.New("password verification is busy")

// Limiter bounds how many verifications run at once. Each argon2id
// verification holds 19 MiB, so without a bound a burst of sign-ins is a
// memory exhaustion attack; with one, the burst waits its turn.
type Limiter struct {
	slots   chan struct{}
	maxWait time.Duration
}

// NewLimiter allows n verifications at once (at least one); a caller waits
// at most maxWait for a slot, so a flood cannot queue requests without end.
func NewLimiter(n int, maxWait time.Duration) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(n, 1)), maxWait: maxWait}
}

// Verify is Verify run in a free slot; it gives up with ErrBusy after the
// limiter's longest wait, or when ctx ends first.
func (l *Limiter) Verify(ctx context.Context, hash, pw string) error {
	wait := time.NewTimer(l.maxWait)
	defer wait.Stop()
	select {
	case l.slots <- struct{}{}:
	case <-wait.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("waiting to verify a password: %w", ctx.Err())
	}
	defer func() { <-l.slots }()
	return Verify(hash, pw)
}
