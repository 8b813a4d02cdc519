package templates

import (
	"strings"
	"testing"
)

func TestLoadAndRender(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Render("error", map[string]string{"Title": "Not found", "Message": "<script>x</script>", "RequestID": "r1"})
	if err != nil {
		t.Fatal(err)
	}
	page := string(out)
	if !strings.HasPrefix(page, "<!doctype html>") || !strings.Contains(page, "<h1>Not found</h1>") {
		t.Fatalf("page not rendered in the layout:\n%s", page)
	}
	if strings.Contains(page, "<script>x") {
		t.Fatal("message was not escaped")
	}
	if _, err := s.Render("nope", nil); err == nil {
		t.Fatal("unknown page rendered")
	}
	if _, err := s.Render("tenant", map[string]any{"Tenant": 42}); err == nil {
		t.Fatal("a render error was not reported")
	}
}
