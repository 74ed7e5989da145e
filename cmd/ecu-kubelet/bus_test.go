package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// run executes ecu-kubelet in-process with args.
func run(ctx context.Context, stdout, stderr io.Writer, args ...string) error {
	root := newRootCmd()
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

// dump is a running "bus dump".
type dump struct {
	lines  chan string // stdout, line by line; closed when the command ends
	done   chan error
	cancel context.CancelFunc
}

// startDump runs "bus dump" with args and returns once it has subscribed.
func startDump(t *testing.T, args ...string) *dump {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	d := &dump{lines: make(chan string, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		err := run(ctx, outW, errW, append([]string{"bus", "dump"}, args...)...)
		outW.Close()
		errW.Close()
		d.done <- err
	}()
	go func() {
		defer close(d.lines)
		s := bufio.NewScanner(outR)
		for s.Scan() {
			d.lines <- s.Text()
		}
	}()
	status := bufio.NewScanner(errR)
	if !status.Scan() {
		cancel()
		t.Fatalf("bus dump ended before subscribing: %v", <-d.done)
	}
	if !strings.HasPrefix(status.Text(), "dumping ") {
		t.Fatalf("bus dump said %q, want its status line", status.Text())
	}
	go io.Copy(io.Discard, errR)
	t.Cleanup(func() {
		cancel()
		for range d.lines {
		}
	})
	return d
}

// stop interrupts the dump and returns its error.
func (d *dump) stop() error {
	d.cancel()
	return <-d.done
}

func (d *dump) line(t *testing.T) string {
	t.Helper()
	l, ok := <-d.lines
	if !ok {
		t.Fatalf("bus dump ended: %v", <-d.done)
	}
	return l
}

func send(t *testing.T, busURL, frame string) {
	t.Helper()
	if err := run(context.Background(), io.Discard, io.Discard, "bus", "send", "--bus", busURL, frame); err != nil {
		t.Fatalf("bus send %s: %v", frame, err)
	}
}

var logLine = regexp.MustCompile(`^\(\d{10}\.\d{6}\) (\S+) (\S+)$`)

// checkLines checks that the dump prints want, in order, for bus iface.
func checkLines(t *testing.T, d *dump, iface string, want ...string) {
	t.Helper()
	for _, w := range want {
		l := d.line(t)
		m := logLine.FindStringSubmatch(l)
		if m == nil || m[1] != iface || m[2] != w {
			t.Errorf("dump printed %q, want (TIME) %s %s", l, iface, w)
		}
	}
}

// TestBusDumpRecordsWhatBusSendSends runs both commands on one mem bus:
// the dump prints the frames its filter keeps, live, and records them as
// pcap and candump log.
func TestBusDumpRecordsWhatBusSendSends(t *testing.T) {
	dir := t.TempDir()
	pcapPath, logPath := filepath.Join(dir, "x.pcap"), filepath.Join(dir, "x.log")
	// The bus name is the test's own, and short enough for a candump log.
	busURL, iface := "mem://cli-dump?fd=true", "cli-dump"
	d := startDump(t, "--bus", busURL, "-w", pcapPath, "--log", logPath, "--filter", "7E8,18DA00F1:1FFF00FF")
	kept := []string{"7E8#0250030000000000", "18DA10F1##1AABBCCDDEEFF001122334455"}
	send(t, busURL, kept[0])
	send(t, busURL, "123#00") // filtered out: the next line is the FD frame
	send(t, busURL, kept[1])
	checkLines(t, d, iface, kept...)
	if err := d.stop(); err != nil {
		t.Fatalf("bus dump: %v", err)
	}

	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := canbus.NewLogReader(f)
	for _, w := range kept {
		rec, err := r.Read()
		if err != nil || rec.Frame.String() != w || rec.Interface != iface {
			t.Errorf("log file record %+v, %v; want %s on %s", rec, err, w, iface)
		}
	}
	if rec, err := r.Read(); err != io.EOF {
		t.Errorf("log file has more: %+v, %v", rec, err)
	}
	st, err := os.Stat(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(24 + 16 + 16 + 16 + 72); st.Size() != want {
		t.Errorf("pcap file has %d bytes, want %d (header, a can_frame and a canfd_frame)", st.Size(), want)
	}
}

// TestBusDumpOverSocketcand dumps a bus served by socketcand, as a second
// process would watch the simulator's bus.
func TestBusDumpOverSocketcand(t *testing.T) {
	bus, err := canbus.Open("mem://cli-socketcand?fd=true", canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	srv, err := canbus.NewSocketcandServer(map[string]canbus.Bus{"body": bus}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	busURL := "socketcand://" + ln.Addr().String() + "/body"

	d := startDump(t, "--bus", busURL)
	onBus := bus.Subscribe()
	// bus send returns once its frame is written to the server; wait for
	// the bus to carry it so that the order on the bus is defined.
	send(t, busURL, "7E0#0322F18900000000")
	<-onBus.Frames()
	if err := bus.Send(context.Background(), canbus.Frame{ID: 0x7E8, Len: 3, Data: [64]byte{0x03, 0x62, 0xF1}}); err != nil {
		t.Fatal(err)
	}
	send(t, busURL, "18DB33F1##0"+strings.Repeat("11", 64))
	checkLines(t, d, "body", "7E0#0322F18900000000", "7E8#0362F1", "18DB33F1##0"+strings.Repeat("11", 64))

	// Losing the server ends the dump with an error saying so.
	srv.Close()
	if err := <-served; !errors.Is(err, canbus.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := <-d.done; err == nil || !strings.Contains(err.Error(), "went away") {
		t.Errorf("bus dump after the server closed: %v, want an error saying the bus went away", err)
	}
}

func TestBusCommandErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bus", "send", "--bus", "mem://x", "123#0"}, "even number of hex digits"},
		{[]string{"bus", "send", "--bus", "mem://x", "800#00"}, "exceeds 0x7ff"},
		{[]string{"bus", "send", "123#00"}, `"bus" not set`},
		{[]string{"bus", "send", "--bus", "mem://x"}, "accepts 1 arg"},
		{[]string{"bus", "send", "--bus", "socketcand://127.0.0.1:1/body", "123#00"}, "connect"},
		{[]string{"bus", "dump", "--bus", "ftp://x"}, "unknown scheme"},
		{[]string{"bus", "dump", "--bus", "mem://x", "--filter", "XYZ"}, `--filter "XYZ"`},
		{[]string{"bus", "dump", "--bus", "mem://x", "--iface", "a b"}, "--iface"},
		{[]string{"bus", "dump", "--bus", "mem://x", "-w", "/nonexistent/x.pcap"}, "/nonexistent/x.pcap"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := run(context.Background(), io.Discard, io.Discard, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseFilters(t *testing.T) {
	tests := []struct {
		in   string
		want []canbus.Filter
	}{
		{"", nil},
		{"7E0,7E8", []canbus.Filter{canbus.ExactFilter(0x7E0, false), canbus.ExactFilter(0x7E8, false)}},
		{"7E0:7F0", []canbus.Filter{{ID: 0x7E0, Mask: 0x7F0}}},
		{"18DAF110", []canbus.Filter{canbus.ExactFilter(0x18DAF110, true)}},
		{"00000123", []canbus.Filter{canbus.ExactFilter(0x123, true)}},
		{"800", []canbus.Filter{canbus.ExactFilter(0x800, true)}},
		{"18DA00F1:1FFF00FF", []canbus.Filter{{ID: 0x18DA00F1, Mask: 0x1FFF00FF, Extended: true}}},
	}
	for _, tt := range tests {
		got, err := parseFilters(tt.in)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%q: got %+v, want %+v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: filter %d is %+v, want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
	for _, bad := range []string{",", "7E0,", "G", "123456789", "20000000", "7E0:", "7E0:800", "7E0:x"} {
		if f, err := parseFilters(bad); err == nil {
			t.Errorf("%q accepted as %+v", bad, f)
		}
	}
}
