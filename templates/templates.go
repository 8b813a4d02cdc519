// Package templates holds smartauth's HTML pages, embedded and parsed once
// at start-up so a broken template stops the server before it serves.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"strings"
)

//go:embed *.html
var files embed.FS

// adminPartials defines the blocks every admin page shares.
const adminPartials = "admin_partials.html"

// Set is every page, each parsed together with the shared layout.
type Set struct {
	pages map[string]*template.Template
}

// Load parses every page; it fails on the first broken template.
func Load() (*Set, error) {
	names, err := fs.Glob(files, "*.html")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	s := &Set{pages: map[string]*template.Template{}}
	for _, name := range names {
		if name == "layout.html" || name == adminPartials {
			continue
		}
		parts := []string{"layout.html", name}
		if strings.HasPrefix(name, "admin_") {
			// Admin pages share the admin navigation and form helpers.
			parts = []string{"layout.html", adminPartials, name}
		}
		t, err := template.New(name).ParseFS(files, parts...)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		s.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return s, nil
}

// Render executes a page into memory, so a failure never sends half a page.
func (s *Set) Render(page string, data any) ([]byte, error) {
	t, ok := s.pages[page]
	if !ok {
		return nil, fmt.Errorf("no template %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return nil, fmt.Errorf("render %s: %w", page, err)
	}
	return buf.Bytes(), nil
}
