package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/netguard"
)

// config is smartauth's configuration: flags override the environment,
// which overrides the defaults.
type config struct {
	addr          string
	baseURL       *url.URL
	databaseURL   string
	dataDir       string
	masterKey     string
	masterKeyFile string
	demo          bool
	// demoOnNetwork lets the demo, and the demo operator it leaves behind,
	// be reachable from beyond this machine.
	demoOnNetwork bool
	// demoFHIRUpstream is the FHIR server the demo tenant's gateway forwards to.
	demoFHIRUpstream string
	// shutdownDelay is how long serve keeps answering, not ready, after SIGTERM.
	shutdownDelay time.Duration
	logLevel      slog.Level
	// privateJWKS lets client JWKS URLs reach internal addresses.
	privateJWKS bool
	// privateFHIR lets tenants' FHIR patient search reach internal addresses.
	privateFHIR bool
	// privateIdP lets tenants' identity providers be at internal addresses.
	privateIdP bool
	// metricsAddr is where /metrics is served, apart from addr; empty
	// serves no metrics.
	metricsAddr string
}

// boolFlag registers a boolean flag whose default comes from an environment
// variable; a variable that is not a boolean is reported when the flags are loaded.
func boolFlag(fs *flag.FlagSet, env func(string) string, name, envName, usage string) (*bool, error) {
	def, err := false, error(nil)
	if v := env(envName); v != "" {
		if def, err = strconv.ParseBool(v); err != nil {
			err = fmt.Errorf("%s %q must be true or false", envName, v)
		}
	}
	return fs.Bool(name, def, usage+" ("+envName+")"), err
}

// envOr returns the environment value of name, or def when unset.
func envOr(env func(string) string, name, def string) string {
	if v := env(name); v != "" {
		return v
	}
	return def
}

// The setting that lets the demo's public passwords reach a network is long
// on purpose: nobody types it by accident or copies it without reading it.
const (
	demoOnNetworkFlag = "demo-on-public-network-i-understand-the-passwords-are-public"
	demoOnNetworkEnv  = "SMARTAUTH_DEMO_ON_PUBLIC_NETWORK_I_UNDERSTAND_THE_PASSWORDS_ARE_PUBLIC"
)

// storeFlags registers the settings every command that opens the store needs.
func storeFlags(fs *flag.FlagSet, env func(string) string) func() (config, error) {
	dataDir := fs.String("data-dir", envOr(env, "SMARTAUTH_DATA_DIR", "data"), "folder for the embedded database and master key (SMARTAUTH_DATA_DIR)")
	dbURL := fs.String("database-url", env("DATABASE_URL"), "postgres://… or a SQLite file path; default a SQLite file in the data folder (DATABASE_URL)")
	keyFile := fs.String("master-key-file", env("SMARTAUTH_MASTER_KEY_FILE"), "file holding the base64 master key (SMARTAUTH_MASTER_KEY_FILE)")
	logLevel := fs.String("log-level", envOr(env, "SMARTAUTH_LOG_LEVEL", "info"), "debug, info, warn or error (SMARTAUTH_LOG_LEVEL)")
	return func() (config, error) {
		c := config{dataDir: *dataDir, databaseURL: *dbURL, masterKey: env("SMARTAUTH_MASTER_KEY"), masterKeyFile: *keyFile}
		if c.dataDir == "" {
			return c, errors.New("SMARTAUTH_DATA_DIR must not be empty")
		}
		if err := c.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
			return c, fmt.Errorf("SMARTAUTH_LOG_LEVEL %q must be debug, info, warn or error", *logLevel)
		}
		if c.databaseURL == "" {
			c.databaseURL = filepath.Join(c.dataDir, "smartauth.db")
		}
		if c.isPostgres() {
			u, err := url.Parse(c.databaseURL)
			if err != nil || u.Host == "" {
				return c, errors.New("DATABASE_URL is not a valid postgres:// URL")
			}
		}
		if c.masterKeyFile == "" && c.masterKey == "" {
			if c.isPostgres() {
				return c, errors.New("SMARTAUTH_MASTER_KEY or SMARTAUTH_MASTER_KEY_FILE is required with PostgreSQL: every replica must share one master key")
			}
			c.masterKeyFile = filepath.Join(c.dataDir, "master.key")
		}
		return c, nil
	}
}

