package isotp

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// busCase is a bus configuration with the ISO-TP options that use it fully.
type busCase struct {
	name string
	bus  canbus.Config
	opts Options
}

var throughputBuses = []busCase{
	{"classic-500k", canbus.Config{Bitrate: 500_000}, Options{}},
	{"fd-500k-2M", canbus.Config{Bitrate: 500_000, DataBitrate: 2_000_000, FD: true}, Options{TxDL: 64, BRS: true}},
}

// framesNeeded is how many frames an ISO-TP transfer of n bytes with BS=0
// needs with normal addressing: one first frame, one flow control and the
// consecutive frames for the rest.
func framesNeeded(n, txDL int) int {
	ffData := txDL - 2
	if n > 4095 {
		ffData = txDL - 6
	}
	cfData := txDL - 1
	return 1 + 1 + (n-ffData+cfData-1)/cfData
}

// BenchmarkThroughput sends one message per iteration over a fresh timed mem
// bus, in real time, and reports payload throughput as a ratio to the bus
// limit: the sum of the exact wire times (bits including stuff bits, at the
// configured rates) of the frames the transfer needs, over the span from the
// first frame's start to the last frame's end on the bus timeline
// (bus-ratio; 1 means the bus never idled). wall-ratio divides the same sum
// by the wall time from Send to Recv's return, which adds the host's timer
// lateness at the start and end (about 1 ms on an idle Go process). It also
// reports the process CPU time per frame carried, bus model included.
func BenchmarkThroughput(b *testing.B) {
	for _, bc := range throughputBuses {
		for _, size := range []int{4 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", bc.name, size>>10), func(b *testing.B) {
				benchThroughput(b, bc, size)
			})
		}
	}
}

func benchThroughput(b *testing.B, bc busCase, size int) {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	txDL := bc.opts.TxDL
	if txDL == 0 {
		txDL = 8
	}
	var busy, span, wall time.Duration
	var frames uint64
	cpu0 := cpuTime()
	b.SetBytes(int64(size))
	for i := 0; b.Loop(); i++ {
		st := transferOnce(b, fmt.Sprintf("bench-%s-%d-%d", bc.name, size, i), bc, msg, &wall)
		if want := uint64(framesNeeded(size, txDL)); st.Frames != want {
			b.Fatalf("transfer took %d frames, want %d (FF, one FC, CFs)", st.Frames, want)
		}
		frames += st.Frames
		busy += st.Busy
		span += st.End.Sub(st.Start)
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(busy)/float64(span), "bus-ratio")
	b.ReportMetric(float64(busy)/float64(wall), "wall-ratio")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(frames), "cpu-ns/frame")
	b.ReportMetric(float64(size)*float64(b.N)/wall.Seconds()/1024, "KiB/s")
}

// transferOnce carries msg from a tester to an ECU over a new mem bus called
// name, adds the wall time from Send to Recv's return to wall, and returns
// the bus's counters for the transfer.
func transferOnce(b *testing.B, name string, bc busCase, msg []byte, wall *time.Duration) canbus.MemStats {
	tester, ecu := benchPair(b, name, bc.bus, bc.opts)
	start := time.Now()
	carry(b, tester, ecu, msg)
	*wall += time.Since(start)
	st, _ := canbus.MemBusStats(name)
	return st
}

// benchPair opens two attachments to the mem bus called name, a tester's
// and an ECU's, with a Conn on each; b's cleanup closes them.
func benchPair(b *testing.B, name string, cfg canbus.Config, opts Options) (tester, ecu *Conn) {
	conn := func(tx, rx uint32) *Conn {
		bus, err := canbus.Open("mem://"+name, cfg)
		if err != nil {
			b.Fatal(err)
		}
		c, err := Dial(bus, Address{TxID: tx, RxID: rx}, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(); bus.Close() })
		return c
	}
	return conn(0x7E0, 0x7E8), conn(0x7E8, 0x7E0)
}

// carry sends msg from tester to ecu and checks that it arrives whole.
func carry(b *testing.B, tester, ecu *Conn, msg []byte) {
	ctx := context.Background()
	sent := make(chan error, 1)
	go func() { sent <- tester.Send(ctx, msg) }()
	got, err := ecu.Recv(ctx)
	if err != nil {
		b.Fatalf("Recv: %v", err)
	}
	if err := <-sent; err != nil {
		b.Fatalf("Send: %v", err)
	}
	if len(got) != len(msg) {
		b.Fatalf("received %d bytes, want %d", len(got), len(msg))
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUntimed measures the ISO-TP stack's own cost: a 64 KiB message
// over an untimed mem bus, so that nothing but CPU limits it.
func BenchmarkUntimed(b *testing.B) {
	for _, bc := range throughputBuses {
		b.Run(bc.name, func(b *testing.B) {
			cfg := bc.bus
			cfg.Bitrate, cfg.DataBitrate = 0, 0
			cfg.QueueLen = 1 << 16 // an untimed bus outruns a reader: hold a whole message
			name := "bench-untimed-" + bc.name
			tester, ecu := benchPair(b, name, cfg, bc.opts)
			msg := make([]byte, 64<<10)
			var frames uint64
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				before, _ := canbus.MemBusStats(name)
				carry(b, tester, ecu, msg)
				after, _ := canbus.MemBusStats(name)
				frames += after.Frames - before.Frames
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
		})
	}
}
