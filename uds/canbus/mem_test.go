package canbus

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// memName returns a bus name unique to the test, so that tests never
// share a bus (nor a synctest bubble).
func memName(t testing.TB) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
}

// openMemT attaches to mem://name and closes the attachment when the test
// ends.
func openMemT(t testing.TB, name string, cfg Config) Bus {
	t.Helper()
	b, err := Open("mem://"+name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// memRecv returns the next frame of s, failing the test if none comes within
// a second (of virtual time under synctest).
func memRecv(t *testing.T, s *Subscription) Frame {
	t.Helper()
	return memRecvWithin(t, s, time.Second)
}

func memRecvWithin(t *testing.T, s *Subscription, d time.Duration) Frame {
	t.Helper()
	select {
	case f, ok := <-s.Frames():
		if !ok {
			t.Fatal("subscription closed")
		}
		return f
	case <-time.After(d):
		t.Fatalf("no frame within %v", d)
	}
	return Frame{}
}

// memExpectNone fails if s has a frame ready now.
func memExpectNone(t *testing.T, s *Subscription) {
	t.Helper()
	synctest.Wait()
	select {
	case f := <-s.Frames():
		t.Fatalf("unexpected frame %v", f)
	default:
	}
}

func memSend(t *testing.T, b Bus, f Frame) {
	t.Helper()
	if err := b.Send(t.Context(), f); err != nil {
		t.Fatal(err)
	}
}

var (
	memClassic500 = Config{Bitrate: 500_000}
	memFD500to2M  = Config{Bitrate: 500_000, DataBitrate: 2_000_000, FD: true}
)

// TestMemDeliversAfterExactlyFrameTime: a frame on an idle bus arrives
// when its last intermission bit ends, not a nanosecond earlier or later.
func TestMemDeliversAfterExactlyFrameTime(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		f    Frame
		want time.Duration
	}{
		{"classic 8x55", memClassic500, classicFrame(0x7E0, false, repeatByte(0x55, 8)), 113 * 2 * time.Microsecond},
		{"29-bit 8x00", memClassic500, classicFrame(0x18DAF110, true, repeatByte(0x00, 8)), 145 * 2 * time.Microsecond},
		{"FD BRS 64xCC", memFD500to2M, fdFrame(0x7E0, false, true, false, repeatByte(0xCC, 64)), 31*2000 + 551*500},
		{"FD without BRS", memFD500to2M, fdFrame(0x555, false, false, false, nil), 63 * 2 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				if got := tt.cfg.FrameTime(&tt.f); got != tt.want {
					t.Fatalf("FrameTime = %v, want %v", got, tt.want)
				}
				a := openMemT(t, memName(t), tt.cfg)
				b := openMemT(t, memName(t), tt.cfg)
				s := b.Subscribe()
				t0 := time.Now()
				memSend(t, a, tt.f)
				time.Sleep(tt.want - 1)
				memExpectNone(t, s)
				got := memRecv(t, s)
				if el := time.Since(t0); el != tt.want {
					t.Errorf("delivered after %v, want %v", el, tt.want)
				}
				if got != tt.f {
					t.Errorf("delivered %v, want %v", got, tt.f)
				}
			})
		})
	}
}

// TestMemBackToBackAtCumulativeDeadlines: a backlog longer than the
// transmit queue keeps the wire busy without a gap, each frame ending at
// the sum of the durations before it, and the statistics agree.
func TestMemBackToBackAtCumulativeDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a := openMemT(t, name, memFD500to2M)
		b := openMemT(t, name, memFD500to2M)
		s := b.Subscribe()
		const n = 3*memTxQueueLen + 5
		frames := make([]Frame, n)
		for i := range frames {
			if i%3 == 0 {
				frames[i] = fdFrame(0x7E0, false, true, false, repeatByte(byte(i), RoundFDLen(i%65)))
			} else {
				frames[i] = classicFrame(0x7E0, false, repeatByte(byte(i), i%9))
			}
		}
		t0 := time.Now()
		go func() {
			for _, f := range frames {
				memSend(t, a, f)
			}
		}()
		var deadline time.Duration
		for i, f := range frames {
			deadline += memFD500to2M.FrameTime(&f)
			got := memRecv(t, s)
			if got != f {
				t.Fatalf("frame %d is %v, want %v", i, got, f)
			}
			if el := time.Since(t0); el != deadline {
				t.Fatalf("frame %d delivered at %v, want %v", i, el, deadline)
			}
		}
		st, ok := MemBusStats(name)
		if !ok || st.Frames != n || st.Busy != deadline {
			t.Fatalf("MemBusStats = %+v, %v; want %d frames, busy %v", st, ok, n, deadline)
		}
	})
}

