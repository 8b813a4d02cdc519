// Package web serves smartauth's static assets (CSS, scripts, images) and
// the demo SMART app, embedded in the binary so no CDN or external host is
// ever needed.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

//go:embed demo-app
var demoApp embed.FS

// Handler serves the assets under prefix with strong ETags and a cache
// lifetime; embedded files have no modification time, so the ETag is a digest.
func Handler(prefix string) http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the folder exists
	}
	etags := map[string]string{}
	_ = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+path] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	files := http.FileServerFS(static)
	return http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		etag, ok := etags[r.URL.Path]
		if !ok {
			// No directory listings, no guessing: only the files we ship.
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
}

// DemoApp serves the demo SMART app mounted at prefix: its page at prefix
// itself, never cached because the app's address carries authorization
// codes, and its script and styles beside it, revalidated by ETag on every
// use so a new version takes effect at once.
func DemoApp(prefix string) http.Handler {
	type asset struct {
		body []byte
		etag string
	}
	assets := map[string]asset{}
	_ = fs.WalkDir(demoApp, "demo-app", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demoApp, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		assets[strings.TrimPrefix(name, "demo-app")] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if name == "/" {
			page := assets["/index.html"]
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(page.body)
			return
		}
		a, ok := assets[name]
		if !ok || name == "/index.html" {
			// The page has one address; no listings, no other files.
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", a.etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(a.body))
	}))
}
