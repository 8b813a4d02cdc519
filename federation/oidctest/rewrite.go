package oidctest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// rewriteIDToken re-issues the ID token of a token response with its
// claims changed by f, signed as f says.
func (p *Provider) rewriteIDToken(ctx context.Context, body []byte, f RewriteFunc) ([]byte, error) {
	var resp map[string]any
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("token response: %w", err)
	}
	raw, _ := resp["id_token"].(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("token response holds no ID token: %s", body)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decode ID token: %w", err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("decode ID token claims: %w", err)
	}
	alg, key := f(claims)
	payload, err = json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("encode ID token claims: %w", err)
	}
	switch alg {
	case "none":
		head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		resp["id_token"] = head + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	case "RS256":
		own, kid, err := p.signingKey(ctx)
		if err != nil {
			return nil, err
		}
		if key == nil {
			key = own
		}
		// The key id stays the provider's, so a verifier tries the
		// provider's key on a foreign signature.
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			return nil, fmt.Errorf("signer: %w", err)
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		if resp["id_token"], err = jws.CompactSerialize(); err != nil {
			return nil, fmt.Errorf("serialize: %w", err)
		}
	default:
		return nil, fmt.Errorf("unknown signing algorithm %q", alg)
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode token response: %w", err)
	}
	return out, nil
}
