package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Request("GET /healthz", 200, time.Millisecond)
	m.TokenIssued("clinic", "client_credentials")
	m.Refused("token", "invalid_client")
	m.GatewayRequest("read", "allowed")
	m.AuditWritten(time.Millisecond, false)
	m.AuditQueue(func() int { return 0 })
	m.DBPools(nil)
	m.Cache("tenants").Lookup(true)
}

func TestSeries(t *testing.T) {
	m := New()
	m.Request("POST /t/{tenant}/token", 200, time.Millisecond)
	m.Request("POST /t/{tenant}/token", 200, time.Millisecond)
	m.Request("", 405, time.Millisecond)
	m.Request("GET /", 999, time.Millisecond)
	m.TokenIssued("clinic", "client_credentials")
	m.Refused("signin", "throttled")
	c := m.Cache("tenants")
	c.Lookup(true)
	c.Lookup(true)
	c.Lookup(false)
	for _, tc := range []struct {
		got, want float64
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("POST /t/{tenant}/token", "200")), 2},
		{testutil.ToFloat64(m.requests.WithLabelValues(Unmatched, "405")), 1},
		{testutil.ToFloat64(m.requests.WithLabelValues("GET /", "0")), 1},
		{testutil.ToFloat64(m.tokens.WithLabelValues("clinic", "client_credentials")), 1},
		{testutil.ToFloat64(m.refusals.WithLabelValues("signin", "throttled")), 1},
		{testutil.ToFloat64(m.cache.WithLabelValues("tenants", "hit")), 2},
		{testutil.ToFloat64(m.cache.WithLabelValues("tenants", "miss")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Errorf("%d latency series, want one per route pattern (3)", n)
	}
}

// The per-request calls allocate nothing once a series exists.
func TestHotPathAllocatesNothing(t *testing.T) {
	m := New()
	m.Request("POST /t/{tenant}/token", 200, time.Millisecond)
	m.TokenIssued("clinic", "client_credentials")
	m.Refused("token", "invalid_client")
	c := m.Cache("clients")
	allocs := testing.AllocsPerRun(100, func() {
		m.Request("POST /t/{tenant}/token", 200, time.Millisecond)
		m.TokenIssued("clinic", "client_credentials")
		m.Refused("token", "invalid_client")
		c.Lookup(true)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request's metrics, want 0", allocs)
	}
}

func BenchmarkRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request("POST /t/{tenant}/token", 200, time.Millisecond)
		}
	})
}
