package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smartauth/smartauth/storage/postgres/pgtest"
)

// balancer is the load balancer in front of the replicas, as Kubernetes'
// Service is: it sends requests to the replicas whose /readyz says ready,
// checked every few milliseconds, and to the next replica when one refuses
// the connection. It opens a connection per request and retries only a
// refused connection, so nothing that reached a replica is sent twice.
type balancer struct {
	backends  []string
	ready     []atomic.Bool
	next      atomic.Uint32
	transport *http.Transport
}

func newBalancer(backends []string) *balancer {
	return &balancer{backends: backends, ready: make([]atomic.Bool, len(backends)), transport: &http.Transport{DisableKeepAlives: true}}
}

// watch checks the replicas' readiness until ctx ends.
func (b *balancer) watch(ctx context.Context) {
	client := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	for ctx.Err() == nil {
		for i, backend := range b.backends {
			resp, err := client.Get("http://" + backend + "/readyz")
			b.ready[i].Store(err == nil && resp.StatusCode == http.StatusOK)
			if err == nil {
				resp.Body.Close()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pick is the next ready replica, or the next one when none is ready.
func (b *balancer) pick(attempt int) string {
	start := int(b.next.Add(1))
	for i := range b.backends {
		if k := (start + i) % len(b.backends); b.ready[k].Load() {
			return b.backends[k]
		}
	}
	return b.backends[(start+attempt)%len(b.backends)]
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "balancer: read request", http.StatusBadRequest)
		return
	}
	for i := range 100 {
		backend := b.pick(i)
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", backend
		out.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := b.transport.RoundTrip(out)
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			http.Error(w, "balancer: "+err.Error(), http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "balancer: no replica accepts connections", http.StatusBadGateway)
}

// replica is one smartauth process of the cluster.
type replica struct {
	addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

func startReplica(t *testing.T, bin, addr string, env []string) *replica {
	t.Helper()
	r := &replica{addr: addr, out: &bytes.Buffer{}}
	r.cmd = exec.Command(bin, "serve", "--addr", addr, "--demo=false", "--log-level", "warn")
	r.cmd.Env = env
	r.cmd.Stderr = r.out
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 4096)
	n, _ := stdout.Read(line)
	if !strings.Contains(string(line[:n]), "listening on") {
		t.Fatalf("replica %s did not start: %s\n%s", addr, line[:n], r.out)
	}
	go io.Copy(io.Discard, stdout)
	return r
}

// stop sends SIGTERM, as Kubernetes does, and waits for a clean exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Wait(); err != nil {
		t.Errorf("replica %s exited with %v\n%s", r.addr, err, r.out)
	}
}

// TestRollingRestart runs two replicas on one PostgreSQL database behind a
// load balancer, keeps sign-ins, code redemptions, refreshes and backend
// token requests going, restarts each replica in turn with SIGTERM, and
// checks that no request got a 5xx and that every token the load ended
// with introspects active. The replicas drain for a moment after SIGTERM
// (SMARTAUTH_SHUTDOWN_DELAY), as they should behind a Kubernetes Service.
func TestRollingRestart(t *testing.T) {
	dsn := pgtest.URL(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "smartauth")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	addrs := []string{freeAddr(t), freeAddr(t)}
	lb := newBalancer(addrs)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go lb.watch(watchCtx)
	front := httptest.NewServer(lb)
	defer front.Close()
	env := append(os.Environ(), "DATABASE_URL="+dsn, "SMARTAUTH_MASTER_KEY="+base64.StdEncoding.EncodeToString(key),
		"SMARTAUTH_SHUTDOWN_DELAY=300ms",
		"SMARTAUTH_MASTER_KEY_FILE=", "SMARTAUTH_BASE_URL="+front.URL, "SMARTAUTH_DATA_DIR="+filepath.Join(dir, "data"))

	// The tenant and clients of the benchmark, made as the CLI would.
	c, err := loadConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	d, err := open(context.Background(), c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f, err := benchFixture(context.Background(), d, front.URL, "http://127.0.0.1:9/fhir")
	d.store.Close()
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*replica{startReplica(t, bin, addrs[0], env), startReplica(t, bin, addrs[1], env)}
	defer func() {
		for _, r := range replicas {
			if r.cmd.ProcessState == nil {
				_ = r.cmd.Process.Kill()
				_ = r.cmd.Wait()
			}
		}
	}()

	iss := front.URL + "/t/" + f.tenant
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(f.symID)+":"+url.QueryEscape(f.secret)))
	ccForm := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}.Encode()
	lbAddr := strings.TrimPrefix(front.URL, "http://")

	var (
		mu       sync.Mutex
		failures []string
		last     = map[int]string{} // each worker's latest access token
		requests atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			client := &benchClient{addr: lbAddr, browser: &http.Transport{DisableKeepAlives: true}}
			defer client.close()
			refresh := ""
			for {
				select {
				case <-stop:
					return
				default:
				}
				requests.Add(1)
				switch {
				case w%2 == 0: // a backend service
					out, err := client.post(tenantPath(iss)+"/token", basicAuth, ccForm)
					if err != nil {
						fail("worker %d client_credentials: %v", w, err)
						continue
					}
					mu.Lock()
					last[w] = out.AccessToken
					mu.Unlock()
				case refresh == "": // a person signs in: pages, consent, code redemption
					rt, err := signInForRefreshToken(client, iss, f)
					if err != nil {
						fail("worker %d sign-in: %v", w, err)
						continue
					}
					refresh = rt
				default: // the app refreshes, rotating its refresh token
					form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {f.appID}}
					out, err := client.post(tenantPath(iss)+"/token", "", form.Encode())
					if err != nil {
						fail("worker %d refresh: %v", w, err)
						refresh = ""
						continue
					}
					refresh = out.RefreshToken
					mu.Lock()
					last[w] = out.AccessToken
					mu.Unlock()
				}
			}
		})
	}

	time.Sleep(500 * time.Millisecond)
	for i := range replicas {
		replicas[i].stop(t)
		time.Sleep(300 * time.Millisecond) // the other replica carries the load alone
		replicas[i] = startReplica(t, bin, addrs[i], env)
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d requests, failures during the rolling restart:\n%s", requests.Load(), strings.Join(failures, "\n"))
	}
	t.Logf("%d requests through the rolling restart", requests.Load())
	if requests.Load() < 20 {
		t.Errorf("only %d requests ran: the load did not overlap the restarts", requests.Load())
	}
	introspect := &benchClient{addr: lbAddr}
	defer introspect.close()
	for w, token := range last {
		out, err := introspect.post(tenantPath(iss)+"/introspect", basicAuth, url.Values{"token": {token}}.Encode())
		if err != nil || !out.Active {
			t.Errorf("worker %d's last access token after the restarts: active %v, %v", w, out.Active, err)
		}
	}
	if len(last) < 4 {
		t.Errorf("only %d workers got a token", len(last))
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// loadConfig reads the store settings from env as the CLI would.
func loadConfig(t *testing.T, env []string) (config, error) {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	load := storeFlags(fs, func(k string) string { return m[k] })
	if err := fs.Parse(nil); err != nil {
		return config{}, err
	}
	return load()
}
