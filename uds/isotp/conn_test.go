package isotp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

var (
	classic500 = canbus.Config{Bitrate: 500_000}
	fd500x2M   = canbus.Config{Bitrate: 500_000, DataBitrate: 2_000_000, FD: true}
)

// mirror returns the address of the peer of a.
func mirror(a Address) Address {
	a.TxID, a.RxID = a.RxID, a.TxID
	a.Source, a.Target = a.Target, a.Source
	return a
}

var busSeq atomic.Uint64

// bench is a timed mem bus with two nodes, a and b, and a recorder of
// every frame with the time it was delivered. It must be made inside the
// synctest bubble of its test.
type bench struct {
	a, b  canbus.Bus
	rec   *recorder
	buses []canbus.Bus
}

func newBench(t *testing.T, cfg canbus.Config) *bench {
	t.Helper()
	url := fmt.Sprintf("mem://isotp-test-%d", busSeq.Add(1))
	var buses []canbus.Bus
	for range 3 {
		b, err := canbus.Open(url, cfg)
		if err != nil {
			t.Fatal(err)
		}
		buses = append(buses, b)
	}
	return &bench{a: buses[0], b: buses[1], rec: record(buses[2]), buses: buses}
}

// close closes the buses, which ends the recorder and the bus goroutine.
func (b *bench) close() {
	for _, bus := range b.buses {
		bus.Close()
	}
	<-b.rec.done
}

// inject sends raw frames onto the bus, as a peer that we script.
func (b *bench) inject(t *testing.T, frames ...string) {
	t.Helper()
	for _, s := range frames {
		if err := b.buses[2].Send(context.Background(), mustFrame(t, s)); err != nil {
			t.Fatal(err)
		}
	}
}

type recorder struct {
	mu     sync.Mutex
	frames []stamped
	done   chan struct{}
}

type stamped struct {
	f  canbus.Frame
	at time.Time
}

func record(bus canbus.Bus) *recorder {
	r := &recorder{done: make(chan struct{})}
	sub := bus.Subscribe()
	go func() {
		defer close(r.done)
		for f := range sub.Frames() {
			r.mu.Lock()
			r.frames = append(r.frames, stamped{f, time.Now()})
			r.mu.Unlock()
		}
	}()
	return r
}

// on returns the frames recorded on identifier id, once the recorder has
// taken every frame delivered so far.
func (r *recorder) on(id uint32) []stamped {
	synctest.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stamped
	for _, s := range r.frames {
		if s.f.ID == id {
			out = append(out, s)
		}
	}
	return out
}

func dial(t *testing.T, bus canbus.Bus, addr Address, opts Options) *Conn {
	t.Helper()
	c, err := Dial(bus, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchange sends ma from a to b and mb from b to a at the same time and
// checks that both arrive.
func exchange(t *testing.T, a, b *Conn, ma, mb []byte) {
	t.Helper()
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { errs <- a.Send(ctx, ma) }()
	go func() { errs <- b.Send(ctx, mb) }()
	for _, c := range []struct {
		name string
		conn *Conn
		want []byte
	}{{"b", b, ma}, {"a", a, mb}} {
		got, err := c.conn.Recv(ctx)
		if err != nil {
			t.Fatalf("%d/%d bytes: %s.Recv: %v", len(ma), len(mb), c.name, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Fatalf("%s received %d bytes, want the %d sent", c.name, len(got), len(c.want))
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("%d/%d bytes: Send: %v", len(ma), len(mb), err)
		}
	}
}

// TestConnFullDuplex sends messages of every size class both ways at once
// over a timed mem bus, in each addressing mode, on classic CAN and CAN
// FD.
func TestConnFullDuplex(t *testing.T) {
	modes := []struct {
		name string
		addr Address
	}{
		{"normal 11-bit", Address{TxID: 0x7E0, RxID: 0x7E8}},
		{"normal 29-bit", Address{TxID: 0x18DA10F1, RxID: 0x18DAF110, Extended29: true}},
		{"normal fixed", Address{Mode: NormalFixed, Source: 0xF1, Target: 0x10}},
		{"extended", Address{Mode: Extended, TxID: 0x6F1, RxID: 0x610, Source: 0xF1, Target: 0x10}},
		{"mixed 11-bit", Address{Mode: Mixed, TxID: 0x700, RxID: 0x701, AddressExtension: 0x42}},
		{"mixed 29-bit", Address{Mode: Mixed, Extended29: true, Source: 0xF1, Target: 0x10, AddressExtension: 0x42}},
	}
	links := []struct {
		name string
		bus  canbus.Config
		opts Options
	}{
		{"classic", classic500, Options{}},
		{"classic unpadded BS 8 STmin 1", classic500, Options{NoPadding: true, BlockSize: 8, STmin: 1}},
		{"FD 64 BRS", fd500x2M, Options{TxDL: 64, BRS: true}},
		{"FD 12 unpadded BS 3 STmin 100us", fd500x2M, Options{TxDL: 12, NoPadding: true, BlockSize: 3, STmin: 0xF1}},
	}
	sizes := []int{1, 6, 7, 8, 11, 62, 63, 64, 4095, 4096, 10000}
	for _, m := range modes {
		for _, l := range links {
			t.Run(m.name+"/"+l.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					bb := newBench(t, l.bus)
					defer bb.close()
					a := dial(t, bb.a, m.addr, l.opts)
					defer a.Close()
					b := dial(t, bb.b, mirror(m.addr), l.opts)
					defer b.Close()
					for _, n := range sizes {
						exchange(t, a, b, payload(n, 1), payload(n+3, 2))
					}
				})
			})
		}
	}
}

