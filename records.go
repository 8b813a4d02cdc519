package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/smartauth/smartauth/federation"
	"github.com/smartauth/smartauth/storage"
)

// record is something a command names: a tenant, an operator, or a client,
// user, identity provider or domain of a tenant. Storage says only that
// some record is missing or already there; the command knows which
// records it named, so the line a person reads can say which, in the
// words they typed.
type record struct {
	// kind is what people call it: "client", "identity provider".
	kind string
	// id is the record's name as the person typed it.
	id string
	// tenant is the tenant it belongs to; empty for a tenant or an operator.
	tenant string
	// created marks a record the command makes: "already exists" is about
	// it. The others must exist for the command to run.
	created bool
	// find looks the record up; nil when it cannot be looked up on its own.
	find func(ctx context.Context, s storage.Storage) error
}

// name is the kind and id, as in `client "chart"`.
func (r record) name() string {
	if r.id == "" {
		return r.kind
	}
	return fmt.Sprintf("%s %q", r.kind, r.id)
}

// where is the tenant part of a message, empty outside tenants.
func (r record) where() string {
	if r.tenant == "" {
		return ""
	}
	return fmt.Sprintf(" in tenant %q", r.tenant)
}

func (r record) String() string { return r.name() + r.where() }

// missing is the plain line for a record that is not there.
func (r record) missing() error { return errors.New("no " + r.name() + r.where()) }

// duplicate is the plain line for a record made twice.
func (r record) duplicate() error { return errors.New(r.name() + " already exists" + r.where()) }

// creating marks r as the record a command makes.
func creating(r record) record {
	r.created = true
	return r
}

func tenantRecord(id string) record {
	return record{kind: "tenant", id: id, find: func(ctx context.Context, s storage.Storage) error {
		_, err := s.GetTenant(ctx, id)
		return err
	}}
}

func clientRecord(tenant, id string) record {
	return record{kind: "client", id: id, tenant: tenant, find: func(ctx context.Context, s storage.Storage) error {
		_, err := s.GetClient(ctx, tenant, id)
		return err
	}}
}

// userRecord is a user of a tenant named by email or, without an @, by id.
func userRecord(tenant, user string) record {
	return record{kind: "user", id: user, tenant: tenant, find: func(ctx context.Context, s storage.Storage) error {
		var err error
		if strings.Contains(user, "@") {
			_, err = s.GetUserByEmail(ctx, tenant, user)
		} else {
			_, err = s.GetUser(ctx, tenant, user)
		}
		return err
	}}
}

func operatorRecord(email string) record {
	return record{kind: "operator", id: email, find: func(ctx context.Context, s storage.Storage) error {
		_, err := s.GetUserByEmail(ctx, storage.OperatorRealm, email)
		return err
	}}
}

func idpRecord(tenant, id string) record {
	return record{kind: "identity provider", id: id, tenant: tenant, find: func(ctx context.Context, s storage.Storage) error {
		_, err := s.GetIdentityProvider(ctx, tenant, id)
		return err
	}}
}

// domainRecord is the route of an email domain; a leading "*." is the
// same route, taking in subdomains.
func domainRecord(tenant, domain string) record {
	return record{kind: "domain", id: domain, tenant: tenant, find: func(ctx context.Context, s storage.Storage) error {
		d, err := federation.NormalizeDomain(strings.TrimPrefix(strings.TrimSpace(domain), "*."))
		if err != nil {
			return err
		}
		rs, err := s.ListDomainRoutes(ctx, tenant)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(rs, func(r storage.DomainRoute) bool { return r.Domain == d }) {
			return storage.ErrNotFound
		}
		return nil
	}}
}

// initialAccessTokenRecord is an outstanding initial access token, which
// only revoking it looks up.
func initialAccessTokenRecord(tenant, ref string) record {
	return record{kind: "outstanding initial access token", id: ref, tenant: tenant}
}

// firstMissing returns the first record that must exist and does not.
func firstMissing(ctx context.Context, s storage.Storage, rs []record) (record, bool, error) {
	for _, r := range rs {
		if r.created || r.find == nil {
			continue
		}
		err := r.find(ctx, s)
		if errors.Is(err, storage.ErrNotFound) {
			return r, true, nil
		}
		if err != nil {
			return r, false, fmt.Errorf("look up %s: %w", r, err)
		}
	}
	return record{}, false, nil
}

// explain is the one place where a storage sentinel becomes the line a
// person reads: a missing or duplicate record is named plainly, as in
// `tenant "clinic" already exists` or `no tenant "nosuch"`, rather than
// with the chain of layers and database constraints it came through.
// Other errors pass unchanged.
func explain(ctx context.Context, s storage.Storage, err error, rs []record) error {
	switch {
	case errors.Is(err, storage.ErrAlreadyExists):
		// Of several records made at once, the one already there is meant.
		made := slices.DeleteFunc(slices.Clone(rs), func(r record) bool { return !r.created })
		for _, r := range made {
			if r.find != nil && r.find(ctx, s) == nil {
				return r.duplicate()
			}
		}
		if len(made) > 0 {
			return made[0].duplicate()
		}
	case errors.Is(err, storage.ErrNotFound):
		// Something named went away while the command ran, or could
		// not be looked up beforehand.
		if r, ok, _ := firstMissing(ctx, s, rs); ok {
			return r.missing()
		}
		for _, r := range rs {
			if !r.created && r.find == nil {
				return r.missing()
			}
		}
	}
	return err
}
