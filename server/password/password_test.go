package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not argon2id PHC with the expected parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	if err := Verify(h, "correct horse battery"); err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if err := Verify(h, "correct horse batterY"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: got %v, want ErrMismatch", err)
	}
	h2, _ := Hash("correct horse battery")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
}

func TestVerifyMalformed(t *testing.T) {
	for _, h := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHQ$a2V5",
		"$argon2id$v=19$m=0,t=2,p=1$c2FsdHNhbHQ$a2V5",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$!!!$a2V5",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
	} {
		err := Verify(h, "whatever-password")
		if err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q): got %v, want a malformed-hash error", h, err)
		}
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		pw string
		ok bool
	}{
		{"short", false},
		{"exactly8", true},
		{"ÄÖÜäöüßé", true},
		{strings.Repeat("a", MaxLength), true},
		{strings.Repeat("a", MaxLength+1), false},
	}
	for _, tc := range tests {
		if err := Check(tc.pw); (err == nil) != tc.ok {
			t.Errorf("Check(len %d): got %v, want ok=%v", len(tc.pw), err, tc.ok)
		}
	}
}

func TestLimiter(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	l := NewLimiter(1, time.Minute)
	ctx := context.Background()
	if err := l.Verify(ctx, h, "correct horse battery"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := l.Verify(ctx, h, "wrong password!"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	// With the only slot taken, a caller whose context ends gives up.
	l.slots <- struct{}{}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Verify(cctx, h, "correct horse battery"); !errors.Is(err, context.Canceled) {
		t.Fatalf("verification ran without a free slot: %v", err)
	}
	// With the only slot taken for longer than the longest wait: ErrBusy.
	short := NewLimiter(1, time.Millisecond)
	short.slots <- struct{}{}
	if err := short.Verify(ctx, h, "correct horse battery"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a full limiter: %v, want ErrBusy", err)
	}
	<-l.slots
	if err := l.Verify(ctx, h, "correct horse battery"); err != nil {
		t.Fatalf("after the slot was freed: %v", err)
	}
}