// TestMemArbitration queues frames from separate attachments at the same
// instant, the losing one first, and checks the order on the wire.
func TestMemArbitration(t *testing.T) {
	std := func(id uint32) Frame { return Frame{ID: id, Len: 1} }
	ext := func(id uint32) Frame { return Frame{ID: id, Extended: true, Len: 1} }
	tests := []struct {
		name          string
		first, second Frame // second wins, though queued later
	}{
		{"lower identifier wins", std(0x123), std(0x122)},
		{"lower 29-bit identifier wins", ext(0x18DAF110), ext(0x18DA10F1)},
		{"standard beats extended with the same base id", ext(0x123 << 18), std(0x123)},
		{"extended with a lower base id beats standard", std(0x123), ext(0x122<<18 | 0x3FFFF)},
		{"data beats remote", Frame{ID: 0x123, RTR: true}, std(0x123)},
		{"29-bit data beats 29-bit remote", Frame{ID: 0x123, Extended: true, RTR: true}, ext(0x123)},
		{"standard remote beats extended data with the same base id (IDE)", ext(0x123 << 18), Frame{ID: 0x123, RTR: true}},
		{"classic beats FD with the same id (FDF)", Frame{ID: 0x123, FD: true}, std(0x123)},
		{"error frame beats everything", std(0), Frame{Error: true, ID: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				name := memName(t)
				lose := openMemT(t, name, memFD500to2M)
				win := openMemT(t, name, memFD500to2M)
				s := openMemT(t, name, memFD500to2M).Subscribe()
				t0 := time.Now()
				memSend(t, lose, tt.first)
				// Let the wire start on the first frame; the second,
				// queued at the same instant, must still win.
				synctest.Wait()
				memSend(t, win, tt.second)
				if got := memRecv(t, s); got != tt.second {
					t.Fatalf("first on the wire: %v, want %v", got, tt.second)
				}
				if got := memRecv(t, s); got != tt.first {
					t.Fatalf("second on the wire: %v, want %v", got, tt.first)
				}
				want := memFD500to2M.FrameTime(&tt.first) + memFD500to2M.FrameTime(&tt.second)
				if el := time.Since(t0); el != want {
					t.Fatalf("both delivered after %v, want %v", el, want)
				}
			})
		})
	}
}

// TestMemNoPreemption: a frame queued after another has started waits
// for it, whatever its priority.
func TestMemNoPreemption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		low, high := openMemT(t, name, memClassic500), openMemT(t, name, memClassic500)
		s := low.Subscribe()
		lf, hf := memFrame8(0x700), memFrame8(0x100)
		t0 := time.Now()
		memSend(t, low, lf)
		time.Sleep(time.Microsecond)
		memSend(t, high, hf)
		if got := memRecv(t, s); got != lf || time.Since(t0) != memClassic500.FrameTime(&lf) {
			t.Fatalf("first frame %v at %v, want %v at %v", got, time.Since(t0), lf, memClassic500.FrameTime(&lf))
		}
		if got := memRecv(t, s); got != hf || time.Since(t0) != memClassic500.FrameTime(&lf)+memClassic500.FrameTime(&hf) {
			t.Fatalf("second frame %v at %v", got, time.Since(t0))
		}
	})
}

func memFrame8(id uint32) Frame { return classicFrame(id, false, repeatByte(byte(id), 8)) }

