// Package browsertest drives pages in a headless Chromium for Go tests.
//
// New returns a Tab for one test. In a package whose TestMain calls Main,
// every test's tab lives in its own browser context (cookies, storage and
// cache of its own, like a private window) of one browser that the package
// starts once; elsewhere each test starts a browser of its own. Starting
// Chromium is the slow, load-sensitive step, so sharing it keeps a busy
// machine from failing tests at start-up.
//
// When no browser is installed the test is skipped, so a machine with only
// Go still passes go test ./...; with SMARTAUTH_REQUIRE_BROWSER=1 (set by CI)
// it fails instead, so a missing browser can never turn the browser tests
// into silent skips. SMARTAUTH_CHROMIUM names a browser other than Debian's
// chromium.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Environment variables that choose and require the browser.
const (
	// EnvChromium names the browser binary to run instead of Debian's chromium.
	EnvChromium = "SMARTAUTH_CHROMIUM"
	// EnvRequire set to 1 turns a missing browser into a test failure.
	EnvRequire = "SMARTAUTH_REQUIRE_BROWSER"
)

// debianChromium is where Debian's chromium package installs its launcher.
const debianChromium = "/usr/bin/chromium"

// Time limits. A page that hangs fails its test within StepTimeout, not at
// the go test deadline minutes later. They are sized for a two-core machine
// that is also compiling and running other packages' tests: there a cold
// Chromium has been seen to need more than 30 s to answer.
const (
	// StartTimeout bounds one attempt to start the browser; a failed
	// attempt is tried once more.
	StartTimeout = 90 * time.Second
	// StepTimeout is the default limit of one call of Do, Text and the like,
	// and of opening a test's tab on a running browser.
	StepTimeout = 30 * time.Second
	// closeTimeout bounds closing a tab or the browser.
	closeTimeout = 10 * time.Second
)

// errNoBrowser means no browser is installed where Find looks.
var errNoBrowser = errors.New("no Chromium found: install Debian's chromium package (apt-get install chromium) or set " + EnvChromium)

// Find returns the path of the browser to run: SMARTAUTH_CHROMIUM when set,
// else chromium on PATH, else Debian's /usr/bin/chromium.
func Find() (string, error) {
	return find(exec.LookPath)
}

// find is Find with the lookup of programs given, so tests can pretend
// that no browser is installed.
func find(lookPath func(string) (string, error)) (string, error) {
	if name := os.Getenv(EnvChromium); name != "" {
		path, err := lookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s=%q is not a runnable browser: %w", EnvChromium, name, err)
		}
		return path, nil
	}
	for _, name := range []string{"chromium", debianChromium} {
		if path, err := lookPath(name); err == nil {
			return path, nil
		}
	}
	return "", errNoBrowser
}

// Tab is one page in a browser that belongs to one test.
type Tab struct {
	t   testing.TB
	ctx context.Context
	// Timeout limits each call of Do and of the helpers; StepTimeout by default.
	Timeout time.Duration

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// New returns a tab for the test: in its own browser context of the
// package's shared browser when TestMain runs Main, else on a browser of its
// own. The tab closes when the test ends. Without a browser the test is
// skipped, or fails when SMARTAUTH_REQUIRE_BROWSER=1.
func New(t testing.TB) *Tab {
	t.Helper()
	return start(t, Find)
}

// start is New with the search for the browser given.
func start(t testing.TB, findBrowser func() (string, error)) *Tab {
	t.Helper()
	path, err := findBrowser()
	switch {
	case err == nil:
	case !errors.Is(err, errNoBrowser):
		// A browser named explicitly but missing is a mistake to report,
		// not a reason to skip.
		t.Fatalf("browser test: %v", err)
	case os.Getenv(EnvRequire) == "1":
		t.Fatalf("browser test: %v (%s=1 requires a browser)", err, EnvRequire)
	default:
		t.Skipf("browser test skipped: %v; set %s=1 to make this a failure", err, EnvRequire)
	}

	var parent context.Context
	if pool := currentShared(); pool != nil {
		b, err := pool.get(path)
		if err != nil {
			t.Fatalf("%v", err)
		}
		// A new browser context per test: nothing a test leaves in cookies,
		// storage or the cache reaches the next.
		ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
		parent = ctx
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(ctx, closeTimeout)
			defer ccancel()
			if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Logf("closing the tab: %v", err)
			}
			cancel()
		})
		// Opening the tab creates its browser context and target.
		if err := withTimeout(ctx, StepTimeout, func() error { return chromedp.Do(ctx) }); err != nil {
			t.Fatalf("open a tab on %s: %v\nbrowser output:\n%s", path, err, b.output.String())
		}
	} else {
		b, err := launch(path)
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Cleanup(b.close(t.Logf))
		parent = b.ctx
	}
	tab := &Tab{t: t, ctx: parent, Timeout: StepTimeout}
	messages := chromedp.Console(parent)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tab.mu.Lock()
			tab.console = append(tab.console, m)
			tab.mu.Unlock()
		}
	}()
	return tab
}

