// Package fhirtest runs a real FHIR R4 server inside tests, as the upstream
// behind the SMART gateway. It is for tests only: no package of the server
// may import it.
//
// The server is medplum's FhirRouter (@medplum/fhir-router, with its
// in-memory repository) in a small Node.js program in testdata/fhirserver.
// medplum is a real, maintained FHIR R4 implementation, installable from
// npm, that runs in-process over an in-memory store: each test gets a
// fresh, isolated upstream that answers searches, includes and chained
// parameters the way a FHIR server does, without a database or a container.
// The program also records every request that reaches it, so a test can
// prove that the gateway kept a refused request away from the upstream and
// see which credentials it forwarded.
//
// What medplum's router serves: read, vread, search (GET and POST _search)
// with _include, _revinclude and chained parameters, create, update,
// JSON Patch, delete and instance history, and batch or transaction
// bundles posted to the base. What it does not: Patient/{id}/$everything,
// compartment searches such as Patient/{id}/Observation, type and system
// history (all 404), and /metadata, which it takes for a search of a
// resource type named "metadata" and answers with an empty searchset. The
// in-memory repository does not validate resources against their profiles.
package fhirtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv makes a missing Node.js or missing node_modules a failure
// instead of a skip; CI sets it.
const RequireEnv = "SMARTAUTH_REQUIRE_NODE"

// minNodeMajor is the oldest Node.js the server runs on. medplum 5 declares
// Node.js 22, but the server supplies the one global (WebSocket) that
// @medplum/core needs from it, and Debian's Node.js 20 runs it.
const minNodeMajor = 20

// startTimeout bounds the wait for the ready line; loading the FHIR
// definitions takes about a second.
const startTimeout = 30 * time.Second

// Server is a running FHIR server.
type Server struct {
	root   string // http://127.0.0.1:PORT
	base   string // root + "/fhir"
	client *http.Client
	stderr *tail
}

// Request is one request that reached the server, as it received it.
type Request struct {
	Method string
	// URL is the request target: the path and query.
	URL    string
	Header http.Header
}

// Start starts a FHIR server for the test and stops it when the test ends.
// Without Node.js or the server's node_modules it skips the test, or fails
// it when RequireEnv is 1.
func Start(t testing.TB) *Server {
	t.Helper()
	node, dir := prerequisites(t)

	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	// The server exits when its stdin closes: when Cleanup closes it, or
	// when this process dies without cleaning up.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("fhirtest: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("fhirtest: %v", err)
	}
	stderr := &tail{max: 8 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("fhirtest: start node: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			ready <- sc.Text()
		}
		close(ready)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(startTimeout):
		t.Fatalf("fhirtest: the FHIR server was not ready within %v; its stderr:\n%s", startTimeout, stderr)
	}
	base, ok := strings.CutPrefix(line, "listening ")
	if !ok || !strings.HasSuffix(base, "/fhir") {
		<-exited
		t.Fatalf("fhirtest: the FHIR server did not start (first line %q); its stderr:\n%s", line, stderr)
	}
	return &Server{
		root:   strings.TrimSuffix(base, "/fhir"),
		base:   base,
		client: &http.Client{Timeout: 10 * time.Second},
		stderr: stderr,
	}
}

// prerequisites finds node and the server's directory with its libraries
// installed, or skips the test (fails it under RequireEnv=1).
func prerequisites(t testing.TB) (node, dir string) {
	t.Helper()
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("fhirtest: %s (%s=1 requires the FHIR server)", msg, RequireEnv)
		}
		t.Skipf("fhirtest: %s; skipping the test that needs the FHIR server (set %s=1 to fail instead)", msg, RequireEnv)
	}
	root, err := repoRoot()
	if err != nil {
		unavailable("%v", err)
	}
	dir = filepath.Join(root, "testdata", "fhirserver")
	node, err = exec.LookPath("node")
	if err != nil {
		unavailable("node is not installed")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		unavailable("node --version: %v", err)
	}
	version := strings.TrimSpace(string(out))
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0])
	if major < minNodeMajor {
		unavailable("node %s is too old: the FHIR server needs Node.js %d or newer", version, minNodeMajor)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@medplum", "fhir-router", "package.json")); err != nil {
		unavailable("@medplum/fhir-router is not installed: run `npm ci --no-audit --no-fund` in testdata/fhirserver")
	}
	return node, dir
}

// repoRoot is the directory of go.mod above this source file.
func repoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the fhirtest source file")
	}
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s", file)
		}
	}
}

// BaseURL is the FHIR base, http://127.0.0.1:PORT/fhir, without a
// trailing slash.
func (s *Server) BaseURL() string { return s.base }

// Requests returns the requests that reached the server under /fhir (and
// any other path but /_requests) since it started or since ClearRequests,
// oldest first.
func (s *Server) Requests(t testing.TB) []Request {
	t.Helper()
	data := s.call(t, http.MethodGet, s.root+"/_requests", nil, http.StatusOK)
	var raw []struct {
		Method  string              `json:"method"`
		URL     string              `json:"url"`
		Headers map[string][]string `json:"headers"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("fhirtest: request log: %v", err)
	}
	reqs := make([]Request, len(raw))
	for i, r := range raw {
		h := make(http.Header, len(r.Headers))
		for k, v := range r.Headers {
			h[http.CanonicalHeaderKey(k)] = v
		}
		reqs[i] = Request{Method: r.Method, URL: r.URL, Header: h}
	}
	return reqs
}

// ClearRequests empties the request log.
func (s *Server) ClearRequests(t testing.TB) {
	t.Helper()
	s.call(t, http.MethodDelete, s.root+"/_requests", nil, http.StatusOK)
}

// call sends a request straight to the server and fails the test unless it
// answers with status want.
func (s *Server) call(t testing.TB, method, url string, body any, want int) []byte {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("fhirtest: %v", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatalf("fhirtest: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("fhirtest: %s %s: %v; server stderr:\n%s", method, url, err, s.stderr)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("fhirtest: %s %s: %v", method, url, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("fhirtest: %s %s: status %d, want %d: %.500s", method, url, resp.StatusCode, want, data)
	}
	return data
}

// tail keeps the last max bytes written to it, for failure messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
