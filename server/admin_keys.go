package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// defaultRetirement is how long the keys a rotation replaces stay in the
// JWKS: long enough for every token they signed to expire and for relying
// parties to fetch the new keys.
const defaultRetirement = 24 * time.Hour

// keyNotices are the keys page's notices after a change.
var keyNotices = map[string]string{
	"rotated": "New signing keys are active. The keys they replace stay published until their retirement time.",
	"retired": "The key is retired: it signs nothing more, and stays published until the tokens it signed have expired.",
	"removed": "The key is retired as compromised: it signs nothing more and has left the published key set, so tokens it signed no longer verify.",
}

// keyRow is one signing key as the keys page lists it.
type keyRow struct {
	KID, Alg  string
	Status    string
	CreatedAt time.Time
	RetiresAt time.Time
	// Retirable is false for a key already out of the JWKS.
	Retirable bool
}

// keysPage lists a tenant's signing keys with the forms to change them.
type keysPage struct {
	adminPage
	Keys []keyRow
	// Retirement is the rotation form's retirement window as typed.
	Retirement string
	// CacheDelay is how long processes may go on using keys as they were.
	CacheDelay string
	// Floor is the shortest retirement window: the longest token lifetime.
	Floor string
}

// adminKeys lists a tenant's signing keys.
func (s *Server) adminKeys(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	return s.renderKeys(w, r, ar, http.StatusOK, formatLifetime(storage.Duration(defaultRetirement)),
		keyNotices[r.URL.Query().Get("notice")], "")
}

func (s *Server) renderKeys(w http.ResponseWriter, r *http.Request, ar *adminRequest, status int, retirement, notice, message string) error {
	ks, err := s.store.ListSigningKeys(r.Context(), ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("signing keys of tenant %q: %w", ar.tenant.ID, err)
	}
	floor, _, err := s.manage.RetirementFloor(r.Context(), ar.tenant.ID)
	if err != nil {
		return fmt.Errorf("retirement floor of tenant %q: %w", ar.tenant.ID, err)
	}
	page := keysPage{adminPage: ar.page(s, "keys", "Signing keys"), Retirement: retirement,
		CacheDelay: formatLifetime(storage.Duration(keys.ListCacheTTL)), Floor: formatLifetime(storage.Duration(floor))}
	page.Notice, page.Error = notice, message
	now := s.now()
	for _, k := range ks {
		row := keyRow{KID: k.KID, Alg: k.Alg, Status: string(k.Status), CreatedAt: k.CreatedAt, RetiresAt: k.RetiresAt, Retirable: true}
		if k.Status == storage.KeyRetiring && !k.RetiresAt.After(now) {
			// Still stored until the sweep, but no longer published.
			row.Status, row.Retirable = "retired", false
		}
		page.Keys = append(page.Keys, row)
	}
	s.render(w, r, status, "admin_keys", page)
	return nil
}

// adminRotateKeys adds new signing keys; the old ones stay published for
// the retirement window the admin gives.
func (s *Server) adminRotateKeys(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	text := strings.TrimSpace(r.PostForm.Get("retirement"))
	retirement := defaultRetirement
	if text != "" {
		d, err := time.ParseDuration(text)
		if err != nil {
			return s.renderKeys(w, r, ar, http.StatusBadRequest, text, "",
				fmt.Sprintf("Retirement window %q is not a duration such as 24h or 90m.", text))
		}
		retirement = d
	}
	_, err := s.manage.RotateKeys(r.Context(), ar.tenant.ID, retirement, ar.actor(r))
	if msg, ok := manageMessage(err); ok {
		return s.renderKeys(w, r, ar, http.StatusBadRequest, text, "", msg)
	}
	if err != nil {
		return fmt.Errorf("rotate keys of tenant %q: %w", ar.tenant.ID, err)
	}
	http.Redirect(w, r, s.areaURL(ar.area)+"/keys?notice=rotated", http.StatusSeeOther)
	return nil
}

// adminRetireKey takes one signing key out of use. It stays published
// until the tokens it signed expire, unless the admin pressed the button
// that says it is compromised: then it leaves the JWKS at once.
func (s *Server) adminRetireKey(w http.ResponseWriter, r *http.Request, ar *adminRequest) error {
	kid := r.PostForm.Get("kid")
	compromised := r.PostForm.Get("compromised") == "yes"
	err := s.manage.RetireKey(r.Context(), ar.tenant.ID, kid, compromised, ar.actor(r))
	if msg, ok := manageMessage(err); ok {
		return s.renderKeys(w, r, ar, http.StatusBadRequest, formatLifetime(storage.Duration(defaultRetirement)), "", msg)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return errNotFound("This tenant has no signing key with that id.")
	}
	if err != nil {
		return fmt.Errorf("retire key %q of tenant %q: %w", kid, ar.tenant.ID, err)
	}
	notice := "retired"
	if compromised {
		notice = "removed"
	}
	http.Redirect(w, r, s.areaURL(ar.area)+"/keys?notice="+notice, http.StatusSeeOther)
	return nil
}