// browser is one running Chromium with a profile folder of its own.
type browser struct {
	path    string
	profile string
	output  *syncBuffer
	// ctx is the browser's first tab; its end closes the browser.
	ctx    context.Context
	cancel func()
}

// launch starts a headless Chromium, trying once more if the first attempt
// gets no answer within StartTimeout: on a loaded machine the first cold
// start is the one most likely to be slow.
func launch(path string) (*browser, error) {
	var errs []error
	for range 2 {
		b, err := launchOnce(path)
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func launchOnce(path string) (*browser, error) {
	profile, err := os.MkdirTemp("", "smartauth-chromium-")
	if err != nil {
		return nil, fmt.Errorf("browser profile folder: %w", err)
	}
	output := &syncBuffer{}
	// The allocator does not inherit a test's context: the browser must
	// outlive every step's deadline and stop only when closed.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.CombinedOutput(output),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{path: path, profile: profile, output: output, ctx: ctx, cancel: func() { cancelTab(); cancelAlloc() }}
	// The first action starts the browser and binds its life to ctx, so it
	// runs on ctx itself; a timer bounds it instead of a deadline.
	if err := withTimeout(ctx, StartTimeout, func() error { return chromedp.Do(ctx) }); err != nil {
		b.close(func(string, ...any) {})()
		return nil, fmt.Errorf("start %s: %w\nbrowser output:\n%s", path, err, output.String())
	}
	return b, nil
}

// close returns a function that closes the browser and removes its profile,
// reporting trouble through logf.
func (b *browser) close(logf func(string, ...any)) func() {
	return func() {
		cctx, cancel := context.WithTimeout(b.ctx, closeTimeout)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			logf("closing the browser: %v", err)
		}
		b.cancel()
		if err := os.RemoveAll(b.profile); err != nil {
			logf("removing the browser profile: %v", err)
		}
	}
}

// alive reports whether the browser is still running.
func (b *browser) alive() bool { return b.ctx.Err() == nil }

// withTimeout runs f, which must run on ctx itself (chromedp binds a
// browser's or tab's life to the context of its first action), and gives up
// after d, cancelling nothing: the caller closes what it started.
func withTimeout(ctx context.Context, d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("no answer within %s", d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sharedBrowser is the one browser of a package whose TestMain runs Main,
// started by the first test that needs it and started again if it dies.
type sharedBrowser struct {
	mu sync.Mutex
	b  *browser
}

func (p *sharedBrowser) get(path string) (*browser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b != nil && p.b.alive() && p.b.path == path {
		return p.b, nil
	}
	if p.b != nil {
		p.b.close(func(string, ...any) {})()
		p.b = nil
	}
	b, err := launch(path)
	if err != nil {
		return nil, err
	}
	p.b = b
	return b, nil
}

func (p *sharedBrowser) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.b != nil {
		p.b.close(func(format string, args ...any) { fmt.Fprintf(os.Stderr, "browsertest: "+format+"\n", args...) })()
		p.b = nil
	}
}

// shared is set only while Main runs a package's tests. It is the one
// package-level variable here: a test binary is one package, and TestMain
// is the only place that sees all of its tests begin and end.
var (
	sharedMu sync.Mutex
	shared   *sharedBrowser
)

func currentShared() *sharedBrowser {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	return shared
}

// Main runs a package's tests with one shared browser, closed when they
// end; call it from TestMain as os.Exit(browsertest.Main(m)).
func Main(m *testing.M) int {
	pool := &sharedBrowser{}
	sharedMu.Lock()
	shared = pool
	sharedMu.Unlock()
	defer func() {
		sharedMu.Lock()
		shared = nil
		sharedMu.Unlock()
		pool.close()
	}()
	return m.Run()
}

// Context is the tab's chromedp context, for actions the helpers lack. Give
// it a deadline (context.WithTimeout) before running anything on it.
func (tab *Tab) Context() context.Context { return tab.ctx }

// Do runs the actions in order within the tab's Timeout, and fails the test
// with the page's address, text and console when one fails.
func (tab *Tab) Do(actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	if err := tab.run(chromedp.Steps(actions...)); err != nil {
		tab.fail("browser step failed: %v", err)
	}
}

// Navigate opens the URL and waits for the page to load.
func (tab *Tab) Navigate(url string) {
	tab.t.Helper()
	tab.Do(chromedp.Navigate(url))
}

// Navigating runs actions that make the page navigate, such as a click on
// a form's button, waits until the page they lead to has loaded (after any
// redirects) and returns its HTTP status.
func (tab *Tab) Navigating(actions ...chromedp.Action[chromedp.Void]) int64 {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, tab.Timeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		tab.fail("browser step that navigates: %v", err)
	}
	if resp == nil {
		return 0
	}
	return resp.Status
}

// Eval evaluates a JavaScript expression on the tab's current page and
// decodes its value, which must survive JSON, into T.
func Eval[T any](tab *Tab, expression string) T {
	tab.t.Helper()
	v, err := value(tab, chromedp.Evaluate[T](expression))
	if err != nil {
		tab.fail("evaluate %s: %v", expression, err)
	}
	return v
}

// EvalPromise evaluates an expression whose value is a promise, such as a
// fetch, and returns what it resolves to. A page that is still settling
// after a navigation may replace its JavaScript context under an
// evaluation; that is retried in the new one, so expression must be safe
// to run again.
func EvalPromise[T any](tab *Tab, expression string) T {
	tab.t.Helper()
	var err error
	for range 3 {
		var v T
		if v, err = value(tab, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise)); err == nil {
			return v
		}
		if !contextReplaced(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	tab.fail("evaluate %s: %v", expression, err)
	var zero T
	return zero
}

// contextReplaced reports whether an evaluation failed because the page's
// JavaScript context went away, as it does when the page navigates.
func contextReplaced(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot find context with specified id") || strings.Contains(msg, "Execution context was destroyed")
}

// Text waits until the element the CSS selector matches is visible and
// returns its text as rendered.
func (tab *Tab) Text(selector string) string {
	tab.t.Helper()
	var text string
	err := tab.run(chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		if _, err := chromedp.WaitVisible(chromedp.CSS(selector))(ctx, target); err != nil {
			return err
		}
		var err error
		text, err = chromedp.Text(chromedp.CSS(selector))(ctx, target)
		return err
	}))
	if err != nil {
		tab.fail("text of %s: %v", selector, err)
	}
	return text
}

