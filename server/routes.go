package server

import "net/http"

// routes is the one route table: every path smartauth serves is here, and
// the handler named beside it lives in the file named after its family.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()

	// Operations (health.go).
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)

	// Pages and assets (pages.go, web/).
	mux.Handle("GET /static/", s.staticAssets())
	mux.Handle("GET /{$}", s.page(s.home))
	mux.Handle("GET /t/{tenant}/{$}", s.page(s.tenantHome))

	// Discovery, open to any origin (discovery.go).
	mux.Handle("GET /t/{tenant}/.well-known/smart-configuration", cors(s.api(s.smartConfiguration)))
	mux.Handle("GET /t/{tenant}/.well-known/openid-configuration", cors(s.api(s.openIDConfiguration)))
	mux.Handle("GET /t/{tenant}/.well-known/jwks.json", cors(s.api(s.jwks)))
	mux.Handle("OPTIONS /t/{tenant}/.well-known/", cors(http.HandlerFunc(preflight)))

	// OAuth 2.0 endpoints: form-encoded by the spec, answered in JSON, open
	// to browser apps because they carry no cookies (token.go, introspect.go, revoke.go).
	mux.Handle("POST /t/{tenant}/token", cors(s.api(s.token)))
	mux.Handle("POST /t/{tenant}/introspect", cors(s.api(s.introspect)))
	mux.Handle("POST /t/{tenant}/revoke", cors(s.api(s.revoke)))
	mux.Handle("GET /t/{tenant}/userinfo", cors(s.api(s.userinfo)))
	mux.Handle("POST /t/{tenant}/userinfo", cors(s.api(s.userinfo)))
	mux.Handle("OPTIONS /t/{tenant}/{endpoint}", cors(http.HandlerFunc(preflight)))

	// Browser sign-in (authorize.go, login.go). POST /authorize is SMART's
	// authorize-post, sent by the app; sign-in and consent forms are ours
	// and carry CSRF protection.
	mux.Handle("GET /t/{tenant}/authorize", s.page(s.authorize))
	mux.Handle("POST /t/{tenant}/authorize", s.page(s.authorize))
	mux.Handle("POST /t/{tenant}/login", s.page(s.login))
	// Federated sign-in returns here from the upstream provider (federation.go).
	mux.Handle("GET /t/{tenant}/federation/callback", s.page(s.federationCallback))
	// The second factor (secondfactor.go).
	mux.Handle("POST /t/{tenant}/mfa", s.page(s.secondFactor))
	mux.Handle("POST /t/{tenant}/mfa/enroll", s.page(s.enrollSecondFactor))
	mux.Handle("POST /t/{tenant}/mfa/offer", s.page(s.offerSecondFactor))
	mux.Handle("POST /t/{tenant}/continue", s.page(s.continueSignIn))
	// Steps after sign-in (picker.go, consent.go): the role picker, the
	// patient picker of a standalone launch, and consent.
	mux.Handle("POST /t/{tenant}/role", s.page(s.role))
	mux.Handle("POST /t/{tenant}/patient", s.page(s.patient))
	mux.Handle("POST /t/{tenant}/consent", s.page(s.consent))
	// Sign-out, OpenID Connect's end_session endpoint (logout.go).
	mux.Handle("GET /t/{tenant}/logout", s.page(s.logout))
	mux.Handle("POST /t/{tenant}/logout", s.page(s.logout))

	// The demo SMART app, a public client that runs in the browser and
	// talks to this server (demoapp.go, web/demo-app/).
	mux.Handle("GET /demo-app/", s.demoApp())

	// EHR launch API: an EHR's backend client, with a bearer token, creates
	// a launch context for an app; JSON in and out (launch.go).
	mux.Handle("POST /t/{tenant}/launch", s.api(s.createLaunch))

	// Anything else is a person's wrong turn or a client's wrong URL. Only
	// GET: a known path asked with the wrong method then gets 405, not 404.
	mux.Handle("GET /", s.page(s.notFound))
	return mux
}
