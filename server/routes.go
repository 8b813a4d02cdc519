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
	// protocolBody keeps what anyone may post to them small (server.go);
	// rateLimited caps the requests per client and address (ratelimit.go).
	mux.Handle("POST /t/{tenant}/token", cors(protocolBody(s.api(s.rateLimited(s.token)))))
	mux.Handle("POST /t/{tenant}/introspect", cors(protocolBody(s.api(s.rateLimited(s.introspect)))))
	mux.Handle("POST /t/{tenant}/revoke", cors(protocolBody(s.api(s.rateLimited(s.revoke)))))
	mux.Handle("POST /t/{tenant}/register", cors(protocolBody(s.api(s.rateLimited(s.register))))) // RFC 7591 registration, JSON in (register.go)
	mux.Handle("GET /t/{tenant}/userinfo", cors(s.api(s.userinfo)))
	mux.Handle("POST /t/{tenant}/userinfo", cors(protocolBody(s.api(s.userinfo))))
	mux.Handle("OPTIONS /t/{tenant}/{endpoint}", cors(http.HandlerFunc(preflight)))

	// Browser sign-in (authorize.go, login.go). POST /authorize is SMART's
	// authorize-post, sent by the app; sign-in and consent forms are ours
	// and carry CSRF protection.
	mux.Handle("GET /t/{tenant}/authorize", s.page(s.authorize))
	mux.Handle("POST /t/{tenant}/authorize", protocolBody(s.page(s.authorize)))
	mux.Handle("POST /t/{tenant}/login", protocolBody(s.page(s.login)))
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
	mux.Handle("POST /t/{tenant}/logout", protocolBody(s.page(s.logout)))

	// The SMART gateway: a FHIR base URL per tenant that forwards to its
	// upstream FHIR server what the access token allows (gateway.go, package gateway).
	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} { // GET serves HEAD too
		mux.Handle(method+" /t/{tenant}/fhir/{path...}", cors(http.HandlerFunc(s.fhirGateway)))
	}
	mux.Handle("OPTIONS /t/{tenant}/fhir/{path...}", cors(http.HandlerFunc(gatewayPreflight)))
	mux.Handle("GET /t/{tenant}/fhir/metadata", cors(http.HandlerFunc(s.gatewayMetadata)))
	mux.Handle("GET /t/{tenant}/fhir/.well-known/smart-configuration", cors(s.api(s.gatewaySMARTConfiguration)))

	// The demo SMART app, a public client that runs in the browser and
	// talks to this server (demoapp.go, web/demo-app/).
	mux.Handle("GET /demo-app/", s.demoApp())

	// EHR launch API: an EHR's backend client, with a bearer token, creates
	// a launch context for an app; JSON in and out (launch.go).
	mux.Handle("POST /t/{tenant}/launch", protocolBody(s.api(s.rateLimited(s.createLaunch))))

	// Admin area for people (admin*.go): operators at /admin/, a tenant's
	// admins at /admin/t/{tenant}/. Sign-in is password then TOTP.
	for _, area := range []string{"/admin", "/admin/t/{tenant}"} {
		mux.Handle("GET "+area+"/login", s.page(s.adminLoginPage))
		mux.Handle("POST "+area+"/login", s.page(s.adminLogin))
		mux.Handle("POST "+area+"/mfa", s.page(s.adminSecondFactor))
		mux.Handle("POST "+area+"/mfa/enroll", s.page(s.adminEnrollSecondFactor))
		mux.Handle("POST "+area+"/logout", s.page(s.adminLogout))
	}
	mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	mux.Handle("GET /admin/{$}", s.admin(s.adminHome))
	mux.Handle("GET /admin/t/{tenant}/{$}", s.admin(s.adminTenantHome))
	// Tenants, settings, keys, consents, patients (admin_tenants.go, admin_keys.go, admin_consents.go, admin_patients.go).
	mux.Handle("GET /admin/tenants/new", s.admin(s.adminNewTenant))
	mux.Handle("POST /admin/tenants", s.admin(s.adminCreateTenant))
	mux.Handle("GET /admin/t/{tenant}/settings", s.admin(s.adminSettings))
	mux.Handle("POST /admin/t/{tenant}/settings", s.admin(s.adminSaveSettings))
	mux.Handle("GET /admin/t/{tenant}/keys", s.admin(s.adminKeys))
	mux.Handle("POST /admin/t/{tenant}/keys/rotate", s.admin(s.adminRotateKeys))
	mux.Handle("POST /admin/t/{tenant}/keys/retire", s.admin(s.adminRetireKey))
	mux.Handle("GET /admin/t/{tenant}/consents", s.admin(s.adminConsents))
	mux.Handle("POST /admin/t/{tenant}/consents/revoke", s.admin(s.adminRevokeConsent))
	mux.Handle("GET /admin/t/{tenant}/patients", s.admin(s.adminPatients))
	mux.Handle("POST /admin/t/{tenant}/patients/import", s.admin(s.adminImportPatients))
	// Clients, their launch button and registration tokens (admin_clients.go).
	mux.Handle("GET /admin/t/{tenant}/clients", s.admin(s.adminClients))
	mux.Handle("POST /admin/t/{tenant}/clients", s.admin(s.adminCreateClient))
	mux.Handle("GET /admin/t/{tenant}/clients/new", s.admin(s.adminNewClient))
	mux.Handle("POST /admin/t/{tenant}/clients/registration-token", s.admin(s.adminCreateRegistrationToken))
	mux.Handle("GET /admin/t/{tenant}/clients/registration-tokens", s.admin(s.adminRegistrationTokens))
	mux.Handle("POST /admin/t/{tenant}/clients/registration-tokens/revoke", s.admin(s.adminRevokeRegistrationToken))
	mux.Handle("GET /admin/t/{tenant}/clients/{client}/edit", s.admin(s.adminEditClient))
	mux.Handle("POST /admin/t/{tenant}/clients/{client}/edit", s.admin(s.adminUpdateClient))
	mux.Handle("POST /admin/t/{tenant}/clients/{client}/secret", s.admin(s.adminRotateClientSecret))
	mux.Handle("POST /admin/t/{tenant}/clients/{client}/delete", s.admin(s.adminDeleteClient))
	mux.Handle("GET /admin/t/{tenant}/clients/{client}/launch", s.admin(s.adminLaunchPage))
	mux.Handle("POST /admin/t/{tenant}/clients/{client}/launch", s.admin(s.adminLaunch))
	// Users, profiles, identity providers and domain routes (admin_users.go, admin_idps.go).
	mux.Handle("GET /admin/t/{tenant}/users", s.admin(s.adminUsers))
	mux.Handle("POST /admin/t/{tenant}/users", s.admin(s.adminCreateUser))
	mux.Handle("GET /admin/t/{tenant}/users/{user}", s.admin(s.adminUser))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/profiles", s.admin(s.adminUserProfiles))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/admin", s.admin(s.adminUserAdmin))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/disabled", s.admin(s.adminUserDisabled))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/password", s.admin(s.adminUserPassword))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/second-factor/reset", s.admin(s.adminUserResetSecondFactor))
	mux.Handle("GET /admin/t/{tenant}/users/{user}/delete", s.admin(s.adminUserDeletePage))
	mux.Handle("POST /admin/t/{tenant}/users/{user}/delete", s.admin(s.adminUserDelete))
	mux.Handle("GET /admin/t/{tenant}/idps", s.admin(s.adminIdPs))
	mux.Handle("POST /admin/t/{tenant}/idps", s.admin(s.adminAddIdP))
	mux.Handle("GET /admin/t/{tenant}/idps/{idp}", s.admin(s.adminIdP))
	mux.Handle("POST /admin/t/{tenant}/idps/{idp}", s.admin(s.adminUpdateIdP))
	mux.Handle("POST /admin/t/{tenant}/idps/{idp}/discovery", s.admin(s.adminIdPDiscovery))
	mux.Handle("POST /admin/t/{tenant}/idps/{idp}/routes", s.admin(s.adminAddDomainRoute))
	mux.Handle("POST /admin/t/{tenant}/idps/{idp}/routes/delete", s.admin(s.adminDeleteDomainRoute))
	mux.Handle("GET /admin/t/{tenant}/idps/{idp}/delete", s.admin(s.adminIdPDeletePage))
	mux.Handle("POST /admin/t/{tenant}/idps/{idp}/delete", s.admin(s.adminDeleteIdP))
	// Operators, who live outside tenants (admin_users.go).
	mux.Handle("GET /admin/operators", s.admin(s.adminOperators))
	mux.Handle("POST /admin/operators", s.admin(s.adminCreateOperator))
	mux.Handle("POST /admin/operators/{user}/disabled", s.admin(s.adminOperatorDisabled))
	// Audit trail viewer and export (admin_audit.go).
	mux.Handle("GET /admin/audit", s.admin(s.adminAudit))
	mux.Handle("GET /admin/audit/export", s.admin(s.adminAuditExport))
	mux.Handle("GET /admin/t/{tenant}/audit", s.admin(s.adminAudit))
	mux.Handle("GET /admin/t/{tenant}/audit/export", s.admin(s.adminAuditExport))

	// JSON admin API for automation, with bearer tokens from an operator's
	// or tenant's API client (admin_api.go); described at /admin/api/openapi.json.
	// Operators' API clients get tokens at /admin/token (client_credentials
	// only), tenants' at /t/{tenant}/token; both need the admin scope.
	// Per family: admin_api_tenants.go, admin_api_clients.go,
	// admin_api_users.go, admin_api_idps.go, admin_api_tenantdata.go
	// (patients, keys, consents, registration tokens), admin_api_audit.go.
	mux.Handle("POST /admin/token", protocolBody(s.api(s.adminToken)))
	mux.Handle("GET /admin/api/openapi.json", s.api(s.adminAPIDocument))
	mux.Handle("GET /admin/api/v1/tenants", s.operatorAPI(s.apiListTenants))
	mux.Handle("POST /admin/api/v1/tenants", s.operatorAPI(s.apiCreateTenant))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}", s.tenantAPI(s.apiGetTenant))
	mux.Handle("PUT /admin/api/v1/tenants/{tenant}", s.tenantAPI(s.apiUpdateTenant))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/clients", s.tenantAPI(s.apiListClients))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/clients", s.tenantAPI(s.apiCreateClient))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/clients/{client}", s.tenantAPI(s.apiGetClient))
	mux.Handle("PUT /admin/api/v1/tenants/{tenant}/clients/{client}", s.tenantAPI(s.apiUpdateClient))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/clients/{client}", s.tenantAPI(s.apiDeleteClient))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/clients/{client}/secret", s.tenantAPI(s.apiRotateClientSecret))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/clients/{client}/launch", s.tenantAPI(s.apiLaunchClient))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/users", s.tenantAPI(s.apiListUsers))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/users", s.tenantAPI(s.apiCreateUser))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/users/{user}", s.tenantAPI(s.apiGetUser))
	mux.Handle("PATCH /admin/api/v1/tenants/{tenant}/users/{user}", s.tenantAPI(s.apiUpdateUser))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/users/{user}", s.tenantAPI(s.apiDeleteUser))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/users/{user}/password", s.tenantAPI(s.apiSetPassword))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/users/{user}/second-factor", s.tenantAPI(s.apiResetSecondFactor))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/idps", s.tenantAPI(s.apiListIdentityProviders))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/idps", s.tenantAPI(s.apiAddIdentityProvider))
	mux.Handle("PUT /admin/api/v1/tenants/{tenant}/idps/{idp}", s.tenantAPI(s.apiUpdateIdentityProvider))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/idps/{idp}", s.tenantAPI(s.apiDeleteIdentityProvider))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/idps/{idp}/discovery-test", s.tenantAPI(s.apiTestDiscovery))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/domain-routes", s.tenantAPI(s.apiListDomainRoutes))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/domain-routes", s.tenantAPI(s.apiAddDomainRoute))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/domain-routes/{domain}", s.tenantAPI(s.apiDeleteDomainRoute))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/patients", s.tenantAPI(s.apiSearchPatients))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/patients", s.tenantAPI(s.apiImportPatients))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/keys", s.tenantAPI(s.apiListKeys))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/keys/rotate", s.tenantAPI(s.apiRotateKeys))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/keys/{kid}/retire", s.tenantAPI(s.apiRetireKey))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/consents", s.tenantAPI(s.apiListConsents))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/consents/{user}/{client}", s.tenantAPI(s.apiRevokeConsent))
	mux.Handle("POST /admin/api/v1/tenants/{tenant}/initial-access-tokens", s.tenantAPI(s.apiCreateInitialAccessToken))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/initial-access-tokens", s.tenantAPI(s.apiListInitialAccessTokens))
	mux.Handle("DELETE /admin/api/v1/tenants/{tenant}/initial-access-tokens/{ref}", s.tenantAPI(s.apiRevokeInitialAccessToken))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/audit", s.tenantAPI(s.apiListAudit))
	mux.Handle("GET /admin/api/v1/tenants/{tenant}/audit/verify", s.tenantAPI(s.apiVerifyAudit))

	// Anything else is a person's wrong turn or a client's wrong URL. Only
	// GET: a known path asked with the wrong method then gets 405, not 404.
	mux.Handle("GET /", s.page(s.notFound))
	return mux
}
