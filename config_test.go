package main

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestDemoDefault(t *testing.T) {
	const understood = "--" + demoOnNetworkFlag
	refused := "set " + demoOnNetworkEnv + "=true (--" + demoOnNetworkFlag + ")"
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want bool
		err  string // part of the one line that refuses start-up
	}{
		{"embedded store on loopback", nil, nil, true, ""},
		{"loopback public URL", map[string]string{"SMARTAUTH_BASE_URL": "http://localhost:8080"}, nil, true, ""},
		{"listening on every interface", nil, []string{"--addr", "0.0.0.0:8080"}, false, ""},
		{"public base URL", map[string]string{"SMARTAUTH_BASE_URL": "https://auth.example"}, nil, false, ""},
		{"refused by environment", map[string]string{"SMARTAUTH_DEMO": "false"}, nil, false, ""},
		{"PostgreSQL", map[string]string{"DATABASE_URL": "postgres://u@h/db", "SMARTAUTH_MASTER_KEY": "x"}, nil, false, ""},
		{"asked for by flag on every interface", nil, []string{"--addr", "0.0.0.0:8080", "--demo"}, false,
			"this server listens on 0.0.0.0:8080: turn the demo off (SMARTAUTH_DEMO=false) or " + refused},
		{"asked for by environment on every interface", map[string]string{"SMARTAUTH_DEMO": "true"}, []string{"--addr", "0.0.0.0:8080"}, false, refused},
		{"asked for on loopback behind a public URL", map[string]string{"SMARTAUTH_DEMO": "true", "SMARTAUTH_BASE_URL": "https://auth.example"}, nil, false,
			"has the public URL https://auth.example: "},
		{"asked for with PostgreSQL on every interface", map[string]string{"SMARTAUTH_DEMO": "true", "DATABASE_URL": "postgres://u@h/db", "SMARTAUTH_MASTER_KEY": "x",
			"SMARTAUTH_ADDR": "0.0.0.0:8080"}, nil, false, refused},
		{"asked for on a network, understood by flag", nil, []string{"--addr", "0.0.0.0:8080", "--demo", understood}, true, ""},
		{"asked for on a network, understood by environment", map[string]string{"SMARTAUTH_DEMO": "true", demoOnNetworkEnv: "true"},
			[]string{"--addr", "0.0.0.0:8080"}, true, ""},
		{"understanding alone does not ask for it", nil, []string{"--addr", "0.0.0.0:8080", understood}, false, ""},
		{"understanding is a boolean", map[string]string{demoOnNetworkEnv: "yes please"}, nil, false, demoOnNetworkEnv + ` "yes please" must be true or false`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string { return tc.env[k] }
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			load := serveFlags(fs, env)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := load()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.demo != tc.want {
				t.Fatalf("demo = %v, want %v", c.demo, tc.want)
			}
		})
	}
}

func TestPrivateNetworkSettings(t *testing.T) {
	tests := []struct {
		name            string
		env             map[string]string
		args            []string
		jwks, fhir, idp bool
		err             string
	}{
		{"default refuses all", nil, nil, false, false, false, ""},
		{"FHIR only, by environment", map[string]string{"SMARTAUTH_FHIR_PRIVATE_NETWORKS": "true"}, nil, false, true, false, ""},
		{"JWKS only, by flag", nil, []string{"--jwks-private-networks"}, true, false, false, ""},
		{"identity providers only, by environment", map[string]string{"SMARTAUTH_IDP_PRIVATE_NETWORKS": "true"}, nil, false, false, true, ""},
		{"identity providers only, by flag", nil, []string{"--idp-private-networks"}, false, false, true, ""},
		{"flag overrides environment", map[string]string{"SMARTAUTH_FHIR_PRIVATE_NETWORKS": "true"}, []string{"--fhir-private-networks=false"}, false, false, false, ""},
		{"not a boolean", map[string]string{"SMARTAUTH_FHIR_PRIVATE_NETWORKS": "sometimes"}, nil, false, false, false, "SMARTAUTH_FHIR_PRIVATE_NETWORKS \"sometimes\" must be true or false"},
		{"identity providers, not a boolean", map[string]string{"SMARTAUTH_IDP_PRIVATE_NETWORKS": "sometimes"}, nil, false, false, false, "SMARTAUTH_IDP_PRIVATE_NETWORKS \"sometimes\" must be true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string { return tc.env[k] }
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			load := serveFlags(fs, env)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := load()
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.privateJWKS != tc.jwks || c.privateFHIR != tc.fhir || c.privateIdP != tc.idp {
				t.Fatalf("private JWKS %v FHIR %v IdP %v, want %v %v %v", c.privateJWKS, c.privateFHIR, c.privateIdP, tc.jwks, tc.fhir, tc.idp)
			}
		})
	}
}

func TestMetricsAddr(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
		err  string
	}{
		{"off by default", nil, nil, "", ""},
		{"by flag", nil, []string{"--metrics-addr", "127.0.0.1:9090"}, "127.0.0.1:9090", ""},
		{"by environment", map[string]string{"SMARTAUTH_METRICS_ADDR": "10.0.0.5:9090"}, nil, "10.0.0.5:9090", ""},
		{"flag over environment", map[string]string{"SMARTAUTH_METRICS_ADDR": "127.0.0.1:9090"}, []string{"--metrics-addr", "127.0.0.1:9191"}, "127.0.0.1:9191", ""},
		{"same port on another address", nil, []string{"--metrics-addr", "10.0.0.5:8080"}, "10.0.0.5:8080", ""},
		{"not host:port", nil, []string{"--metrics-addr", "9090"}, "", `SMARTAUTH_METRICS_ADDR "9090" must be host:port`},
		{"no valid port", nil, []string{"--metrics-addr", "127.0.0.1:http"}, "", "has no valid port"},
		{"the public listener", nil, []string{"--metrics-addr", "127.0.0.1:8080"}, "", "never beside the public endpoints"},
		{"every interface on the public port", nil, []string{"--metrics-addr", ":8080"}, "", "never beside the public endpoints"},
		{"the public port on every interface", nil, []string{"--addr", "0.0.0.0:8080", "--metrics-addr", "127.0.0.1:8080"}, "", "never beside the public endpoints"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			load := serveFlags(fs, func(k string) string { return tc.env[k] })
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := load()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.metricsAddr != tc.want {
				t.Fatalf("metrics address %q, want %q", c.metricsAddr, tc.want)
			}
		})
	}
}
