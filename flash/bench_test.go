package flash

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// BenchmarkFlash1MiB flashes a 1 MiB image at 500 kbit/s classic CAN and
// on CAN FD at 500 kbit/s / 2 Mbit/s (TX_DL 64 with bit rate switch), in
// real time (benchmarks cannot run in a synctest bubble), as the full
// image and as a delta, and reports the share of the transfer phase
// (RequestDownload to the end of RequestTransferExit) the bus was busy
// with frames: the sum of their FrameTime over the phase's duration. The
// simulated ECU programs each block before answering (writeTimePerKiB
// 0.1ms), which is part of the phase.
func BenchmarkFlash1MiB(b *testing.B) {
	const payload = 1 << 20
	base, err := sim.SyntheticImage(image.Header{Version: "1.0.0", HardwareID: testHW, ReleaseCounter: 1}, payload)
	if err != nil {
		b.Fatal(err)
	}
	next := nextImage(b, base, "2.0.0", 2)
	for _, bc := range []struct{ name, bus, txDL string }{
		{"classic-500k", "bitrate: 500000", ""},
		{"fd-500k-2M", "bitrate: 500000, dataBitrate: 2000000, fd: true", "txDL: 64"},
	} {
		for _, mode := range []string{"full", "delta"} {
			b.Run(bc.name+"/"+mode, func(b *testing.B) { benchFlash(b, bc.bus, bc.txDL, mode, base, next) })
		}
	}
}

// benchFlash flashes next onto an ECU running base, on a bus described by
// busDoc, as mode (full or delta).
func benchFlash(b *testing.B, busDoc, txDL, mode string, base, next []byte) {
	const payload = 1 << 20
	fw := firmware(b, next)
	if mode == "delta" {
		fw = firmware(b, next, base)
	}
	var busy, phase time.Duration
	var sent int64
	for b.Loop() {
		url := fmt.Sprintf("mem://flash-bench-%d", busSeq.Add(1))
		doc := fmt.Sprintf(`
name: bench-car
buses: [{name: body, url: %q, %s}]
ecus:
  - name: brake
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: %s
    flash: {slotSize: 0x120000, sectorSize: 4096, eraseTimePerSector: 1ms, writeTimePerKiB: 100us, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: %d}}
      bootTime: 20ms
      %s
`, url, busDoc, testHW, payload, txDL)
		v, err := vehicle.Parse([]byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		cfg := v.Buses[0].Config()
		ebus, _ := canbus.Open(url, cfg)
		tbus, _ := canbus.Open(url, cfg)
		mon, _ := canbus.Open(url, cfg)
		e, err := sim.NewECU(v.ECUs[0], ebus, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { e.Run(ctx) })
		for e.Status().State != sim.StateRunning {
			time.Sleep(time.Millisecond)
		}
		// The monitor stamps each frame as it arrives; the phase
		// boundaries come from the engine's events.
		type stamped struct {
			at time.Time
			d  time.Duration
		}
		var frames []stamped
		sub := mon.Subscribe()
		wg.Go(func() {
			for f := range sub.Frames() {
				frames = append(frames, stamped{time.Now(), cfg.FrameTime(&f)})
			}
		})
		events := make(chan Event)
		var start, end time.Time
		wg.Go(func() {
			for ev := range events {
				switch {
				case ev.Phase == PhaseTransfer && start.IsZero():
					start = ev.Time
				case ev.Phase == PhaseVerify && end.IsZero():
					end = ev.Time
				}
			}
		})
		eng := &Engine{Buses: map[string]canbus.Bus{"body": tbus}, BusDescriptions: map[string]vehicle.Bus{"body": v.Buses[0]}, Events: events}
		res := eng.Flash(context.Background(), Job{ECU: v.ECUs[0], Firmware: fw})
		close(events)
		cancel()
		mon.Close()
		tbus.Close()
		wg.Wait()
		ebus.Close()
		if res.Outcome != Done {
			b.Fatalf("%v: %v", res.Outcome, res.Err)
		}
		for _, f := range frames {
			if !f.at.Before(start) && !f.at.After(end) {
				busy += f.d
			}
		}
		phase += end.Sub(start)
		sent += res.Plan.Size
	}
	b.ReportMetric(float64(busy)/float64(phase), "bus-busy-ratio")
	b.ReportMetric(phase.Seconds()/float64(b.N), "transfer-s/op")
	b.ReportMetric(float64(sent)/float64(b.N), "bytes-sent/op")
}
