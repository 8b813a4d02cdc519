package clientauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/smartauth/smartauth/server/netguard"
)

// errRedirect refuses JWKS redirects: a redirect could lead anywhere,
// including to an address the URL itself was not allowed to name.
var errRedirect = errors.New("a JWKS URL must answer directly, not redirect")

// fetchClient is the HTTP client for client JWKS URLs.
func fetchClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     netguard.Transport(timeout, allowPrivate),
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
}
