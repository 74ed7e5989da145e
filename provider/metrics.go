package provider

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
)

// metrics are the provider's Prometheus metrics, served by the kubelet
// API at /metrics. Every series is per ECU.
type metrics struct {
	registry  *prometheus.Registry
	flashes   *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	rollbacks *prometheus.CounterVec
	nrcs      *prometheus.CounterVec
	polls     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		flashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecu_kubelet_flashes_total", Help: "Flash jobs that ended, by ECU and outcome (done, rolled-back, refused, failed).",
		}, []string{"ecu", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecu_kubelet_flash_bytes_total", Help: "Bytes sent to ECUs by flash jobs (images or deltas), by ECU.",
		}, []string{"ecu"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ecu_kubelet_flash_duration_seconds", Help: "Duration of flash jobs, from the plan to the outcome, by ECU and outcome.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600},
		}, []string{"ecu", "outcome"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecu_kubelet_rollbacks_total", Help: "Flash jobs whose new image did not confirm, so that the previous one runs again, by ECU.",
		}, []string{"ecu"}),
		nrcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecu_kubelet_negative_responses_total", Help: "UDS negative responses during flash jobs, by ECU and NRC name.",
		}, []string{"ecu", "nrc"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecu_kubelet_ecu_polls_total", Help: "Health polls the ECU answered, by ECU.",
		}, []string{"ecu"}),
	}
	m.registry.MustRegister(m.flashes, m.bytes, m.duration, m.rollbacks, m.nrcs, m.polls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) flashed(ecu string, res flash.Result, d time.Duration) {
	outcome := res.Outcome.String()
	m.flashes.WithLabelValues(ecu, outcome).Inc()
	m.duration.WithLabelValues(ecu, outcome).Observe(d.Seconds())
	if res.Outcome == flash.Done || res.Outcome == flash.RolledBack {
		if !res.Plan.NoOp {
			m.bytes.WithLabelValues(ecu).Add(float64(res.Plan.Size))
		}
	}
	if res.Outcome == flash.RolledBack {
		m.rollbacks.WithLabelValues(ecu).Inc()
	}
}

func (m *metrics) nrc(ecu, name string) { m.nrcs.WithLabelValues(ecu, name).Inc() }

func (m *metrics) polled(ecu string) { m.polls.WithLabelValues(ecu).Inc() }
