//go:build linux

package canbus_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/sim/vcanvm"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// watchdog bounds every wait in the vcan tests so that a lost frame fails
// the test with a message instead of hanging the VM. It is not a timing
// assertion: on vcan every frame arrives within microseconds.
const watchdog = 20 * time.Second

var (
	classicURL = "socketcan://" + vcanvm.ClassicIface
	fdURL      = "socketcan://" + vcanvm.FDIface + "?fd=true"
)

// TestVcan runs the socketcan transport against the kernel's vcan and
// can-utils in the microVM: one VM boot for all the subtests.
func TestVcan(t *testing.T) {
	if vcanvm.Run(t) {
		return
	}
	t.Run("CansendToBus", func(t *testing.T) {
		testCansendToBus(t, classicURL, vcanvm.ClassicIface, classicFrames)
	})
	t.Run("BusToCandump", func(t *testing.T) {
		testBusToCandump(t, classicURL, vcanvm.ClassicIface, classicFrames)
	})
	t.Run("FDCansendToBus", func(t *testing.T) {
		testCansendToBus(t, fdURL, vcanvm.FDIface, fdFrames)
	})
	t.Run("FDBusToCandump", func(t *testing.T) {
		testBusToCandump(t, fdURL, vcanvm.FDIface, fdFrames)
	})
	t.Run("AttachmentsSeeEachFrameOnce", testAttachmentsSeeEachFrameOnce)
	t.Run("ClassicAttachmentOnFDInterfaceSkipsFDFrames", testClassicAttachmentSkipsFDFrames)
	t.Run("OpenErrors", testOpenErrors)
	t.Run("Close", testClose)
}

// classicFrames covers 11- and 29-bit identifiers, every length, remote
// frames with and without a length.
var classicFrames = []string{
	"123#DEADBEEF",
	"000#",
	"7FF#0102030405060708",
	"456#11",
	"00000000#",
	"00000123#A5",
	"1FFFFFFF#1122334455667788",
	"18DAF110#0210030000000000",
	"123#R",
	"7E0#R8",
	"12345678#R",
}

// fdFrames covers every CAN FD length with the BRS and ESI flags and both
// identifier sizes, and classic frames on the same FD bus.
var fdFrames = func() []string {
	var fs []string
	for i, n := range []int{0, 1, 7, 8, 12, 16, 20, 24, 32, 48, 64} {
		id := fmt.Sprintf("%03X", 0x100+i)
		if i%2 == 1 {
			id = fmt.Sprintf("%08X", 0x18DA0000+i)
		}
		var data strings.Builder
		for j := range n {
			fmt.Fprintf(&data, "%02X", (j*7+i)&0xFF)
		}
		fs = append(fs, fmt.Sprintf("%s##%d%s", id, i%4, data.String()))
	}
	return append(fs, "321#CAFE", "7FF#R")
}()

func parse(t *testing.T, s string) canbus.Frame {
	t.Helper()
	f, err := canbus.ParseFrame(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func open(t *testing.T, url string) canbus.Bus {
	t.Helper()
	b, err := canbus.Open(url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func send(t *testing.T, b canbus.Bus, f canbus.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	if err := b.Send(ctx, f); err != nil {
		t.Fatalf("Send(%v): %v", f, err)
	}
}

func next(t *testing.T, s *canbus.Subscription) canbus.Frame {
	t.Helper()
	select {
	case f, ok := <-s.Frames():
		if !ok {
			t.Fatal("subscription closed")
		}
		return f
	case <-time.After(watchdog):
		t.Fatalf("no frame within %v", watchdog)
	}
	panic("unreachable")
}

func testCansendToBus(t *testing.T, url, iface string, frames []string) {
	sub := open(t, url).Subscribe()
	for _, s := range frames {
		want := parse(t, s)
		if out, err := exec.Command("cansend", iface, s).CombinedOutput(); err != nil {
			t.Fatalf("cansend %s %s: %v: %s", iface, s, err, out)
		}
		if got := next(t, sub); got != want {
			t.Errorf("cansend %s: received %v", s, got)
		}
	}
}

func testBusToCandump(t *testing.T, url, iface string, frames []string) {
	b := open(t, url)
	dump := startCandump(t, b, iface)
	for _, s := range frames {
		send(t, b, parse(t, s))
	}
	for _, s := range frames {
		want := parse(t, s)
		line := dump.next(t)
		got, err := canbus.ParseFrame(line)
		if err != nil || got != want {
			t.Errorf("sent %v, candump printed %q (%v)", want, line, err)
		}
	}
}

// candump runs `candump -L IFACE` and hands out the frames it prints, in
// candump's compact notation.
type candump struct {
	lines chan string
}

// syncFrame tells startCandump that candump is listening. Test frames
// never use its identifier.
var syncFrame = canbus.Frame{ID: 0x1FFFFFFE, Extended: true, Len: 4, Data: [64]byte{'s', 'y', 'n', 'c'}}

// startCandump starts candump and waits until it prints frames: candump
// gives no sign that its socket is bound, so b sends a sync frame until one
// comes out. The sync frames still in flight are dropped from the output.
func startCandump(t *testing.T, b canbus.Bus, iface string) *candump {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "candump", "-L", iface)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	d := &candump{lines: make(chan string, 1024)}
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// (1700000000.123456) vcan0 123#DEADBEEF
			fields := strings.Fields(sc.Text())
			if len(fields) == 3 && fields[2] != syncFrame.String() {
				d.lines <- fields[2]
			} else if len(fields) == 3 {
				d.lines <- "sync"
			}
		}
	}()
	deadline := time.Now().Add(watchdog)
	for {
		send(t, b, syncFrame)
		select {
		case l := <-d.lines:
			if l != "sync" {
				t.Fatalf("candump printed %q before any test frame was sent", l)
			}
			return d
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("candump -L %s printed nothing within %v", iface, watchdog)
		}
	}
}

func (d *candump) next(t *testing.T) string {
	t.Helper()
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatal("candump exited")
			}
			if l != "sync" {
				return l
			}
		case <-time.After(watchdog):
			t.Fatalf("candump printed nothing within %v", watchdog)
		}
	}
}