// TestMemLowPriorityGetsThroughInAPause: a high-priority sender with a
// backlog holds the wire, but the low-priority frame waiting since the
// start goes out as soon as that backlog drains, before the high-priority
// sender's next burst.
func TestMemLowPriorityGetsThroughInAPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		high, low := openMemT(t, name, memClassic500), openMemT(t, name, memClassic500)
		s := openMemT(t, name, memClassic500).Subscribe()
		hf, lf := memFrame8(0x100), memFrame8(0x7FF)
		dh, dl := memClassic500.FrameTime(&hf), memClassic500.FrameTime(&lf)
		t0 := time.Now()
		memSend(t, low, lf)
		for range 5 {
			memSend(t, high, hf)
		}
		go func() {
			time.Sleep(5*dh + dl/2) // back while the low-priority frame is on the wire
			for range 5 {
				memSend(t, high, hf)
			}
		}()
		for i := range 5 {
			if got := memRecv(t, s); got != hf || time.Since(t0) != time.Duration(i+1)*dh {
				t.Fatalf("frame %d: %v at %v, want %v at %v", i, got, time.Since(t0), hf, time.Duration(i+1)*dh)
			}
		}
		if got := memRecv(t, s); got != lf || time.Since(t0) != 5*dh+dl {
			t.Fatalf("low-priority frame: %v at %v, want %v at %v", got, time.Since(t0), lf, 5*dh+dl)
		}
		for i := range 5 {
			if got, want := memRecv(t, s), 5*dh+dl+time.Duration(i+1)*dh; got != hf || time.Since(t0) != want {
				t.Fatalf("second burst frame %d: %v at %v, want %v at %v", i, got, time.Since(t0), hf, want)
			}
		}
	})
}

// TestMemEveryReaderSeesEveryFrame: readers with overlapping filters, on
// the sending attachment (loopback) and on others, each get their frames,
// in the same order, on timed and untimed buses.
func TestMemEveryReaderSeesEveryFrame(t *testing.T) {
	for _, cfg := range []Config{{}, memClassic500} {
		t.Run(describeMem(cfg), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				name := memName(t)
				a, b := openMemT(t, name, cfg), openMemT(t, name, cfg)
				own := a.Subscribe()                             // loopback
				tester := b.Subscribe(ExactFilter(0x7E0, false)) // requests
				ecu := b.Subscribe(ExactFilter(0x7E0, false), ExactFilter(0x7E8, false))
				ids := []uint32{0x7E0, 0x7E8, 0x123, 0x7E0, 0x7E8}
				for _, id := range ids {
					memSend(t, a, memFrame8(id))
				}
				for _, c := range []struct {
					name string
					s    *Subscription
					want []uint32
				}{
					{"sender's own subscription", own, ids},
					{"reader of 7E0", tester, []uint32{0x7E0, 0x7E0}},
					{"reader of 7E0 and 7E8", ecu, []uint32{0x7E0, 0x7E8, 0x7E0, 0x7E8}},
				} {
					for i, id := range c.want {
						if got := memRecv(t, c.s); got.ID != id {
							t.Fatalf("%s: frame %d has id %#x, want %#x", c.name, i, got.ID, id)
						}
					}
					memExpectNone(t, c.s)
				}
			})
		})
	}
}

// TestMemUntimedDeliversAtOnce: without a bit rate Send delivers before it
// returns and no time passes.
func TestMemUntimedDeliversAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a, b := openMemT(t, name, Config{}), openMemT(t, name, Config{})
		s := b.Subscribe()
		t0 := time.Now()
		for i := range 100 {
			memSend(t, a, memFrame8(uint32(i)))
		}
		for i := range 100 {
			select {
			case f := <-s.Frames():
				if f.ID != uint32(i) {
					t.Fatalf("frame %d has id %#x", i, f.ID)
				}
			default:
				t.Fatalf("frame %d not delivered when Send returned", i)
			}
		}
		if el := time.Since(t0); el != 0 {
			t.Fatalf("untimed bus took %v", el)
		}
		if st, _ := MemBusStats(name); st != (MemStats{Frames: 100}) {
			t.Fatalf("MemBusStats = %+v, want 100 frames and no busy time", st)
		}
	})
}

