package main

import (
	"testing"
	"time"
)

func TestConfigFromEnvironment(t *testing.T) {
	base := map[string]string{
		"SMARTAUTH_ISSUER":                      "https://auth.example.org/t/clinic",
		"HEALTHLAKE_DATASTORE_ENDPOINT":         "https://healthlake.us-east-1.amazonaws.com/datastore/d1/r4/",
		"HEALTHLAKE_IAM_ROLE_ARN":               "arn:aws:iam::123456789012:role/healthlake-smart",
		"SMARTAUTH_INTROSPECTION_CLIENT_ID":     "lambda",
		"SMARTAUTH_INTROSPECTION_CLIENT_SECRET": "s",
		"SMARTAUTH_HTTP_TIMEOUT":                "500ms",
		"SMARTAUTH_JWKS_REFRESH_INTERVAL":       "1m",
	}
	cfg, err := config(func(k string) string { return base[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != base["SMARTAUTH_ISSUER"] || cfg.Audience != base["HEALTHLAKE_DATASTORE_ENDPOINT"] ||
		cfg.IAMRoleARN != base["HEALTHLAKE_IAM_ROLE_ARN"] || cfg.IntrospectionClientID != "lambda" ||
		cfg.IntrospectionClientSecret != "s" || cfg.HTTPClient.Timeout != 500*time.Millisecond ||
		cfg.RefreshInterval != time.Minute {
		t.Fatalf("config %+v", cfg)
	}
	for _, bad := range []string{"SMARTAUTH_HTTP_TIMEOUT", "SMARTAUTH_JWKS_REFRESH_INTERVAL"} {
		for _, v := range []string{"soon", "-1s", "0s"} {
			_, err := config(func(k string) string {
				if k == bad {
					return v
				}
				return base[k]
			})
			if err == nil {
				t.Errorf("%s=%s: want an error", bad, v)
			}
		}
	}
}