// Two attachments to one interface: each sees its own frames and the
// other's, each exactly once and in the order they were sent (the marker
// frame sent next must be the very next frame).
func testAttachmentsSeeEachFrameOnce(t *testing.T) {
	for _, c := range []struct{ url, frame string }{
		{classicURL, "123#0102"},
		{fdURL, "123##1" + strings.Repeat("AB", 64)},
	} {
		t.Run(c.url, func(t *testing.T) {
			a, b := open(t, c.url), open(t, c.url)
			subA, subB := a.Subscribe(), b.Subscribe()
			subA7FF := a.Subscribe(canbus.ExactFilter(0x7FF, false))
			f, marker := parse(t, c.frame), parse(t, "7FF#FF")
			send(t, a, f)
			send(t, b, marker)
			for _, s := range []struct {
				name string
				sub  *canbus.Subscription
			}{{"sender", subA}, {"other attachment", subB}} {
				if got := next(t, s.sub); got != f {
					t.Errorf("%s: first frame %v, want %v", s.name, got, f)
				}
				if got := next(t, s.sub); got != marker {
					t.Errorf("%s: second frame %v, want the marker %v (was the first delivered twice?)", s.name, got, marker)
				}
			}
			if got := next(t, subA7FF); got != marker {
				t.Errorf("filtered subscription got %v, want only %v", got, marker)
			}
		})
	}
}

// The kernel gives CAN FD frames only to sockets that asked for them, so an
// attachment opened without fd=true sees only the classic frames.
func testClassicAttachmentSkipsFDFrames(t *testing.T) {
	classic := open(t, "socketcan://"+vcanvm.FDIface).Subscribe()
	fd := open(t, fdURL)
	marker := parse(t, "7FF#01")
	send(t, fd, parse(t, "123##1DEADBEEF"))
	send(t, fd, marker)
	if got := next(t, classic); got != marker {
		t.Fatalf("classic attachment received %v, want only the classic %v", got, marker)
	}
}

func testOpenErrors(t *testing.T) {
	tests := []struct {
		url     string
		wantErr error  // or nil
		wantMsg string // part of the message
	}{
		{"socketcan://nosuch0", canbus.ErrNoInterface, "ip link add dev nosuch0 type vcan"},
		{"socketcan://" + vcanvm.ClassicIface + "?fd=true", nil, "carries only classic CAN (MTU 16)"},
		{"socketcan://lo", nil, "not a CAN interface"},
	}
	for _, tt := range tests {
		b, err := canbus.Open(tt.url, canbus.Config{})
		if err == nil {
			b.Close()
			t.Errorf("Open(%s) succeeded", tt.url)
			continue
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("Open(%s): %v; want %v saying %q", tt.url, err, tt.wantErr, tt.wantMsg)
		}
	}
	b := open(t, classicURL)
	if err := b.Send(context.Background(), parse(t, "123##0")); !errors.Is(err, canbus.ErrFlags) {
		t.Errorf("FD frame on a classic bus: %v; want ErrFlags", err)
	}
	if err := b.Send(context.Background(), canbus.Frame{Error: true, ID: 4, Len: 8}); !errors.Is(err, canbus.ErrFlags) {
		t.Errorf("sending an error frame: %v; want ErrFlags", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Send(ctx, parse(t, "123#")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context: %v; want context.Canceled", err)
	}
}

func testClose(t *testing.T) {
	for _, url := range []string{classicURL, fdURL} {
		b, err := canbus.Open(url, canbus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		sub := b.Subscribe()
		if err := b.Close(); err != nil {
			t.Errorf("%s: Close: %v", url, err)
		}
		if _, ok := <-sub.Frames(); ok {
			t.Errorf("%s: subscription still open after Close", url)
		}
		if err := b.Send(context.Background(), parse(t, "123#")); !errors.Is(err, canbus.ErrClosed) {
			t.Errorf("%s: Send after Close: %v; want ErrClosed", url, err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("%s: second Close: %v", url, err)
		}
	}
}