// WaitFor waits until the JavaScript expression is truthy on the current page.
func (tab *Tab) WaitFor(expression string) {
	tab.t.Helper()
	err := tab.run(chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		_, err := chromedp.Poll[chromedp.Void](expression, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0))(ctx, target)
		return err
	}))
	if err != nil {
		tab.fail("waiting for %s: %v", expression, err)
	}
}

// Location is the address of the current page.
func (tab *Tab) Location() string {
	tab.t.Helper()
	loc, err := value(tab, chromedp.Location())
	if err != nil {
		tab.fail("location: %v", err)
	}
	return loc
}

// PageText is the text of the whole page as rendered.
func (tab *Tab) PageText() string {
	tab.t.Helper()
	text, err := value(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		tab.fail("page text: %v", err)
	}
	return text
}

// Console returns every console message, uncaught exception and browser log
// entry the tab has seen so far, one per line.
func (tab *Tab) Console() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	out := make([]string, 0, len(tab.console))
	for _, m := range tab.console {
		out = append(out, describe(m))
	}
	return out
}

// describe is a console message with where it came from, which for a failed
// request is the only place its address appears.
func describe(m chromedp.ConsoleMessage) string {
	if m.URL == "" {
		return m.String()
	}
	return m.String() + " (" + m.URL + ")"
}

// ConsoleErrors returns the errors among the console messages: console.error
// calls, uncaught exceptions and browser log errors, such as a Content
// Security Policy refusing a script or a failed request. A missing
// /favicon.ico is left out: the browser asks for it by itself, whatever
// the page says.
func (tab *Tab) ConsoleErrors() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	var out []string
	for _, m := range tab.console {
		if m.Source == "network" && strings.HasSuffix(m.URL, "/favicon.ico") {
			continue
		}
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, describe(m))
		}
	}
	return out
}

// run runs one action within the tab's Timeout.
func (tab *Tab) run(a chromedp.Action[chromedp.Void]) error {
	_, err := value(tab, a)
	return err
}

// value runs one action that returns a value within the tab's Timeout.
func value[T any](tab *Tab, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, tab.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no result within %s: %w", tab.Timeout, err)
	}
	return v, err
}

// fail ends the test with what the page showed, to make the failure readable.
func (tab *Tab) fail(format string, args ...any) {
	tab.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, format, args...)
	ctx, cancel := context.WithTimeout(tab.ctx, 3*time.Second)
	defer cancel()
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		fmt.Fprintf(&b, "\npage: %s", loc)
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`)); err == nil {
		fmt.Fprintf(&b, "\npage text:\n%s", truncate(text, 4000))
	}
	if msgs := tab.Console(); len(msgs) > 0 {
		fmt.Fprintf(&b, "\nconsole:\n%s", strings.Join(msgs, "\n"))
	}
	tab.t.Fatal(b.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// syncBuffer collects the browser's output, written from another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
