package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/smartauth/smartauth/server"
	"github.com/smartauth/smartauth/server/metrics"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

// scrape reads the metrics at url as Prometheus does.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v", url, err)
	}
	return families
}

// sample is the value of the series of family whose labels include all of
// labels (a counter's value, a gauge's, or a histogram's count), and
// whether there is one.
func sample(families map[string]*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	f, ok := families[family]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New()
			srv := servertest.StartConfig(t, b.Open(t), func(c *server.Config) { c.Metrics = m })
			// The serve command puts the metrics on a listener of their own.
			scraper := httptest.NewServer(m.Handler())
			t.Cleanup(scraper.Close)
			srv.Tenant(t, "clinic")
			id, secret := backendClient(t, srv, "clinic", storage.ClientConfidentialSymmetric, nil)

			before := scrape(t, scraper.URL)
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
			if status, body := postForm(t, tokenEndpoint(srv, "clinic"), form, id, secret); status != http.StatusOK {
				t.Fatalf("token: %d %v", status, body)
			}
			if status, body := postForm(t, tokenEndpoint(srv, "clinic"), form, id, "wrong"); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Fatalf("token with a wrong secret: %d %v", status, body)
			}
			// The public listener knows nothing of /metrics.
			resp, err := http.Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("GET /metrics on the public listener: %d, want 404", resp.StatusCode)
			}
			// A method no route takes is counted under a fixed label, not its path.
			req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/healthz/some/path", nil)
			if resp, err = http.DefaultClient.Do(req); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			after := scrape(t, scraper.URL)

			const route = "POST /t/{tenant}/token"
			moved := []struct {
				family string
				labels map[string]string
			}{
				{"smartauth_http_requests_total", map[string]string{"route": route, "code": "200"}},
				{"smartauth_http_requests_total", map[string]string{"route": route, "code": "401"}},
				{"smartauth_http_requests_total", map[string]string{"route": "GET /", "code": "404"}},
				{"smartauth_http_request_duration_seconds", map[string]string{"route": route}},
				{"smartauth_tokens_issued_total", map[string]string{"tenant": "clinic", "grant_type": "client_credentials"}},
				{"smartauth_refusals_total", map[string]string{"endpoint": "token", "reason": "invalid_client"}},
				{"smartauth_audit_write_duration_seconds", nil},
				{"smartauth_cache_lookups_total", map[string]string{"cache": "clients"}},
			}
			for _, c := range moved {
				was, _ := sample(before, c.family, c.labels)
				now, ok := sample(after, c.family, c.labels)
				if !ok || now <= was {
					t.Errorf("%s%v = %v, was %v: want it to have moved", c.family, c.labels, now, was)
				}
			}
			if n, _ := sample(after, "smartauth_http_request_duration_seconds", map[string]string{"route": route}); n < 2 {
				t.Errorf("token latency observed %v times, want 2", n)
			}
			if _, ok := sample(after, "smartauth_http_requests_total", map[string]string{"route": metrics.Unmatched, "code": "405"}); !ok {
				t.Error("a request no pattern matched is not counted as unmatched")
			}
			for _, f := range after["smartauth_http_requests_total"].GetMetric() {
				for _, l := range f.GetLabel() {
					if l.GetName() == "route" && l.GetValue() == "/healthz/some/path" {
						t.Error("a raw path became a label")
					}
				}
			}
			for _, present := range []string{"smartauth_audit_queue_depth", "smartauth_db_connections", "go_goroutines", "process_start_time_seconds"} {
				if _, ok := after[present]; !ok {
					t.Errorf("no %s series", present)
				}
			}
		})
	}
}