// serveFlags registers the settings of the serve command.
func serveFlags(fs *flag.FlagSet, env func(string) string) func() (config, error) {
	load := storeFlags(fs, env)
	addr := fs.String("addr", envOr(env, "SMARTAUTH_ADDR", "127.0.0.1:8080"), "address to listen on (SMARTAUTH_ADDR)")
	base := fs.String("base-url", env("SMARTAUTH_BASE_URL"), "public URL of this server; default http://{listening address} (SMARTAUTH_BASE_URL)")
	demoDefault, demoErr := env("DATABASE_URL") == "", error(nil)
	if v := env("SMARTAUTH_DEMO"); v != "" {
		if demoDefault, demoErr = strconv.ParseBool(v); demoErr != nil {
			demoErr = fmt.Errorf("SMARTAUTH_DEMO %q must be true or false", v)
		}
	}
	demo := fs.Bool("demo", demoDefault, "create and print the demo tenant, on loopback only (SMARTAUTH_DEMO; default on with the embedded database on loopback)")
	demoOnNetwork, demoOnNetworkErr := boolFlag(fs, env, demoOnNetworkFlag, demoOnNetworkEnv,
		"let the demo, whose passwords are public, be reachable from other machines")
	demoUpstream := fs.String("demo-fhir-upstream", env("SMARTAUTH_DEMO_FHIR_UPSTREAM"),
		"FHIR base URL the demo tenant's gateway forwards to, without credentials (SMARTAUTH_DEMO_FHIR_UPSTREAM)")
	privateJWKS, privateErr := boolFlag(fs, env, "jwks-private-networks", "SMARTAUTH_JWKS_PRIVATE_NETWORKS",
		"let client JWKS URLs reach private and loopback addresses")
	privateFHIR, privateFHIRErr := boolFlag(fs, env, "fhir-private-networks", "SMARTAUTH_FHIR_PRIVATE_NETWORKS",
		"let tenants' FHIR servers (patient search and gateway upstream) reach private and loopback addresses")
	privateIdP, privateIdPErr := boolFlag(fs, env, "idp-private-networks", "SMARTAUTH_IDP_PRIVATE_NETWORKS",
		"let tenants' identity providers be at private and loopback addresses")
	shutdownDelay := fs.String("shutdown-delay", envOr(env, "SMARTAUTH_SHUTDOWN_DELAY", "0s"),
		"after SIGTERM, how long to keep serving while /readyz says not ready, so load balancers stop sending first (SMARTAUTH_SHUTDOWN_DELAY)")
	metricsAddr := fs.String("metrics-addr", env("SMARTAUTH_METRICS_ADDR"),
		"address of a second listener serving Prometheus metrics at /metrics, apart from --addr; empty serves none (SMARTAUTH_METRICS_ADDR)")
	return func() (config, error) {
		c, err := load()
		if err != nil {
			return c, err
		}
		if demoErr != nil {
			return c, demoErr
		}
		if err := errors.Join(demoOnNetworkErr, privateErr, privateFHIRErr, privateIdPErr); err != nil {
			return c, err
		}
		c.privateJWKS = *privateJWKS
		c.privateFHIR = *privateFHIR
		c.privateIdP = *privateIdP
		c.demo = *demo
		c.demoOnNetwork = *demoOnNetwork
		c.demoFHIRUpstream = strings.TrimSpace(*demoUpstream)
		if c.shutdownDelay, err = time.ParseDuration(*shutdownDelay); err != nil || c.shutdownDelay < 0 || c.shutdownDelay > 5*time.Minute {
			return c, fmt.Errorf("SMARTAUTH_SHUTDOWN_DELAY %q must be a duration from 0s to 5m, such as 10s", *shutdownDelay)
		}
		c.addr = *addr
		_, port, err := net.SplitHostPort(c.addr)
		if err != nil {
			return c, fmt.Errorf("SMARTAUTH_ADDR %q must be host:port", c.addr)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return c, fmt.Errorf("SMARTAUTH_ADDR %q has no valid port", c.addr)
		}
		c.metricsAddr = strings.TrimSpace(*metricsAddr)
		if err := c.checkMetricsAddr(); err != nil {
			return c, err
		}
		if raw := *base; raw != "" {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return c, fmt.Errorf("SMARTAUTH_BASE_URL %q must be an absolute http(s) URL", raw)
			}
			if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				return c, fmt.Errorf("SMARTAUTH_BASE_URL %q must be scheme://host[:port] only: smartauth serves at the root of its host", raw)
			}
			u.Path = ""
			c.baseURL = u
		}
		if exposed := c.exposure(); c.demo && exposed != "" {
			switch {
			case !demoExplicit(fs, env):
				// The default never puts public passwords on a network.
				c.demo = false
			case !c.demoOnNetwork:
				// Anyone who can reach the server could sign in as the demo
				// operator and enroll their own authenticator first.
				return c, fmt.Errorf("the demo's passwords are public, so it runs only on loopback, and this server %s: "+
					"turn the demo off (SMARTAUTH_DEMO=false) or set %s=true (--%s)", exposed, demoOnNetworkEnv, demoOnNetworkFlag)
			}
		}
		if c.demoFHIRUpstream != "" {
			if err := c.checkDemoUpstream(); err != nil {
				return c, err
			}
		}
		return c, nil
	}
}