// TestConnSTminRespected measures, in virtual time, the gaps between the
// consecutive frames a sender puts on the bus for each STmin a receiver
// can ask for.
func TestConnSTminRespected(t *testing.T) {
	for _, tt := range []struct {
		stmin byte
		want  time.Duration
	}{
		{0x01, time.Millisecond},
		{0x0A, 10 * time.Millisecond},
		{0x7F, 127 * time.Millisecond},
		{0xF1, 100 * time.Microsecond},
		{0xF5, 500 * time.Microsecond},
		{0xF9, 900 * time.Microsecond},
	} {
		t.Run(fmt.Sprintf("%#02x", tt.stmin), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bb := newBench(t, classic500)
				defer bb.close()
				a := dial(t, bb.a, tester, Options{})
				defer a.Close()
				b := dial(t, bb.b, mirror(tester), Options{STmin: tt.stmin, BlockSize: 4})
				defer b.Close()
				exchange(t, a, b, payload(100, 0), []byte{1})
				frames := bb.rec.on(0x7E0)
				var cfs []time.Time
				for _, s := range frames {
					if s.f.Data[0]>>4 == 2 {
						cfs = append(cfs, s.at)
					}
				}
				if len(cfs) != 14 {
					t.Fatalf("%d consecutive frames, want 14", len(cfs))
				}
				for i := 1; i < len(cfs); i++ {
					if gap := cfs[i].Sub(cfs[i-1]); gap < tt.want {
						t.Errorf("consecutive frames %d and %d %v apart, STmin is %v", i, i+1, gap, tt.want)
					}
				}
				// The sender waits STmin and no more when the bus is faster.
				if d, max := cfs[len(cfs)-1].Sub(cfs[0]), time.Duration(len(cfs)-1)*(tt.want+time.Millisecond); d > max {
					t.Errorf("consecutive frames took %v, want at most %v", d, max)
				}
			})
		})
	}
}

func TestConnBlockSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		a := dial(t, bb.a, tester, Options{})
		defer a.Close()
		b := dial(t, bb.b, mirror(tester), Options{BlockSize: 4})
		defer b.Close()
		exchange(t, a, b, payload(100, 0), []byte{1}) // FF + 14 CFs
		var fcs int
		for _, s := range bb.rec.on(0x7E8) {
			if s.f.Data[0] == 0x30 {
				fcs++
			}
		}
		if fcs != 4 {
			t.Fatalf("%d flow controls for 14 consecutive frames at BS 4, want 4", fcs)
		}
	})
}

func wantTimeout(t *testing.T, err error, timer Timer) {
	t.Helper()
	var e *Error
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &e) || e.Timer != timer {
		t.Fatalf("error %v, want a %v timeout", err, timer)
	}
}

