package browsertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func TestFindHonoursEnvironment(t *testing.T) {
	t.Setenv(EnvChromium, "/nonexistent/chromium")
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), EnvChromium) {
		t.Fatalf("a missing %s binary: got %v, want an error naming the variable", EnvChromium, err)
	}
	t.Setenv(EnvChromium, "sh")
	if path, err := Find(); err != nil || !strings.HasSuffix(path, "/sh") {
		t.Fatalf("%s=sh: got %q, %v", EnvChromium, path, err)
	}
}

// TestMissingBrowser checks that a machine without a browser skips browser
// tests, unless they are required, and that a wrongly named browser fails.
func TestMissingBrowser(t *testing.T) {
	none := func(string) (string, error) { return "", errors.New("not found") }
	noBrowser := func() (string, error) { return find(none) }
	for _, c := range []struct {
		name, chromium, require string
		want                    string
	}{
		{"skipped", "", "", "skip"},
		{"required", "", "1", "fatal"},
		{"wrongly named", "/nonexistent/chromium", "", "fatal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvChromium, c.chromium)
			t.Setenv(EnvRequire, c.require)
			fake := &fakeTB{TB: t, failed: make(chan string, 1), skipped: make(chan string, 1)}
			go func() {
				start(fake, noBrowser)
				fake.failed <- "no failure"
			}()
			var got, msg string
			select {
			case msg = <-fake.failed:
				got = "fatal"
			case msg = <-fake.skipped:
				got = "skip"
			}
			if got != c.want || msg == "no failure" {
				t.Fatalf("got %s (%s), want %s", got, msg, c.want)
			}
			if c.chromium == "" && !strings.Contains(msg, "apt-get install chromium") {
				t.Errorf("the message does not say how to get a browser: %s", msg)
			}
		})
	}
}

// testPage serves a page whose script writes into it, logs an error and is
// refused one inline script by its Content Security Policy.
func testPage(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'")
		fmt.Fprint(w, `<!doctype html><title>t</title><p id="static">Hello</p><p id="late" hidden></p>`+
			`<a id="next" href="/next">next</a><script>document.title = "inline ran"</script><script src="/app.js"></script>`)
	})
	mux.HandleFunc("GET /next", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/gone", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /gone", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGone)
		fmt.Fprint(w, `<!doctype html><title>Gone</title><p>Gone</p>`)
	})
	mux.HandleFunc("GET /app.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `setTimeout(() => { const p = document.getElementById("late"); p.textContent = "Later"; p.hidden = false; `+
			`console.error("something broke"); }, 200);`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

func TestTab(t *testing.T) {
	t.Parallel()
	url := testPage(t)
	tab := New(t)
	tab.Navigate(url)
	if got := tab.Text("#static"); got != "Hello" {
		t.Errorf("Text(#static) = %q", got)
	}
	// Text waits for an element that appears later.
	if got := tab.Text("#late"); got != "Later" {
		t.Errorf("Text(#late) = %q", got)
	}
	tab.WaitFor(`document.getElementById("late").textContent === "Later"`)
	if got := tab.PageText(); !strings.Contains(got, "Hello") || !strings.Contains(got, "Later") {
		t.Errorf("PageText = %q", got)
	}
	if got := tab.Location(); got != url {
		t.Errorf("Location = %q, want %q", got, url)
	}
	var title string
	tab.Do(chromedp.Func(func(ctx context.Context, target *chromedp.Target) error {
		var err error
		title, err = chromedp.Title()(ctx, target)
		return err
	}))
	if title == "inline ran" {
		t.Error("the inline script ran despite the CSP")
	}
	// Messages arrive asynchronously; give them a moment.
	deadline := time.Now().Add(5 * time.Second)
	var errs []string
	for time.Now().Before(deadline) {
		errs = tab.ConsoleErrors()
		if len(errs) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.ContainsFunc(errs, func(s string) bool { return strings.Contains(s, "something broke") }) {
		t.Errorf("console errors lack the script's console.error: %q", errs)
	}
	if !slices.ContainsFunc(errs, func(s string) bool { return strings.Contains(s, "Content Security Policy") }) {
		t.Errorf("console errors lack the CSP refusal: %q", errs)
	}

	// Navigating follows the redirect and reports the final page's status.
	if status := tab.Navigating(chromedp.Click(chromedp.CSS("#next"))); status != http.StatusGone {
		t.Errorf("Navigating: status %d, want 410", status)
	}
	if got := Eval[string](tab, `document.title`); got != "Gone" {
		t.Errorf("Eval(document.title) = %q after navigating", got)
	}
	if got := Eval[int](tab, `6 * 7`); got != 42 {
		t.Errorf("Eval(6 * 7) = %d", got)
	}
}

// fakeTB records a failure or a skip instead of ending the real test.
type fakeTB struct {
	testing.TB
	failed  chan string
	skipped chan string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.failed <- fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

func TestStuckStepFailsFast(t *testing.T) {
	t.Parallel()
	url := testPage(t)
	tab := New(t)
	tab.Navigate(url)
	fake := &fakeTB{TB: t, failed: make(chan string, 1)}
	tab.t = fake
	tab.Timeout = time.Second
	start := time.Now()
	go func() {
		tab.Text("#never")
		fake.failed <- ""
	}()
	msg := <-fake.failed
	if msg == "" {
		t.Fatal("waiting for a missing element did not fail")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a stuck step failed after %s, want about its 1s timeout", d)
	}
	for _, want := range []string{"#never", "page: " + url, "Hello", "something broke"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, msg)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestTabsShareOneBrowserButNoState checks that under Main two tests' tabs
// run in one browser process, and that a cookie one sets is not seen by
// the other, as two private windows would be.
func TestTabsShareOneBrowserButNoState(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /set", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "who", Value: "first", Path: "/"})
		fmt.Fprint(w, `<!doctype html><title>set</title><p id="out">set</p>`)
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("who")
		v := "none"
		if err == nil {
			v = c.Value
		}
		fmt.Fprintf(w, `<!doctype html><title>get</title><p id="out">%s</p>`, v)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var first, second *Tab
	t.Run("first", func(t *testing.T) {
		first = New(t)
		first.Navigate(srv.URL + "/set")
		first.Navigate(srv.URL + "/get")
		if got := first.Text("#out"); got != "first" {
			t.Errorf("the tab that set the cookie reads %q", got)
		}
		t.Run("second", func(t *testing.T) {
			second = New(t)
			second.Navigate(srv.URL + "/get")
			if got := second.Text("#out"); got != "none" {
				t.Errorf("another test's tab reads the cookie: %q", got)
			}
			if a, b := chromedp.FromContext(first.ctx), chromedp.FromContext(second.ctx); a.Browser != b.Browser {
				t.Error("the two tabs run in two browsers, want one shared browser")
			}
		})
	})
}
