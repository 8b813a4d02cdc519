package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/smartauth/smartauth/storage"
)

// DBPools registers stats, called at each scrape, as the use of the
// store's connection pools (storage.PoolReporter).
func (m *Metrics) DBPools(stats func() []storage.PoolStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&poolCollector{stats: stats})
}

var (
	poolConns = prometheus.NewDesc("smartauth_db_connections",
		"Database connections, by pool and state (acquired, idle, open).", []string{"pool", "state"}, nil)
	poolMax = prometheus.NewDesc("smartauth_db_connections_max",
		"The most connections a pool opens.", []string{"pool"}, nil)
	poolWaits = prometheus.NewDesc("smartauth_db_connection_waits_total",
		"Acquisitions that waited for a connection because none was idle.", []string{"pool"}, nil)
	poolWaitSeconds = prometheus.NewDesc("smartauth_db_connection_wait_seconds_total",
		"Time spent waiting for a connection because none was idle.", []string{"pool"}, nil)
)

// poolCollector reads the pools' statistics when scraped, so a request
// costs nothing for them.
type poolCollector struct {
	stats func() []storage.PoolStats
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolMax
	ch <- poolWaits
	ch <- poolWaitSeconds
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.stats() {
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.Acquired), p.Name, "acquired")
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.Idle), p.Name, "idle")
		ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(p.Open), p.Name, "open")
		ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(p.Max), p.Name)
		ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(p.Waits), p.Name)
		ch <- prometheus.MustNewConstMetric(poolWaitSeconds, prometheus.CounterValue, p.WaitTime.Seconds(), p.Name)
	}
}