func TestMemRejectsFramesItCannotCarry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		classic := openMemT(t, name, memClassic500)
		fd := openMemT(t, name+"-fd", memFD500to2M)
		s := classic.Subscribe()
		tests := []struct {
			name string
			bus  Bus
			f    Frame
			want error
		}{
			{"FD frame on a classic bus", classic, fdFrame(0x7E0, false, true, false, repeatByte(0xCC, 64)), ErrNoFD},
			{"FD frame without BRS on a classic bus", classic, Frame{ID: 1, FD: true}, ErrNoFD},
			{"11-bit id out of range", classic, Frame{ID: 0x800}, ErrIDRange},
			{"classic length 9", classic, Frame{Len: 9}, ErrLength},
			{"FD length 9", fd, Frame{FD: true, Len: 9}, ErrLength},
			{"FD frame on an FD bus", fd, fdFrame(0x7E0, false, true, false, repeatByte(0xCC, 64)), nil},
		}
		for _, tt := range tests {
			if err := tt.bus.Send(t.Context(), tt.f); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("%s: Send = %v, want %v", tt.name, err, tt.want)
			}
		}
		err := classic.Send(t.Context(), Frame{FD: true})
		if !strings.Contains(err.Error(), "fd=true") {
			t.Errorf("error %q does not say how to carry CAN FD", err)
		}
		memExpectNone(t, s)
	})
}

func TestMemSendAfterClose(t *testing.T) {
	for _, cfg := range []Config{{}, memClassic500} {
		t.Run(describeMem(cfg), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				name := memName(t)
				a := openMemT(t, name, cfg)
				openMemT(t, name, cfg) // keeps the bus up
				a.Close()
				if err := a.Send(t.Context(), Frame{}); !errors.Is(err, ErrClosed) {
					t.Fatalf("Send after Close = %v, want ErrClosed", err)
				}
				if err := a.Close(); err != nil {
					t.Fatalf("second Close = %v", err)
				}
				if _, ok := <-a.Subscribe().Frames(); ok {
					t.Fatal("Subscribe after Close returned an open subscription")
				}
			})
		})
	}
}

// TestMemSendBlocksOnFullQueue: Send waits while the transmit queue is
// full and gives up on its context or on Close.
func TestMemSendBlocksOnFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a := openMemT(t, name, memClassic500)
		openMemT(t, name, memClassic500)
		f := memFrame8(0x7E0)
		d := memClassic500.FrameTime(&f)
		for range memTxQueueLen {
			memSend(t, a, f)
		}

		ctx, cancel := context.WithTimeout(t.Context(), d/2)
		defer cancel()
		t0 := time.Now()
		if err := a.Send(ctx, f); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send on a full queue = %v, want DeadlineExceeded", err)
		}
		if el := time.Since(t0); el != d/2 {
			t.Fatalf("Send gave up after %v, want %v", el, d/2)
		}

		// With time to spare, Send waits for the first frame to leave.
		if err := a.Send(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(t0); el != d {
			t.Fatalf("Send returned after %v, want %v (when the first frame left)", el, d)
		}

		errc := make(chan error)
		go func() { errc <- a.Send(t.Context(), f) }()
		synctest.Wait()
		a.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("Send blocked during Close = %v, want ErrClosed", err)
		}
		if el := time.Since(t0); el != d {
			t.Fatalf("Close took until %v", el)
		}
	})
}

// TestMemClosedAttachmentsFramesStillGoOut: like frames in a kernel
// queue, frames queued before Close reach the other attachments.
func TestMemClosedAttachmentsFramesStillGoOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a, b := openMemT(t, name, memClassic500), openMemT(t, name, memClassic500)
		s := b.Subscribe()
		for i := range 3 {
			memSend(t, a, memFrame8(uint32(i)))
		}
		a.Close()
		for i := range 3 {
			if got := memRecv(t, s); got.ID != uint32(i) {
				t.Fatalf("frame %d has id %#x", i, got.ID)
			}
		}
	})
}

// TestMemLastCloseStopsTheBus: closing the last attachment ends the wire
// goroutine (synctest.Test would also fail on a leaked goroutine), drops
// queued frames and frees the name.
func TestMemLastCloseStopsTheBus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a := openMemT(t, name, memClassic500)
		b := openMemT(t, name, memClassic500)
		for range 10 {
			memSend(t, a, memFrame8(1))
		}
		memBuses.Lock()
		bus := memBuses.m[name]
		memBuses.Unlock()
		a.Close()
		select {
		case <-bus.done:
			t.Fatal("wire stopped while an attachment is open")
		default:
		}
		b.Close()
		select {
		case <-bus.done:
		default:
			t.Fatal("Close of the last attachment returned before the wire goroutine ended")
		}
		if _, ok := MemBusStats(name); ok {
			t.Fatal("closed bus still registered")
		}
	})
}

