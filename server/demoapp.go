package server

import (
	"net/http"

	"github.com/smartauth/smartauth/web"
)

// demoApp serves the demo SMART app (web/demo-app), a public client that
// runs in the browser. Its page gets the same strict policy as ours: its own
// script and styles only, and requests (discovery, token) to this origin only.
func (s *Server) demoApp() http.Handler {
	app := web.DemoApp("/demo-app/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", pageCSP)
		app.ServeHTTP(w, r)
	})
}