// checkMetricsAddr refuses a metrics address that is not host:port, or
// that is the public listener's: metrics are served on their own listener
// only, so that the operator can keep them off the network the public
// endpoints face.
func (c config) checkMetricsAddr() error {
	if c.metricsAddr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.metricsAddr)
	if err != nil {
		return fmt.Errorf("SMARTAUTH_METRICS_ADDR %q must be host:port", c.metricsAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("SMARTAUTH_METRICS_ADDR %q has no valid port", c.metricsAddr)
	}
	mainHost, mainPort, _ := net.SplitHostPort(c.addr)
	if port == mainPort && port != "0" && (host == mainHost || wildcardHost(host) || wildcardHost(mainHost)) {
		return fmt.Errorf("SMARTAUTH_METRICS_ADDR %q is the address SMARTAUTH_ADDR %q listens on: metrics are served on a listener of their own, "+
			"never beside the public endpoints", c.metricsAddr, c.addr)
	}
	return nil
}

// wildcardHost reports whether a listening host takes every interface.
func wildcardHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// checkDemoUpstream refuses a demo FHIR upstream the server could not use:
// without the demo, or on this machine or a private network while tenants'
// FHIR servers must be public. A host name is resolved only when the
// gateway connects, and refused then if it leads to a private address.
func (c config) checkDemoUpstream() error {
	if !c.demo {
		return errors.New("SMARTAUTH_DEMO_FHIR_UPSTREAM (--demo-fhir-upstream) sets up the demo tenant's gateway, and the demo is off")
	}
	u, err := url.Parse(c.demoFHIRUpstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("SMARTAUTH_DEMO_FHIR_UPSTREAM %q must be an absolute http(s) URL", c.demoFHIRUpstream)
	}
	host := u.Hostname()
	ip, err := netip.ParseAddr(host)
	private := strings.EqualFold(host, "localhost") || (err == nil && !netguard.Public(ip))
	if private && !c.privateFHIR {
		return fmt.Errorf("SMARTAUTH_DEMO_FHIR_UPSTREAM %q is on this machine or a private network, which the gateway reaches only with "+
			"SMARTAUTH_FHIR_PRIVATE_NETWORKS=true (--fhir-private-networks)", c.demoFHIRUpstream)
	}
	return nil
}

// exposure says how the server can be reached from beyond this machine,
// such as "listens on 0.0.0.0:8080", or is empty when only loopback reaches it.
// A public URL that is not loopback counts, as a proxy on this machine may
// forward the world to a loopback listener.
func (c config) exposure() string {
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil || !isLoopbackHost(host) {
		return "listens on " + c.addr
	}
	if c.baseURL != nil && !isLoopbackHost(c.baseURL.Hostname()) {
		return "has the public URL " + c.baseURL.String()
	}
	return ""
}

// isLoopbackHost reports whether host names this machine only.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback())
}

// demoExplicit reports whether the operator asked for the demo by name.
func demoExplicit(fs *flag.FlagSet, env func(string) string) bool {
	set := env("SMARTAUTH_DEMO") != ""
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "demo" })
	return set
}

// defaultBaseURL is http://{addr}, naming localhost for a wildcard host.
func defaultBaseURL(addr net.Addr) *url.URL {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return &url.URL{Scheme: "http", Host: addr.String()}
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}
}

func (c config) isPostgres() bool {
	return strings.HasPrefix(c.databaseURL, "postgres://") || strings.HasPrefix(c.databaseURL, "postgresql://")
}

// sqlitePath is the file behind a SQLite DATABASE_URL.
func (c config) sqlitePath() string {
	p := strings.TrimPrefix(c.databaseURL, "sqlite://")
	p = strings.TrimPrefix(p, "sqlite:")
	return strings.TrimPrefix(p, "file:")
}
