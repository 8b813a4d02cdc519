package main

import (
	"flag"
	"io"
	"testing"
)

func TestDemoDefault(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"embedded store on loopback", nil, nil, true},
		{"listening on every interface", nil, []string{"--addr", "0.0.0.0:8080"}, false},
		{"public base URL", map[string]string{"SMARTAUTH_BASE_URL": "https://auth.example"}, nil, false},
		{"asked for by flag", nil, []string{"--addr", "0.0.0.0:8080", "--demo"}, true},
		{"asked for by environment", map[string]string{"SMARTAUTH_DEMO": "true"}, []string{"--addr", "0.0.0.0:8080"}, true},
		{"refused by environment", map[string]string{"SMARTAUTH_DEMO": "false"}, nil, false},
		{"PostgreSQL", map[string]string{"DATABASE_URL": "postgres://u@h/db", "SMARTAUTH_MASTER_KEY": "x"}, nil, false},
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
			if err != nil {
				t.Fatal(err)
			}
			if c.demo != tc.want {
				t.Fatalf("demo = %v, want %v", c.demo, tc.want)
			}
		})
	}
}
