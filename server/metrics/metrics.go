// Package metrics counts what the server does, for Prometheus to scrape.
//
// It uses the Prometheus Go client (github.com/prometheus/client_golang):
// the reference implementation of the text exposition format that every
// Prometheus-compatible scraper reads, with the Go runtime and process
// collectors built in, so smartauth writes neither the format nor those
// collectors itself. Its registry is created here and passed around, never
// the client's global one, so two servers in one process (as in tests) keep
// their numbers apart.
//
// A nil *Metrics is valid and records nothing, so a server built without
// metrics pays one nil check per event. The methods the server calls per
// request look up their series in maps of children resolved once, so a
// request allocates nothing for its metrics.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Unmatched is the route label of a request no route pattern matched: the
// method was not allowed for the path, or the path was redirected.
const Unmatched = "unmatched"

// Metrics holds the registry and the series the server records.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	gateway  *prometheus.CounterVec
	cache    *prometheus.CounterVec

	auditWrite    prometheus.Histogram
	auditFailures prometheus.Counter

	// routes maps a route pattern and status to its series. It is replaced,
	// never changed, so readers need no lock; mu serialises the writers.
	routes atomic.Pointer[map[routeKey]routeSeries]
	mu     sync.Mutex
	// labelled caches the children of the small vectors, keyed by their
	// label values joined, with the same copy-on-write scheme as routes.
	labelled atomic.Pointer[map[labelKey]prometheus.Counter]
}

type routeKey struct {
	pattern string
	status  int
}

type routeSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

type labelKey struct {
	vec  *prometheus.CounterVec
	a, b string
}

// New returns metrics with the Go runtime and process collectors registered.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smartauth_http_requests_total",
		Help: "HTTP requests answered, by route pattern of the route table and status code.",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "smartauth_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smartauth_tokens_issued_total",
		Help: "Access tokens issued at a token endpoint, by tenant and grant type.",
	}, []string{"tenant", "grant_type"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smartauth_refusals_total",
		Help: "Requests refused at the token endpoint and at sign-in, by endpoint and reason.",
	}, []string{"endpoint", "reason"})
	m.gateway = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smartauth_gateway_requests_total",
		Help: "FHIR gateway requests, by FHIR interaction and the gateway's decision.",
	}, []string{"interaction", "decision"})
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smartauth_cache_lookups_total",
		Help: "Lookups in the server's in-memory caches, by cache and result (hit or miss).",
	}, []string{"cache", "result"})
	m.auditWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "smartauth_audit_write_duration_seconds",
		Help:    "Time to store one batch of audit events in one transaction.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	m.auditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "smartauth_audit_write_failures_total",
		Help: "Batches of audit events the store failed to write.",
	})
	m.reg.MustRegister(m.requests, m.duration, m.tokens, m.refusals, m.gateway, m.cache, m.auditWrite, m.auditFailures,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	empty := map[routeKey]routeSeries{}
	m.routes.Store(&empty)
	labelled := map[labelKey]prometheus.Counter{}
	m.labelled.Store(&labelled)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: false})
}

// Registry is where the series live, for tests to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request records one answered request. pattern is the route table's
// pattern that matched, or "" for none; never a raw path, so the series
// stay as many as the routes.
func (m *Metrics) Request(pattern string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if pattern == "" {
		pattern = Unmatched
	}
	if status < 100 || status > 599 {
		status = 0
	}
	k := routeKey{pattern, status}
	rs, ok := (*m.routes.Load())[k]
	if !ok {
		rs = m.addRoute(k)
	}
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
}

func (m *Metrics) addRoute(k routeKey) routeSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.routes.Load()
	if rs, ok := old[k]; ok {
		return rs
	}
	rs := routeSeries{
		count:    m.requests.WithLabelValues(k.pattern, strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.pattern),
	}
	next := make(map[routeKey]routeSeries, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = rs
	m.routes.Store(&next)
	return rs
}

// counter returns vec's child for the label values a and b, resolved once.
func (m *Metrics) counter(vec *prometheus.CounterVec, a, b string) prometheus.Counter {
	k := labelKey{vec, a, b}
	if c, ok := (*m.labelled.Load())[k]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.labelled.Load()
	if c, ok := old[k]; ok {
		return c
	}
	c := vec.WithLabelValues(a, b)
	next := make(map[labelKey]prometheus.Counter, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = c
	m.labelled.Store(&next)
	return c
}

// TokenIssued counts a token issued to a client of tenant by grant. Tenant
// is a label here alone: tenants are few and their token counts are what
// an operator bills and plans by.
func (m *Metrics) TokenIssued(tenant, grant string) {
	if m == nil {
		return
	}
	m.counter(m.tokens, tenant, grant).Inc()
}

// Refused counts a refusal at endpoint ("token", "signin", "admin_signin")
// for reason, one of a fixed set such as "invalid_client" or "throttled".
func (m *Metrics) Refused(endpoint, reason string) {
	if m == nil {
		return
	}
	m.counter(m.refusals, endpoint, reason).Inc()
}

// GatewayRequest counts a FHIR gateway request by interaction (read,
// search-type, …, or "unknown") and decision ("allowed", "refused",
// "unauthenticated", "failed").
func (m *Metrics) GatewayRequest(interaction, decision string) {
	if m == nil {
		return
	}
	m.counter(m.gateway, interaction, decision).Inc()
}

// AuditWritten records one batch written by the audit writer, and whether
// it failed.
func (m *Metrics) AuditWritten(d time.Duration, failed bool) {
	if m == nil {
		return
	}
	m.auditWrite.Observe(d.Seconds())
	if failed {
		m.auditFailures.Inc()
	}
}

// AuditQueue registers depth, read at each scrape, as the number of audit
// events waiting to be written.
func (m *Metrics) AuditQueue(depth func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smartauth_audit_queue_depth",
		Help: "Audit events waiting to be written, across tenants.",
	}, func() float64 { return float64(depth()) }))
}

// Cache is the hit and miss counters of one named cache. A nil *Cache
// counts nothing.
type Cache struct {
	hits, misses prometheus.Counter
}

// Cache returns the counters of the cache called name.
func (m *Metrics) Cache(name string) *Cache {
	if m == nil {
		return nil
	}
	return &Cache{hits: m.cache.WithLabelValues(name, "hit"), misses: m.cache.WithLabelValues(name, "miss")}
}

// Lookup counts one lookup, a hit or a miss.
func (c *Cache) Lookup(hit bool) {
	switch {
	case c == nil:
	case hit:
		c.hits.Inc()
	default:
		c.misses.Inc()
	}
}
