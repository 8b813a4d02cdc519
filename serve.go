package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"time"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/metrics"
	"github.com/smartauth/smartauth/storage"
)

// shutdownGrace is how long in-flight requests get to finish on SIGTERM.
const shutdownGrace = 20 * time.Second

// serveGCPercent is the garbage collector's target when GOGC is not set.
// The server's live heap is small (caches and connections, some MiB), so
// Go's default of 100 collects every few milliseconds under load; at 400
// it collects a quarter as often, which takes about a sixth off the CPU of
// a proxied FHIR read or a token request, for some MiB more of memory.
const serveGCPercent = 400

func serve(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := serveFlags(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := load()
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if env("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	d, err := open(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer d.store.Close()
	if exposed := c.exposure(); exposed != "" && !c.demoOnNetwork {
		if err := refuseReachableDemoOperator(ctx, d.store, exposed); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.addr, err)
	}
	defer ln.Close()
	if c.baseURL == nil {
		c.baseURL = defaultBaseURL(ln.Addr())
	}
	var demo *demoInfo
	if c.demo {
		if demo, err = seedDemo(ctx, d, c.baseURL.String(), c.demoFHIRUpstream); err != nil {
			return fmt.Errorf("demo tenant: %w", err)
		}
	}
	var m *metrics.Metrics
	var metricsLn net.Listener
	if c.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", c.metricsAddr); err != nil {
			return fmt.Errorf("listen on %s for metrics: %w", c.metricsAddr, err)
		}
		defer metricsLn.Close()
		m = metrics.New()
	}
	srv, err := server.New(server.Config{BaseURL: c.baseURL, Store: d.store, Keys: d.keys, Logger: d.log, MasterKey: d.masterKey,
		AllowPrivateJWKS: c.privateJWKS, AllowPrivateFHIR: c.privateFHIR, AllowPrivateIdP: c.privateIdP, Metrics: m})
	if err != nil {
		return err
	}
	// Deferred after the store's Close, so it runs first: once the HTTP
	// server has shut down, the audit events of the requests it let finish
	// are stored before the store closes.
	defer srv.Close()
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go srv.Sweep(sweepCtx, time.Minute)
	// Other replicas' and the CLI's changes reach the caches until the
	// HTTP server has shut down; then the listener stops before the store
	// closes (deferred calls run last first).
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		srv.WatchChanges(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()

	d.log.Info("serving", "addr", ln.Addr().String(), "base_url", c.baseURL.String(), "schema_version", d.version)
	// One write, so a reader watching for the "listening" line (a script or
	// a test) never sees the banner half printed.
	var banner bytes.Buffer
	fmt.Fprintf(&banner, "smartauth is listening on %s (public URL %s)\n", ln.Addr(), c.baseURL)
	if metricsLn != nil {
		fmt.Fprintf(&banner, "Prometheus metrics at http://%s/metrics\n", metricsLn.Addr())
	}
	if demo != nil {
		demo.print(&banner)
	} else if err := printNextSteps(ctx, &banner, d.store, c.baseURL.String()); err != nil {
		return err
	}
	if _, err := stdout.Write(banner.Bytes()); err != nil {
		d.log.Warn("could not print the start-up banner", "err", err)
	}

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()
	// The metrics listener serves /metrics and nothing else; the public
	// listener does not serve it at all.
	metricsSrv, metricsErrc := serveMetrics(m, metricsLn)
	if metricsSrv != nil {
		d.log.Info("serving metrics", "addr", metricsLn.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case err := <-metricsErrc:
		return fmt.Errorf("serve metrics: %w", err)
	case <-ctx.Done():
	}
	// Say not ready but keep serving for the delay, so that load balancers
	// stop sending before the listener closes: a connection a balancer opens
	// just as it closes would be reset, its request lost. Then stop
	// accepting, and let in-flight requests (and the grants they write) finish.
	if c.shutdownDelay > 0 {
		srv.Drain()
		d.log.Info("draining", "delay", c.shutdownDelay.String())
		select {
		case <-time.After(c.shutdownDelay):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	d.log.Info("shutting down", "grace", shutdownGrace.String())
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if metricsSrv != nil {
		// Scrapes go on until the public listener has drained, so the
		// last moments of a shutdown are still counted.
		defer metricsSrv.Shutdown(shutCtx)
	}
	if err := httpSrv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	d.log.Info("stopped")
	return nil
}

// serveMetrics serves m at GET /metrics on ln, when both are set; the
// channel receives the error that stops it other than a shutdown.
func serveMetrics(m *metrics.Metrics, ln net.Listener) (*http.Server, <-chan error) {
	errc := make(chan error, 1)
	if m == nil || ln == nil {
		return nil, errc
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return srv, errc
}

// printNextSteps tells the operator of a server with nothing set up yet
// (no operator, no tenant: a fresh database without the demo) the
// commands that set it up; it prints nothing once both exist.
func printNextSteps(ctx context.Context, w io.Writer, store storage.Storage, base string) error {
	operators, err := store.ListUsers(ctx, storage.OperatorRealm)
	if err != nil {
		return fmt.Errorf("list operators: %w", err)
	}
	tenants, err := store.ListTenants(ctx)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	tenants = slices.DeleteFunc(tenants, func(t storage.Tenant) bool { return t.ID == storage.OperatorRealm })
	if len(operators) > 0 && len(tenants) > 0 {
		return nil
	}
	fmt.Fprintln(w, "\nNothing is set up yet. Next steps, run with this server's DATABASE_URL and master key:")
	step := 0
	if len(operators) == 0 {
		step++
		fmt.Fprintf(w, "  %d. Create an operator for the admin pages (the password is read from stdin):\n", step)
		fmt.Fprintln(w, "       smartauth admin create --email you@example.org < password.txt")
		fmt.Fprintf(w, "     then sign in at %s/admin/ and set up an authenticator app.\n", base)
	}
	if len(tenants) == 0 {
		step++
		fmt.Fprintf(w, "  %d. Create a tenant, with the FHIR server its tokens are for:\n", step)
		fmt.Fprintln(w, `       smartauth tenant create --id clinic --name "Clinic" --fhir-base-url https://fhir.example.org/r4`)
		fmt.Fprintf(w, "     Its issuer is then %s/t/clinic; add apps with \"smartauth client create\" or on the admin pages.\n", base)
	}
	fmt.Fprintln(w, "Run \"smartauth --help\" for every command.")
	return nil
}
