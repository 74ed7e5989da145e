package plugin_test

import (
	"context"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/acme"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/plugin"
)

// BenchmarkPluginKey measures one Key call through the plugin process
// (gRPC over a Unix socket with mutual TLS): what every plugin call costs
// on top of the adapter's own work.
func BenchmarkPluginKey(b *testing.B) {
	path, sum := examplePlugin(b)
	ecu := acmeCar(b, acmeOEM(path, sum, ""), "").ECUs[0]
	h := &plugin.Host{}
	defer h.Close()
	ad, err := h.New(ecu)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ad.Profile(ctx); err != nil {
		b.Fatal(err)
	}
	seed := make([]byte, acme.SeedLength)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := ad.Key(ctx, acme.SecurityLevel, seed); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/call")
}

// BenchmarkPluginStart measures starting a plugin process: checksum,
// exec, handshake, mutual TLS, first answer (its profile).
func BenchmarkPluginStart(b *testing.B) {
	path, sum := examplePlugin(b)
	ecu := acmeCar(b, acmeOEM(path, sum, ""), "").ECUs[0]
	var starting time.Duration
	for b.Loop() {
		start := time.Now()
		h := &plugin.Host{}
		ad, err := h.New(ecu)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ad.Profile(context.Background()); err != nil {
			b.Fatal(err)
		}
		starting += time.Since(start)
		h.Close()
	}
	b.ReportMetric(float64(starting.Microseconds())/1000/float64(b.N), "ms/start")
}
