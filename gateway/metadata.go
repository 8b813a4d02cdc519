package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// SMART's extension on CapabilityStatement.rest.security naming the
// authorization server's endpoints (SMART App Launch 2.2 §Conformance).
const oauthURIsExtension = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

// UpstreamCapabilities reads the upstream's CapabilityStatement with the
// gateway's credentials, its base URLs rewritten to the gateway's.
func (gw *Gateway) UpstreamCapabilities(ctx context.Context, base string, up Upstream) (map[string]any, error) {
	req := Request{Path: "metadata", Base: base, Upstream: up}
	out, err := gw.send(ctx, http.MethodGet, upstreamURL(up.Base, "metadata", nil), http.Header{}, nil, req)
	if err != nil {
		return nil, err
	}
	if out.status != http.StatusOK {
		return nil, fmt.Errorf("gateway: upstream answered %d to /metadata", out.status)
	}
	var doc map[string]any
	if err := json.Unmarshal(out.body, &doc); err != nil {
		return nil, fmt.Errorf("gateway: upstream /metadata is not JSON: %w", err)
	}
	if rt, _ := doc["resourceType"].(string); rt != "CapabilityStatement" {
		return nil, fmt.Errorf("gateway: upstream /metadata is a %q, not a CapabilityStatement", rt)
	}
	return doc, nil
}

// CapabilityStatement is the gateway's CapabilityStatement: upstream's
// (nil when it could not be read, for a minimal one of the gateway's own)
// with the gateway's base URL and SMART's security section pointing at the
// issuer. upstream is not modified.
func CapabilityStatement(upstream map[string]any, base, issuer string, now time.Time) ([]byte, error) {
	security := map[string]any{
		"extension": []any{map[string]any{
			"url": oauthURIsExtension,
			"extension": []any{
				map[string]any{"url": "authorize", "valueUri": issuer + "/authorize"},
				map[string]any{"url": "token", "valueUri": issuer + "/token"},
				map[string]any{"url": "introspect", "valueUri": issuer + "/introspect"},
				map[string]any{"url": "revoke", "valueUri": issuer + "/revoke"},
			},
		}},
		"service": []any{map[string]any{
			"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
				"code":   "SMART-on-FHIR",
			}},
		}},
		"description": "SMART App Launch: access tokens from " + issuer,
	}
	doc := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         now.UTC().Format(time.RFC3339),
		"kind":         "instance",
		"fhirVersion":  "4.0.1",
		"format":       []any{"json"},
		"rest":         []any{map[string]any{"mode": "server"}},
	}
	for k, v := range upstream {
		doc[k] = v
	}
	impl, _ := doc["implementation"].(map[string]any)
	copied := map[string]any{"description": "SMART gateway"}
	for k, v := range impl {
		copied[k] = v
	}
	copied["url"] = base
	doc["implementation"] = copied
	rests, _ := doc["rest"].([]any)
	out := make([]any, 0, len(rests))
	for _, r := range rests {
		rest, _ := r.(map[string]any)
		c := map[string]any{}
		for k, v := range rest {
			c[k] = v
		}
		if c["mode"] == "server" {
			c["security"] = security
		}
		out = append(out, c)
	}
	doc["rest"] = out
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("gateway: encode capability statement: %w", err)
	}
	return body, nil
}
