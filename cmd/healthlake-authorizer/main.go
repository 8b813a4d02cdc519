// Command healthlake-authorizer is the AWS Lambda function a SMART-on-FHIR
// enabled HealthLake datastore calls to validate the bearer token of each
// FHIR request against one smartauth tenant.
//
// It is configured by environment variables:
//
//	SMARTAUTH_ISSUER                  the tenant's issuer URL, {base}/t/{tenant} (required)
//	HEALTHLAKE_DATASTORE_ENDPOINT     the datastore endpoint, also the tenant's FHIR base URL (required)
//	HEALTHLAKE_IAM_ROLE_ARN           the role HealthLake assumes for authorized requests (required)
//	SMARTAUTH_INTROSPECTION_CLIENT_ID     a confidential client of the tenant; with the secret,
//	SMARTAUTH_INTROSPECTION_CLIENT_SECRET every token is also checked for revocation
//	SMARTAUTH_HTTP_TIMEOUT            per-call timeout to the issuer (default 800ms)
//	SMARTAUTH_JWKS_REFRESH_INTERVAL   least time between JWKS fetches (default 10s)
//
// Build it for the provided.al2023 runtime with
//
//	CGO_ENABLED=0 GOOS=linux go build -tags lambda.norpc -o bootstrap ./cmd/healthlake-authorizer
package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	// aws-lambda-go runs the handler inside the Lambda runtime; it is used
	// by this command only, never by the server.
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/smartauth/smartauth/server/healthlake"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := config(os.Getenv)
	if err != nil {
		logger.Error("configuration", "err", err)
		os.Exit(1)
	}
	cfg.Logger = logger
	a, err := healthlake.New(cfg)
	if err != nil {
		logger.Error("configuration", "err", err)
		os.Exit(1)
	}
	lambda.Start(a.Handle)
}

// config reads the authorizer's configuration from the environment.
func config(getenv func(string) string) (healthlake.Config, error) {
	cfg := healthlake.Config{
		Issuer:                    getenv("SMARTAUTH_ISSUER"),
		Audience:                  getenv("HEALTHLAKE_DATASTORE_ENDPOINT"),
		IAMRoleARN:                getenv("HEALTHLAKE_IAM_ROLE_ARN"),
		IntrospectionClientID:     getenv("SMARTAUTH_INTROSPECTION_CLIENT_ID"),
		IntrospectionClientSecret: getenv("SMARTAUTH_INTROSPECTION_CLIENT_SECRET"),
	}
	timeout, err := duration(getenv, "SMARTAUTH_HTTP_TIMEOUT", healthlake.DefaultTimeout)
	if err != nil {
		return cfg, err
	}
	cfg.HTTPClient = &http.Client{Timeout: timeout}
	cfg.RefreshInterval, err = duration(getenv, "SMARTAUTH_JWKS_REFRESH_INTERVAL", healthlake.DefaultRefreshInterval)
	return cfg, err
}

func duration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q is not a positive duration", name, v)
	}
	return d, nil
}
