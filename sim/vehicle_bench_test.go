package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// ecusPerBus is how many ECUs the benchmarks put on one bus: a busy
// vehicle bus.
const ecusPerBus = 16

// benchFleet describes n ECUs with two 1 MiB slots, each holding a 512 KiB
// image, ecusPerBus to a timed 500 kbit/s mem bus, 11-bit addressing.
func benchFleet(b *testing.B, n int) *vehicle.Vehicle {
	b.Helper()
	run := busSeq.Add(1)
	desc := &vehicle.Vehicle{Name: "fleet"}
	for i := range (n + ecusPerBus - 1) / ecusPerBus {
		desc.Buses = append(desc.Buses, vehicle.Bus{Name: fmt.Sprintf("bus%d", i), URL: fmt.Sprintf("mem://fleet-%d-%d", run, i), Bitrate: 500000})
	}
	section, err := vehicle.RawYAML(`{slots: {a: {version: "1.0.0", releaseCounter: 2, payloadSize: 524288}, b: {version: "0.9.0", releaseCounter: 1, payloadSize: 524288}}, bootTime: 10ms}`)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		k := uint32(i % ecusPerBus)
		desc.ECUs = append(desc.ECUs, vehicle.ECU{
			Name:       fmt.Sprintf("ecu%d", i),
			Bus:        desc.Buses[i/ecusPerBus].Name,
			Addressing: vehicle.Addressing{RequestID: 0x700 + k, ResponseID: 0x780 + k},
			HardwareID: testHW,
			Flash:      vehicle.Flash{SlotSize: 1 << 20, SectorSize: 4096, SlotA: 0, SlotB: 1 << 20},
			Simulation: section,
		})
	}
	if err := desc.Validate(); err != nil {
		b.Fatal(err)
	}
	return desc
}

// fleetTesters returns one UDS client per ECU of desc, each on its own
// attachment to the ECU's bus, and waits until every ECU answers.
func fleetTesters(b *testing.B, ctx context.Context, desc *vehicle.Vehicle) []*uds.Client {
	b.Helper()
	clients := make([]*uds.Client, len(desc.ECUs))
	for i, e := range desc.ECUs {
		bc, _ := desc.Bus(e.Bus)
		bus, err := canbus.Open(bc.URL, bc.Config())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { bus.Close() })
		addr, _ := e.Addresses()
		conn, err := isotp.Dial(bus, addr, isotp.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients[i] = uds.NewClient(conn, uds.ClientOptions{})
		for clients[i].TesterPresent(ctx, 0) != nil {
			if ctx.Err() != nil {
				b.Fatalf("%s never answered", e.Name)
			}
		}
	}
	return clients
}

// rss returns the process's resident set size in bytes.
func rss(b *testing.B) uint64 {
	b.Helper()
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skipf("SKIP: no /proc/self/statm to read the RSS from: %v", err)
	}
	f := strings.Fields(string(statm))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		b.Fatalf("/proc/self/statm: %q", statm)
	}
	return pages * uint64(os.Getpagesize())
}

func heap() uint64 {
	runtime.GC()
	runtime.GC() // the first cycle's finalizers and sweeps settle
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkVehicleMemoryPerECU runs a vehicle of 256 ECUs with two 1 MiB
// slots (a 512 KiB image in each) on 16 timed mem buses, each ECU
// answering once, and reports the growth of the live heap and of the
// process's RSS per ECU, and goroutines per ECU. The flash model alone is
// 2 MiB per ECU. Run it alone (-bench VehicleMemory): the RSS delta only
// means something in a process that has not grown its heap before.
func BenchmarkVehicleMemoryPerECU(b *testing.B) {
	const n = 256
	var heapPer, rssPer, gPer float64
	for range b.N {
		desc := benchFleet(b, n)
		h0, r0, g0 := heap(), rss(b), runtime.NumGoroutine()
		v, err := NewVehicle(desc, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx) }()
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		testers := fleetTesters(b, wctx, desc)
		wcancel()
		// The testers' attachments and Conns are counted too; they are
		// small beside the flash.
		h1, r1, g1 := heap(), rss(b), runtime.NumGoroutine()
		heapPer += float64(h1-h0) / n
		rssPer += float64(r1-r0) / n
		gPer += float64(g1-g0) / n
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		_ = testers
	}
	b.ReportMetric(heapPer/float64(b.N)/(1<<20), "heap-MiB/ecu")
	b.ReportMetric(rssPer/float64(b.N)/(1<<20), "rss-MiB/ecu")
	b.ReportMetric(gPer/float64(b.N), "goroutines/ecu")
}