// TestMemRegistry: one name is one bus while open; its configuration is
// fixed by the first Open; the name is free again after the last Close.
func TestMemRegistry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		name := memName(t)
		a, err := Open("mem://"+name+"?bitrate=500000&dbitrate=2000000&fd=true", Config{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open("mem://"+name, memFD500to2M)
		if err != nil {
			t.Fatalf("second Open with the same configuration: %v", err)
		}
		s := b.Subscribe()
		memSend(t, a, Frame{ID: 1})
		memRecv(t, s)

		_, err = Open("mem://"+name, memClassic500)
		if err == nil || !strings.Contains(err.Error(), "bitrate=500000 dbitrate=2000000 fd=true") {
			t.Fatalf("Open with another configuration = %v, want an error naming the bus's", err)
		}
		if _, ok := MemBusStats(name); !ok {
			t.Fatal("open bus not registered")
		}
		a.Close()
		b.Close()
		if _, ok := MemBusStats(name); ok {
			t.Fatal("bus still registered after its last Close")
		}
		c := openMemT(t, name, Config{})
		memSend(t, c, Frame{ID: 2}) // a new, untimed bus under the same name
	})
}

func TestMemOpenRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative bitrate", Config{Bitrate: -1}, "negative"},
		{"data bitrate without bitrate", Config{DataBitrate: 2_000_000, FD: true}, "without a nominal bitrate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open("mem://"+memName(t), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestMemConcurrentSenders runs senders and readers at full speed in real
// time, for the race detector; it asserts only what arrives, never when.
func TestMemConcurrentSenders(t *testing.T) {
	for _, cfg := range []Config{{}, {Bitrate: 1_000_000_000}} {
		t.Run(describeMem(cfg), func(t *testing.T) {
			name := memName(t)
			const senders, each = 4, 200
			rd := openMemT(t, name, cfg)
			s := rd.Subscribe()
			var wg sync.WaitGroup
			for i := range senders {
				bus := openMemT(t, name, cfg)
				wg.Go(func() {
					for j := range each {
						if err := bus.Send(t.Context(), memFrame8(uint32(i))); err != nil {
							t.Error(err)
							return
						}
						if j%50 == 0 {
							bus.Subscribe().Close()
						}
					}
				})
			}
			wg.Wait()
			seen := make([]int, senders)
			for range senders * each {
				seen[memRecvWithin(t, s, 10*time.Second).ID]++
			}
			for i, n := range seen {
				if n != each {
					t.Errorf("sender %d: %d frames arrived, want %d", i, n, each)
				}
			}
		})
	}
}

func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMemUntimed sends frames through an untimed bus to one reader
// on another attachment: frames per second and the process's CPU time per
// frame, sender and reader together.
func BenchmarkMemUntimed(b *testing.B) {
	benchmarkMem(b, Config{QueueLen: 1 << 16})
}

// BenchmarkMemTimedOverhead runs the timed bus at 1 Gbit/s, faster than
// the wire goroutine can schedule, so it never sleeps: the CPU cost per
// frame of timing and arbitration.
func BenchmarkMemTimedOverhead(b *testing.B) {
	benchmarkMem(b, Config{Bitrate: 1_000_000_000, QueueLen: 1 << 16})
}

func benchmarkMem(b *testing.B, cfg Config) {
	name := memName(b)
	tx, rx := openMemT(b, name, cfg), openMemT(b, name, cfg)
	s := rx.Subscribe()
	f := memFrame8(0x7E0)
	done := make(chan int)
	go func() {
		n := 0
		for range s.Frames() {
			n++
		}
		done <- n
	}()
	ctx := context.Background()
	cpu0 := processCPUTime()
	b.ResetTimer()
	for range b.N {
		if err := tx.Send(ctx, f); err != nil {
			b.Fatal(err)
		}
	}
	for {
		st, _ := MemBusStats(name)
		if st.Frames >= uint64(b.N) {
			break
		}
		time.Sleep(10 * time.Microsecond)
	}
	b.StopTimer()
	cpu := processCPUTime() - cpu0
	rx.Close()
	if got := <-done; got+int(s.Dropped()) != b.N {
		b.Fatalf("%d frames sent but %d received and %d dropped", b.N, got, s.Dropped())
	}
	el := b.Elapsed()
	b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N), "ns/frame")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/frame")
}
