package oidc_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/federation/oidc"
	"github.com/smartauth/smartauth/federation/oidctest"
)

// TestHTTPClientControl: every connection to the provider, at sign-in as
// for discovery, is vetted by the control the wiring gave, which can refuse it.
func TestHTTPClientControl(t *testing.T) {
	p := startProvider(t, oidctest.ShapeOkta, oktaDoctor)
	for _, refuse := range []bool{false, true} {
		var mu sync.Mutex
		var seen []string
		control := func(_, address string, _ syscall.RawConn) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, address)
			if refuse {
				return errors.New("not this address")
			}
			return nil
		}
		c, err := oidc.New(oidc.Config{Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret, HTTPClient: oidc.NewHTTPClient(control)})
		if err != nil {
			t.Fatal(err)
		}
		if refuse {
			_, err := c.AuthURL(t.Context(), "s", "n", randomString(t), redirectURI)
			var re *federation.RefusalError
			if !errors.As(err, &re) || re.Reason != federation.ReasonUnavailable {
				t.Errorf("sign-in with the address refused: %v, want %s", err, federation.ReasonUnavailable)
			}
		} else if id, err := signIn(t, p, c, oktaDoctor, ""); err != nil || id.Subject != oktaDoctor.ID {
			t.Errorf("sign-in with the address allowed: %+v, %v", id, err)
		}
		host := strings.TrimPrefix(p.ServerURL(), "http://")
		mu.Lock()
		if len(seen) == 0 || seen[0] != host {
			t.Errorf("control saw %q, want the provider's address %s first", seen, host)
		}
		mu.Unlock()
	}
}

func TestNewNeedsHTTPClient(t *testing.T) {
	if _, err := oidc.New(oidc.Config{Issuer: "https://idp.example", ClientID: "c"}); err == nil {
		t.Fatal("a connector without an HTTP client was made")
	}
}

// TestRedirectToAnotherHostRefused: a provider cannot send the connector,
// and the client secret it may carry, to another host.
func TestRedirectToAnotherHostRefused(t *testing.T) {
	p := startProvider(t, oidctest.ShapeOkta)
	hop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, p.ServerURL()+r.URL.Path, http.StatusFound)
	}))
	defer hop.Close()
	c, err := oidc.New(oidc.Config{Issuer: hop.URL, ClientID: p.ClientID, HTTPClient: anyAddress})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AuthURL(t.Context(), "s", "n", randomString(t), redirectURI)
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("AuthURL through a redirect to another host: %v", err)
	}
}
