package conformance

import (
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage"
)

func idpFixture(tenantID, id string) storage.IdentityProvider {
	return storage.IdentityProvider{
		TenantID:    tenantID,
		ID:          id,
		Type:        storage.IdentityProviderCognito,
		DisplayName: "Pool " + id + " of " + tenantID,
		Settings: storage.IdentityProviderSettings{
			Issuer:         "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_" + tenantID,
			ClientID:       "client-" + tenantID,
			Scopes:         []string{"email", "profile"},
			UserInfo:       true,
			Region:         "eu-west-1",
			UserPoolID:     "eu-west-1_" + tenantID,
			HostedUIDomain: tenantID + ".auth.eu-west-1.amazoncognito.com",
		},
		ClientSecretSealed: []byte("\x00sealed-idp-secret\xff" + tenantID + "/" + id),
		ClaimMapping: storage.ClaimMapping{
			TenantClaim:  "custom:tenant_id",
			PatientClaim: "custom:patient_id",
			GroupsClaim:  "cognito:groups",
			GroupRoles:   map[string]string{"Doctors": "Attending physician", "Nurses": "Nurse"},
		},
		FederationOnly: true,
		CreatedAt:      t0(),
		UpdatedAt:      t0().Add(time.Second),
	}
}

func routeFixture(tenantID, domain, providerID string) storage.DomainRoute {
	return storage.DomainRoute{TenantID: tenantID, Domain: domain, ProviderID: providerID, IncludeSubdomains: domain == "hospital.example", CreatedAt: t0()}
}

func linkFixture(tenantID, issuer, subject, userID string) storage.IdentityLink {
	return storage.IdentityLink{TenantID: tenantID, Issuer: issuer, Subject: subject, UserID: userID, CreatedAt: t0()}
}

func testIdentityProviders(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	okta := storage.IdentityProvider{TenantID: "acme", ID: "a-okta", Type: storage.IdentityProviderOkta,
		Settings: storage.IdentityProviderSettings{Issuer: "https://clinic.okta.com/oauth2/default", ClientID: "c"}, CreatedAt: t0(), UpdatedAt: t0()}
	cognito := idpFixture("acme", "cognito")
	for _, p := range []storage.IdentityProvider{cognito, okta} {
		must(t, "create identity provider "+p.ID, s.CreateIdentityProvider(ctx, p))
	}
	got, err := s.GetIdentityProvider(ctx, "acme", "cognito")
	must(t, "get identity provider", err)
	mustEqual(t, "identity provider", got, cognito)
	list, err := s.ListIdentityProviders(ctx, "acme")
	must(t, "list identity providers", err)
	mustEqual(t, "identity providers", list, []storage.IdentityProvider{okta, cognito})

	mustErr(t, "create duplicate provider", s.CreateIdentityProvider(ctx, cognito), storage.ErrAlreadyExists)
	mustErr(t, "create provider of unknown tenant", s.CreateIdentityProvider(ctx, idpFixture("ghost", "x")), storage.ErrNotFound)
	_, err = s.GetIdentityProvider(ctx, "acme", "nope")
	mustErr(t, "get unknown provider", err, storage.ErrNotFound)

	changed := cognito
	changed.DisplayName = "Renamed"
	changed.Settings.ClientID = "new-client"
	changed.ClientSecretSealed = []byte("resealed")
	changed.ClaimMapping = storage.ClaimMapping{FHIRUserClaim: "fhirUser"}
	changed.FederationOnly = false
	changed.CreatedAt = t0().Add(time.Hour) // ignored: CreatedAt stays as first stored
	changed.UpdatedAt = t0().Add(2 * time.Hour)
	must(t, "update provider", s.UpdateIdentityProvider(ctx, changed))
	got, err = s.GetIdentityProvider(ctx, "acme", "cognito")
	must(t, "get updated provider", err)
	changed.CreatedAt = cognito.CreatedAt
	mustEqual(t, "updated provider", got, changed)
	mustErr(t, "update unknown provider", s.UpdateIdentityProvider(ctx, idpFixture("acme", "nope")), storage.ErrNotFound)

	// Domain routes: unique per tenant, only to an existing provider.
	routes := []storage.DomainRoute{routeFixture("acme", "clinic.example", "cognito"), routeFixture("acme", "hospital.example", "a-okta"), routeFixture("acme", "b.example", "cognito")}
	for _, r := range routes {
		must(t, "create route "+r.Domain, s.CreateDomainRoute(ctx, r))
	}
	mustErr(t, "route a domain twice", s.CreateDomainRoute(ctx, routeFixture("acme", "clinic.example", "a-okta")), storage.ErrAlreadyExists)
	mustErr(t, "route to an unknown provider", s.CreateDomainRoute(ctx, routeFixture("acme", "x.example", "nope")), storage.ErrNotFound)
	rl, err := s.ListDomainRoutes(ctx, "acme")
	must(t, "list routes", err)
	mustEqual(t, "routes", rl, []storage.DomainRoute{routes[2], routes[0], routes[1]})
	must(t, "delete route", s.DeleteDomainRoute(ctx, "acme", "b.example"))
	mustErr(t, "delete deleted route", s.DeleteDomainRoute(ctx, "acme", "b.example"), storage.ErrNotFound)

	// Deleting a provider deletes its routes and nothing else.
	must(t, "delete provider", s.DeleteIdentityProvider(ctx, "acme", "cognito"))
	mustErr(t, "delete deleted provider", s.DeleteIdentityProvider(ctx, "acme", "cognito"), storage.ErrNotFound)
	rl, err = s.ListDomainRoutes(ctx, "acme")
	must(t, "list routes after deleting the provider", err)
	mustEqual(t, "routes after deleting the provider", rl, []storage.DomainRoute{routes[1]})
	list, err = s.ListIdentityProviders(ctx, "acme")
	must(t, "list providers after delete", err)
	mustEqual(t, "providers after delete", list, []storage.IdentityProvider{okta})
}

