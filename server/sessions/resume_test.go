package sessions_test

import (
	"errors"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/sessions"
	"github.com/smartauth/smartauth/storage"
)

func TestResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(t testing.TB) storage.Storage) {
		e := newEnv(t, open, sessions.Config{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: time.Hour})
		sess, cookie := e.signIn("acme", "u1")

		// A resume is a use: it keeps the session from going idle.
		e.clock.Advance(25 * time.Minute)
		if err := e.m.Resume(t.Context(), "acme", sess.ID); err != nil {
			t.Fatalf("resume a live session: %v", err)
		}
		e.clock.Advance(25 * time.Minute)
		if got := e.load("acme", cookie); got.IsNew {
			t.Fatal("the session went idle although it was resumed")
		}
		// Another tenant cannot resume it, and nobody can resume a made-up id.
		for name, err := range map[string]error{
			"other tenant": e.m.Resume(t.Context(), "other", sess.ID),
			"unknown id":   e.m.Resume(t.Context(), "acme", "no-such-session"),
			"empty id":     e.m.Resume(t.Context(), "acme", ""),
		} {
			if !errors.Is(err, sessions.ErrEnded) {
				t.Errorf("%s: %v, want ErrEnded", name, err)
			}
		}
		// Never past the absolute time-out.
		e.clock.Advance(10 * time.Minute)
		if err := e.m.Resume(t.Context(), "acme", sess.ID); !errors.Is(err, sessions.ErrEnded) {
			t.Errorf("resume after the absolute time-out: %v, want ErrEnded", err)
		}

		// Signing out (deleting the user's sessions) ends it at once.
		sess2, _ := e.signIn("acme", "u2")
		if err := e.db.DeleteUserSessions(t.Context(), "acme", "u2"); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Resume(t.Context(), "acme", sess2.ID); !errors.Is(err, sessions.ErrEnded) {
			t.Errorf("resume after sign-out: %v, want ErrEnded", err)
		}
	})
}
