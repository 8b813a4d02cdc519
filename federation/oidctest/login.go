package oidctest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The provider's login page, for tests that drive it in a browser.
const (
	// LoginPath is where the provider shows its login form and takes the
	// answer, at the server's root whatever the issuer path.
	LoginPath = "/login/username"
	// UsernameField and PasswordField name the form's inputs.
	UsernameField = "username"
	PasswordField = "password"
	// UsernameSelector, PasswordSelector and SubmitSelector find the
	// form's inputs and its submit button.
	UsernameSelector = "#username"
	PasswordSelector = "#password"
	SubmitSelector   = "#login-submit"
	// ErrorSelector finds the message shown when a sign-in is refused.
	ErrorSelector = "#login-error"
)

// loginForm mirrors the login page of zitadel/oidc's example server, whose
// handler the example package does not export.
var loginForm = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>Sign in</title></head>
<body>
<form method="POST" action="` + LoginPath + `">
<input type="hidden" name="id" value="{{.ID}}">
<label for="username">Username</label>
<input id="username" name="` + UsernameField + `" autocomplete="username">
<label for="password">Password</label>
<input id="password" name="` + PasswordField + `" type="password" autocomplete="current-password">
{{if .Error}}<p id="login-error">{{.Error}}</p>{{end}}
<button id="login-submit" type="submit">Sign in</button>
</form>
</body>
</html>
`))

// loginPage is the provider's login UI: it checks the person's password
// against the authorization request, then sends the browser back to the
// provider to finish the request.
type loginPage struct {
	store    *claimStorage
	callback func(ctx context.Context, requestID string) string
}

func (l *loginPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, fmt.Sprintf("parse form: %v", err), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet:
		// The provider names the authorization request in the query.
		l.render(w, r.Form.Get("authRequestID"), "")
	case http.MethodPost:
		id := r.PostForm.Get("id")
		if err := l.store.CheckUsernamePassword(r.PostForm.Get(UsernameField), r.PostForm.Get(PasswordField), id); err != nil {
			l.render(w, id, err.Error())
			return
		}
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (l *loginPage) render(w http.ResponseWriter, id, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := loginForm.Execute(w, struct{ ID, Error string }{id, message}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// Login plays the browser and the person at the provider: it follows
// authURL with client (and its cookie jar), fills in and submits the login
// form, and returns the redirect back to the relying party without following
// it. It fails the test if the sign-in does not get that far.
func (p *Provider) Login(t testing.TB, client *http.Client, authURL, username, password string) *url.URL {
	t.Helper()
	back, err := p.login(client, authURL, username, password)
	if err != nil {
		t.Fatalf("oidctest: sign in as %q: %v", username, err)
	}
	return back
}

var (
	hiddenID     = regexp.MustCompile(`name="id" value="([^"]*)"`)
	errorMessage = regexp.MustCompile(`<p id="login-error">([^<]*)</p>`)
)

func (p *Provider) login(client *http.Client, authURL, username, password string) (*url.URL, error) {
	// A copy of the client that shares its jar and transport but stops at
	// each redirect, so the redirect back to the relying party is never
	// followed whatever the caller's client does.
	c := http.Client{}
	if client != nil {
		c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("authorization request: %w", err)
	}
	page, body, back, err := p.follow(&c, req)
	if err != nil || back != nil {
		return back, err
	}
	m := hiddenID.FindStringSubmatch(body)
	if m == nil {
		return nil, fmt.Errorf("no login form at %s: %.200s", page, body)
	}
	form := url.Values{"id": {html.UnescapeString(m[1])}, UsernameField: {username}, PasswordField: {password}}
	action := page.ResolveReference(&url.URL{Path: LoginPath})
	req, err = http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("login form: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, body, back, err = p.follow(&c, req)
	if err != nil || back != nil {
		return back, err
	}
	if m := errorMessage.FindStringSubmatch(body); m != nil {
		return nil, fmt.Errorf("provider refused the sign-in: %s", html.UnescapeString(m[1]))
	}
	return nil, errors.New("the provider did not redirect back after the login form")
}

// follow sends req and follows redirects within the provider. It returns
// either the page it stops at (its URL and body) or the redirect back to
// the relying party.
func (p *Provider) follow(c *http.Client, req *http.Request) (*url.URL, string, *url.URL, error) {
	for range 10 {
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, "", nil, fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL, err)
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			if resp.StatusCode != http.StatusOK {
				return nil, "", nil, fmt.Errorf("%s %s: status %d: %.200s", req.Method, req.URL, resp.StatusCode, body)
			}
			return req.URL, string(body), nil, nil
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			return nil, "", nil, fmt.Errorf("%s %s: redirect to %q: %w", req.Method, req.URL, loc, err)
		}
		if p.isRedirectURI(next) {
			return nil, "", next, nil
		}
		req, err = http.NewRequest(http.MethodGet, next.String(), nil)
		if err != nil {
			return nil, "", nil, fmt.Errorf("redirect to %s: %w", next, err)
		}
	}
	return nil, "", nil, errors.New("too many redirects at the provider")
}

// isRedirectURI tells whether u leaves the provider for the relying party:
// it is one of the registered redirect URIs, or on another server.
func (p *Provider) isRedirectURI(u *url.URL) bool {
	for _, r := range p.redirectURIs {
		ru, err := url.Parse(r)
		if err == nil && ru.Scheme == u.Scheme && ru.Host == u.Host && ru.Path == u.Path {
			return true
		}
	}
	own, err := url.Parse(p.srv.URL)
	return err != nil || own.Host != u.Host
}