func testIdentityLinks(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	mustCreateTenant(t, s, "acme")
	for _, u := range []string{"u1", "u2"} {
		must(t, "create user "+u, s.CreateUser(ctx, userFixture("acme", u, u+"@acme.example")))
	}
	const iss = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_acme"
	l1 := linkFixture("acme", iss, "sub-1", "u1")
	l2 := linkFixture("acme", "https://clinic.okta.com/oauth2/default", "00u1", "u1")
	l3 := linkFixture("acme", iss, "sub-2", "u2")
	for _, l := range []storage.IdentityLink{l1, l2, l3} {
		must(t, "link "+l.Subject, s.CreateIdentityLink(ctx, l))
	}
	got, err := s.GetIdentityLink(ctx, "acme", iss, "sub-1")
	must(t, "get link", err)
	mustEqual(t, "link", got, l1)
	_, err = s.GetIdentityLink(ctx, "acme", iss, "SUB-1")
	mustErr(t, "get link by a subject differing in case", err, storage.ErrNotFound)
	_, err = s.GetIdentityLink(ctx, "acme", iss+"/", "sub-1")
	mustErr(t, "get link of a look-alike issuer", err, storage.ErrNotFound)
	mustErr(t, "link an identity twice", s.CreateIdentityLink(ctx, linkFixture("acme", iss, "sub-1", "u2")), storage.ErrAlreadyExists)
	mustErr(t, "link to an unknown user", s.CreateIdentityLink(ctx, linkFixture("acme", iss, "sub-9", "ghost")), storage.ErrNotFound)
	list, err := s.ListIdentityLinks(ctx, "acme", "u1")
	must(t, "list links", err)
	mustEqual(t, "links of u1", list, []storage.IdentityLink{l2, l1})

	must(t, "unlink", s.DeleteIdentityLink(ctx, "acme", iss, "sub-1"))
	mustErr(t, "unlink twice", s.DeleteIdentityLink(ctx, "acme", iss, "sub-1"), storage.ErrNotFound)
	// Deleting a user deletes its links.
	must(t, "delete user", s.DeleteUser(ctx, "acme", "u2"))
	_, err = s.GetIdentityLink(ctx, "acme", iss, "sub-2")
	mustErr(t, "get link of a deleted user", err, storage.ErrNotFound)
}