// BenchmarkVehicleTesterPresent finds how many ECUs one process serves
// within P2 (50 ms). N ECUs with two 1 MiB slots sit 16 to a timed
// 500 kbit/s mem bus; a tester per bus sends TesterPresent to its ECUs
// round-robin, back to back, so every bus is saturated with diagnostic
// requests and the offered load grows with the number of buses. It
// reports the requests answered per second and the response time's
// median, 99th percentile and maximum as the tester sees it (from the
// request's send to the response, both frames' bus time included), and
// the fraction of responses later than P2. b.N is the number of requests
// per bus.
func BenchmarkVehicleTesterPresent(b *testing.B) {
	for _, n := range benchSizes(b, 16, 64, 256, 1024) {
		b.Run(fmt.Sprintf("ecus=%d", n), func(b *testing.B) {
			loadFleet(b, n, func(_, _ int, own []*uds.Client, _ time.Time) (lat []time.Duration) {
				for i := range b.N {
					t0 := time.Now()
					lat = append(lat, answer(b, own[i%len(own)], t0))
				}
				return lat
			})
		})
	}
}

// BenchmarkVehicleKeepAlive is the load a fleet of testers keeping every
// ECU's session alive puts on the simulator: each of N ECUs (two 1 MiB
// slots, 16 to a timed 500 kbit/s bus) gets a TesterPresent every 200 ms,
// ten times as often as a tester's 2 s keep-alive needs, sent by one
// tester per bus round-robin at evenly spaced times. A response's time
// runs from the moment its request was due, so a tester that falls
// behind counts its backlog too. It reports the same figures as
// BenchmarkVehicleTesterPresent; b.N is the number of rounds (each ECU
// gets b.N requests).
func BenchmarkVehicleKeepAlive(b *testing.B) {
	const period = 200 * time.Millisecond
	for _, n := range benchSizes(b, 256, 1024) {
		b.Run(fmt.Sprintf("ecus=%d", n), func(b *testing.B) {
			loadFleet(b, n, func(bi, buses int, own []*uds.Client, start time.Time) (lat []time.Duration) {
				step := period / time.Duration(len(own))
				// Buses start at spread offsets, as unrelated testers would.
				first := start.Add(time.Duration(bi) * step / time.Duration(buses))
				for i := range b.N * len(own) {
					due := first.Add(time.Duration(i) * step)
					time.Sleep(time.Until(due))
					lat = append(lat, answer(b, own[i%len(own)], due))
				}
				return lat
			})
		})
	}
}

// loadFleet runs a fleet of n ECUs and, in a goroutine per bus, drive
// with the bus's index, the number of buses, the bus's testers and the
// common start; it reports the response times drive returns.
func loadFleet(b *testing.B, n int, drive func(bus, buses int, own []*uds.Client, start time.Time) []time.Duration) {
	testers, buses := runFleet(b, n)
	lat := make([][]time.Duration, buses)
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime(b)
	for bi := range buses {
		own := testers[bi*ecusPerBus : min((bi+1)*ecusPerBus, n)]
		wg.Go(func() { lat[bi] = drive(bi, buses, own, start) })
	}
	wg.Wait()
	reportLatency(b, lat, time.Since(start), cpuTime(b)-cpu0)
}

// benchSizes returns the fleet sizes to measure: def, or the
// comma-separated list in ECU_KUBELET_SIM_BENCH_ECUS (each ECU takes about
// 2.5 MiB of RSS, so larger fleets need the memory).
func benchSizes(b *testing.B, def ...int) []int {
	env := os.Getenv("ECU_KUBELET_SIM_BENCH_ECUS")
	if env == "" {
		return def
	}
	var sizes []int
	for f := range strings.SplitSeq(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("ECU_KUBELET_SIM_BENCH_ECUS=%q: want a comma-separated list of ECU counts", env)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// runFleet runs a vehicle of n ECUs (benchFleet) until the benchmark ends
// and returns a tester for each ECU, once all answer, and the number of
// buses.
func runFleet(b *testing.B, n int) ([]*uds.Client, int) {
	b.Helper()
	desc := benchFleet(b, n)
	v, err := NewVehicle(desc, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	return fleetTesters(b, wctx, desc), len(desc.Buses)
}

// lost stands for a response that never came in the response times.
const lost = time.Duration(1<<63 - 1)

// answer sends TesterPresent and returns the time from since to its
// response, or lost when the client gave up waiting (after P2 and its
// margin): a response so late is as good as none to a tester.
func answer(b *testing.B, c *uds.Client, since time.Time) time.Duration {
	if err := c.TesterPresent(b.Context(), 0); err != nil {
		if te := (*uds.TimeoutError)(nil); !errors.As(err, &te) {
			b.Error(err)
		}
		return lost
	}
	return time.Since(since)
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportLatency reports the response times of all testers.
func reportLatency(b *testing.B, lat [][]time.Duration, elapsed, cpu time.Duration) {
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	onTime, _ := slices.BinarySearch(all, uds.DefaultP2+1)
	answered, _ := slices.BinarySearch(all, lost)
	ms := func(d time.Duration) float64 {
		if d == lost {
			return math.Inf(1)
		}
		return float64(d) / 1e6
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "requests/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-ms")
	b.ReportMetric(float64(len(all)-onTime)/float64(len(all)), "over-P2")
	b.ReportMetric(float64(len(all)-answered)/float64(len(all)), "lost")
	b.ReportMetric(float64(cpu)/float64(len(all))/1e3, "cpu-µs/request")
	b.ReportMetric(0, "ns/op")
}
