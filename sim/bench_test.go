package sim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// benchECU is an ECU spec with two 1 MiB slots, a 512 KiB image in slot
// A, on its own untimed mem bus.
func benchECU(b *testing.B) (vehicle.ECU, string) {
	b.Helper()
	url := fmt.Sprintf("mem://sim-bench-ecu-%d", busSeq.Add(1))
	doc := fmt.Sprintf(`
name: bench-car
buses: [{name: b, url: "%s"}]
ecus:
  - name: ecu
    bus: b
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: %s
    flash: {slotSize: 1048576, sectorSize: 4096, slotA: 0x0, slotB: 0x100000}
    simulation: {slots: {a: {file: %s}}, bootTime: 1ms}
`, url, testHW, imageFile(b, testImage(b, "1.0.0", 1, 512<<10)))
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	return v.ECUs[0], url
}

// BenchmarkECUs runs many ECUs with two 1 MiB slots in one process and
// reports the heap each takes while serving, and the UDS requests per
// second (ReadDataByIdentifier F189 over ISO-TP, untimed mem buses) that
// all of them together answer with one tester each.
func BenchmarkECUs(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("ecus=%d", n), func(b *testing.B) {
			specs := make([]vehicle.ECU, n)
			urls := make([]string, n)
			for i := range specs {
				specs[i], urls[i] = benchECU(b)
			}
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			clients := make([]*uds.Client, n)
			var closers []func() error
			for i, spec := range specs {
				bs, err := canbus.Open(urls[i], canbus.Config{})
				if err != nil {
					b.Fatal(err)
				}
				e, err := NewECU(spec, bs, nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() { _ = e.Run(ctx) })
				tb, err := canbus.Open(urls[i], canbus.Config{})
				if err != nil {
					b.Fatal(err)
				}
				tester, _ := spec.Addresses()
				conn, err := isotp.Dial(tb, tester, isotp.Options{})
				if err != nil {
					b.Fatal(err)
				}
				clients[i] = uds.NewClient(conn, uds.ClientOptions{})
				closers = append(closers, conn.Close, tb.Close, bs.Close)
			}
			time.Sleep(50 * time.Millisecond) // boots
			for _, c := range clients {
				for {
					if _, err := c.ReadDataByIdentifier(ctx, uds.DIDECUSoftwareVersionNumber); err == nil {
						break
					}
				}
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			heap := float64(after.HeapAlloc-before.HeapAlloc) / float64(n) / (1 << 20)
			b.ResetTimer()
			start := time.Now()
			var rw sync.WaitGroup
			var timeouts atomic.Int64
			per := max(b.N/n, 1)
			for _, c := range clients {
				rw.Go(func() {
					for range per {
						_, err := c.ReadDataByIdentifier(ctx, uds.DIDECUSoftwareVersionNumber)
						var te *uds.TimeoutError
						switch {
						case errors.As(err, &te):
							// Real time on a loaded machine: a stall
							// past P2 now and then; counted, not fatal.
							timeouts.Add(1)
						case err != nil:
							b.Error(err)
							return
						}
					}
				})
			}
			rw.Wait()
			b.ReportMetric(float64(per*n)/time.Since(start).Seconds(), "requests/s")
			b.ReportMetric(float64(timeouts.Load()), "timeouts")
			b.ReportMetric(heap, "MiB/ecu")
			b.StopTimer()
			cancel()
			wg.Wait()
			for _, f := range closers {
				_ = f()
			}
		})
	}
}