// testIdentityProvidersStayInTenant: two tenants with the same provider,
// domain, user and upstream identity never see or change each other's.
func testIdentityProvidersStayInTenant(t *testing.T, s storage.Storage) {
	ctx := t.Context()
	const iss, sub = "https://idp.example/shared", "same-subject"
	for _, id := range []string{"alpha", "beta"} {
		mustCreateTenant(t, s, id)
		must(t, "create user in "+id, s.CreateUser(ctx, userFixture(id, "u1", "u1@example.org")))
		must(t, "create provider in "+id, s.CreateIdentityProvider(ctx, idpFixture(id, "idp")))
		must(t, "route in "+id, s.CreateDomainRoute(ctx, routeFixture(id, "clinic.example", "idp")))
		must(t, "link in "+id, s.CreateIdentityLink(ctx, linkFixture(id, iss, sub, "u1")))
	}
	mustCreateTenant(t, s, "empty")
	intact := func(id string) {
		t.Helper()
		p, err := s.GetIdentityProvider(ctx, id, "idp")
		must(t, "get provider of "+id, err)
		mustEqual(t, "provider of "+id, p, idpFixture(id, "idp"))
		rl, err := s.ListDomainRoutes(ctx, id)
		must(t, "list routes of "+id, err)
		mustEqual(t, "routes of "+id, rl, []storage.DomainRoute{routeFixture(id, "clinic.example", "idp")})
		l, err := s.GetIdentityLink(ctx, id, iss, sub)
		must(t, "get link of "+id, err)
		mustEqual(t, "link of "+id, l, linkFixture(id, iss, sub, "u1"))
	}
	intact("alpha")
	intact("beta")

	_, err := s.GetIdentityProvider(ctx, "empty", "idp")
	mustErr(t, "get provider under the empty tenant", err, storage.ErrNotFound)
	_, err = s.GetIdentityLink(ctx, "empty", iss, sub)
	mustErr(t, "get link under the empty tenant", err, storage.ErrNotFound)
	ps, err := s.ListIdentityProviders(ctx, "empty")
	must(t, "list providers under the empty tenant", err)
	mustEqual(t, "providers under the empty tenant", len(ps), 0)
	rl, err := s.ListDomainRoutes(ctx, "empty")
	must(t, "list routes under the empty tenant", err)
	mustEqual(t, "routes under the empty tenant", len(rl), 0)
	mustErr(t, "update provider under the empty tenant", s.UpdateIdentityProvider(ctx, idpFixture("empty", "idp")), storage.ErrNotFound)
	mustErr(t, "delete provider under the empty tenant", s.DeleteIdentityProvider(ctx, "empty", "idp"), storage.ErrNotFound)
	mustErr(t, "delete route under the empty tenant", s.DeleteDomainRoute(ctx, "empty", "clinic.example"), storage.ErrNotFound)
	mustErr(t, "unlink under the empty tenant", s.DeleteIdentityLink(ctx, "empty", iss, sub), storage.ErrNotFound)
	// Neither a route nor a link may name another tenant's provider or user.
	mustErr(t, "route to alpha's provider from the empty tenant", s.CreateDomainRoute(ctx, routeFixture("empty", "x.example", "idp")), storage.ErrNotFound)
	mustErr(t, "link to alpha's user from the empty tenant", s.CreateIdentityLink(ctx, linkFixture("empty", iss, sub, "u1")), storage.ErrNotFound)
	links, err := s.ListIdentityLinks(ctx, "empty", "u1")
	must(t, "list links under the empty tenant", err)
	mustEqual(t, "links under the empty tenant", len(links), 0)
	intact("alpha")
	intact("beta")

	// Changing and deleting alpha's records leaves beta's alone.
	changed := idpFixture("alpha", "idp")
	changed.DisplayName = "changed"
	must(t, "update alpha's provider", s.UpdateIdentityProvider(ctx, changed))
	intact("beta")
	must(t, "unlink in alpha", s.DeleteIdentityLink(ctx, "alpha", iss, sub))
	intact("beta")
	must(t, "delete alpha's route", s.DeleteDomainRoute(ctx, "alpha", "clinic.example"))
	intact("beta")
	must(t, "delete alpha's provider", s.DeleteIdentityProvider(ctx, "alpha", "idp"))
	intact("beta")
}