func TestConnTimeouts(t *testing.T) {
	t.Run("N_Bs: nobody answers the first frame", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBench(t, classic500)
			defer bb.close()
			a := dial(t, bb.a, tester, Options{})
			defer a.Close()
			start := time.Now()
			wantTimeout(t, a.Send(context.Background(), payload(20, 0)), NBs)
			if d := time.Since(start); d != DefaultTimeout {
				t.Fatalf("N_Bs after %v, want %v", d, DefaultTimeout)
			}
		})
	})
	t.Run("N_Cr: the sender stops after the first frame", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBench(t, classic500)
			defer bb.close()
			b := dial(t, bb.b, mirror(tester), Options{Timeouts: Timeouts{Cr: 300 * time.Millisecond}})
			defer b.Close()
			bb.inject(t, "7E0#1014000102030405")
			start := time.Now()
			_, err := b.Recv(context.Background())
			wantTimeout(t, err, NCr)
			if d := time.Since(start); d < 300*time.Millisecond || d > 301*time.Millisecond {
				t.Fatalf("N_Cr after %v, want 300 ms after the first frame", d)
			}
			// The receiver is ready for the next message.
			bb.inject(t, "7E0#0211223344")
			if msg, err := b.Recv(context.Background()); err != nil || !bytes.Equal(msg, []byte{0x11, 0x22}) {
				t.Fatalf("after the timeout: % X, %v", msg, err)
			}
		})
	})
	t.Run("N_As: the bus takes no frame", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBench(t, classic500)
			defer bb.close()
			a := dial(t, stalledBus{bb.a}, tester, Options{Timeouts: Timeouts{As: 50 * time.Millisecond}})
			defer a.Close()
			start := time.Now()
			wantTimeout(t, a.Send(context.Background(), payload(3, 0)), NAs)
			if d := time.Since(start); d != 50*time.Millisecond {
				t.Fatalf("N_As after %v, want 50ms", d)
			}
		})
	})
	t.Run("N_Ar: the bus takes no flow control", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBench(t, classic500)
			defer bb.close()
			b := dial(t, stalledBus{bb.b}, mirror(tester), Options{})
			defer b.Close()
			bb.inject(t, "7E0#1014000102030405")
			_, err := b.Recv(context.Background())
			wantTimeout(t, err, NAr)
		})
	})
}

// stalledBus is a bus whose transmit queue never has room.
type stalledBus struct{ canbus.Bus }

func (stalledBus) Send(ctx context.Context, f canbus.Frame) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestConnOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		a := dial(t, bb.a, tester, Options{})
		defer a.Close()
		b := dial(t, bb.b, mirror(tester), Options{MaxRecvLen: 100})
		defer b.Close()
		if err := a.Send(context.Background(), payload(101, 0)); !errors.Is(err, ErrOverflow) {
			t.Fatalf("Send of 101 bytes to a receiver of 100: %v, want ErrOverflow", err)
		}
		if _, err := b.Recv(context.Background()); !errors.Is(err, ErrOverflow) {
			t.Fatalf("Recv: %v, want ErrOverflow", err)
		}
		exchange(t, a, b, payload(100, 0), payload(100, 1))
	})
}

func TestConnFunctional(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		addr := Address{TxID: 0x7DF, RxID: 0x7E8, Functional: true}
		a := dial(t, bb.a, addr, Options{})
		defer a.Close()
		b := dial(t, bb.b, mirror(addr), Options{})
		defer b.Close()
		ctx := context.Background()
		if err := a.Send(ctx, []byte{0x3E, 0x00}); err != nil {
			t.Fatal(err)
		}
		if msg, err := b.Recv(ctx); err != nil || !bytes.Equal(msg, []byte{0x3E, 0x00}) {
			t.Fatalf("functional request received as % X, %v", msg, err)
		}
		if err := a.Send(ctx, payload(8, 0)); !errors.Is(err, ErrFunctional) {
			t.Fatalf("Send of 8 bytes functionally: %v, want ErrFunctional", err)
		}
		if n := len(bb.rec.on(0x7DF)); n != 1 {
			t.Fatalf("%d frames on the functional identifier, want 1", n)
		}
	})
}

// TestConnInterruptedReception: a single frame that arrives in the middle of
// a message is reported after the error that lost the old one.
func TestConnInterruptedReception(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		b := dial(t, bb.b, mirror(tester), Options{})
		defer b.Close()
		bb.inject(t, "7E0#1014000102030405", "7E0#023E00")
		ctx := context.Background()
		if _, err := b.Recv(ctx); !errors.Is(err, ErrInterrupted) {
			t.Fatalf("first Recv: %v, want ErrInterrupted", err)
		}
		if msg, err := b.Recv(ctx); err != nil || !bytes.Equal(msg, []byte{0x3E, 0x00}) {
			t.Fatalf("second Recv: % X, %v", msg, err)
		}
	})
}

func TestConnReportsIgnoredFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		var mu sync.Mutex
		var got []error
		b := dial(t, bb.b, mirror(tester), Options{OnError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, err)
		}})
		defer b.Close()
		bb.inject(t, "7E0#300000", "7E0#2100", "7E0#F0")
		time.Sleep(10 * time.Millisecond) // the bus carries them
		mu.Lock()
		defer mu.Unlock()
		want := []Kind{ErrUnexpected, ErrUnexpected, ErrMalformed}
		if len(got) != len(want) {
			t.Fatalf("OnError got %v, want kinds %v", got, want)
		}
		for i := range want {
			if !errors.Is(got[i], want[i]) {
				t.Errorf("OnError %d: %v, want %v", i, got[i], want[i])
			}
		}
	})
}

func TestConnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		a := dial(t, bb.a, tester, Options{})
		recvErr, sendErr := make(chan error), make(chan error)
		go func() { _, err := a.Recv(context.Background()); recvErr <- err }()
		go func() { sendErr <- a.Send(context.Background(), payload(20, 0)) }()
		time.Sleep(100 * time.Millisecond) // Send waits for a flow control
		a.Close()
		if err := <-recvErr; !errors.Is(err, ErrClosed) {
			t.Errorf("Recv during Close: %v, want ErrClosed", err)
		}
		if err := <-sendErr; !errors.Is(err, ErrClosed) {
			t.Errorf("Send during Close: %v, want ErrClosed", err)
		}
		if err := a.Send(context.Background(), []byte{1}); !errors.Is(err, ErrClosed) {
			t.Errorf("Send after Close: %v, want ErrClosed", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestConnSendHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bb := newBench(t, classic500)
		defer bb.close()
		a := dial(t, bb.a, tester, Options{})
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := a.Send(ctx, payload(20, 0)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send: %v, want context.DeadlineExceeded", err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := a.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Recv: %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestDialRejectsBadConfiguration(t *testing.T) {
	bus, err := canbus.Open(fmt.Sprintf("mem://isotp-test-%d", busSeq.Add(1)), canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	for _, tt := range []struct {
		name string
		addr Address
		opts Options
	}{
		{"11-bit identifier out of range", Address{TxID: 0x800, RxID: 0x7E8}, Options{}},
		{"29-bit identifier out of range", Address{TxID: 0x20000000, RxID: 1, Extended29: true}, Options{}},
		{"same identifier both ways", Address{TxID: 0x7E0, RxID: 0x7E0}, Options{}},
		{"normal fixed to ourselves", Address{Mode: NormalFixed, Source: 0x10, Target: 0x10}, Options{}},
		{"unknown mode", Address{Mode: 9, TxID: 1, RxID: 2}, Options{}},
		{"TxDL 10", tester, Options{TxDL: 10}},
		{"TxDL 65", tester, Options{TxDL: 65}},
		{"TxDL 4", tester, Options{TxDL: 4}},
		{"BRS on classic CAN", tester, Options{BRS: true}},
		{"reserved STmin", tester, Options{STmin: 0x80}},
		{"PadZero and PadByte", tester, Options{PadZero: true, PadByte: 0x55}},
		{"negative timeout", tester, Options{Timeouts: Timeouts{Cr: -1}}},
		{"negative MaxRecvLen", tester, Options{MaxRecvLen: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(bus, tt.addr, tt.opts)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Dial: %v, want ErrInvalid", err)
			}
			if c != nil {
				t.Fatal("Dial returned a Conn with its error")
			}
		})
	}
	if _, err := Dial(nil, tester, Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Dial(nil bus): %v, want ErrInvalid", err)
	}
	// Extended addressing may share identifiers: the address bytes differ.
	c, err := Dial(bus, Address{Mode: Extended, TxID: 0x600, RxID: 0x600, Source: 1, Target: 2}, Options{})
	if err != nil {
		t.Fatalf("extended addressing on one identifier: %v", err)
	}
	c.Close()
}
