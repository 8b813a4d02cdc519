package main

import (
	"context"
	"fmt"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/storage"
)

// keysListCommand is "keys list": a tenant's signing keys, newest first,
// each active, retiring (still in the JWKS) or retired. Only what the JWKS
// would show is printed; the sealed private keys never are.
func keysListCommand(ctx context.Context, tenant *string) func(d *deps) (any, error) {
	return func(d *deps) (any, error) {
		ks, err := d.store.ListSigningKeys(ctx, *tenant)
		if err != nil {
			return nil, fmt.Errorf("signing keys of tenant %q: %w", *tenant, err)
		}
		return keysStateView(ks, time.Now()), nil
	}
}

// keysStateView shows keys as keysView does, calling a retiring key that
// has left the JWKS by now retired.
func keysStateView(ks []storage.SigningKey, now time.Time) []keyJSON {
	out := []keyJSON{}
	for i, v := range keysView(ks) {
		if !keys.Published(ks[i], now) {
			v.Status = "retired"
		}
		out = append(out, v)
	}
	return out
}
