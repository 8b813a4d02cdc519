// Package browsertest drives pages in a headless Chromium for Go tests.
//
// New starts a fresh browser for one test and returns a Tab on it. When no
// browser is installed the test is skipped, so a machine with only Go still
// passes go test ./...; with SMARTAUTH_REQUIRE_BROWSER=1 (set by CI) it fails
// instead, so a missing browser can never turn the browser tests into silent
// skips. SMARTAUTH_CHROMIUM names a browser other than Debian's chromium.
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
// the go test deadline minutes later.
const (
	// StartTimeout bounds starting the browser.
	StartTimeout = 30 * time.Second
	// StepTimeout is the default limit of one call of Do, Text and the like.
	StepTimeout = 15 * time.Second
	// closeTimeout bounds closing the browser at the end of the test.
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

// New starts a headless Chromium with a fresh profile for the test and
// returns its tab; the browser closes and its profile is removed when the
// test ends. Without a browser the test is skipped, or fails when
// SMARTAUTH_REQUIRE_BROWSER=1.
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
	profile, err := os.MkdirTemp("", "smartauth-chromium-")
	if err != nil {
		t.Fatalf("browser profile folder: %v", err)
	}
	output := &syncBuffer{}
	// The allocator does not inherit the test's context: the browser must
	// outlive every step's deadline and stop only at cleanup.
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
	tab := &Tab{t: t, ctx: ctx, Timeout: StepTimeout}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, closeTimeout)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing the browser: %v", err)
		}
		cancelTab()
		cancelAlloc()
		if err := os.RemoveAll(profile); err != nil {
			t.Logf("removing the browser profile: %v", err)
		}
	})

	// The first action starts the browser and binds its life to ctx, so it
	// runs on ctx itself; a timer bounds it instead of a deadline.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(StartTimeout):
		cancelTab()
		err = fmt.Errorf("no answer within %s", StartTimeout)
	}
	if err != nil {
		t.Fatalf("start %s: %v\nbrowser output:\n%s", path, err, output.String())
	}

	messages := chromedp.Console(ctx)
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
