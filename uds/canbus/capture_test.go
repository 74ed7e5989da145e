package canbus

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// captureFrames covers every kind of frame a capture must tell apart.
var captureFrames = []string{
	"123#DEADBEEF",
	"7FF#",
	"18DAF110#0210030000000000",
	"00000001#01",
	"7E0#R",
	"7E0#R8",
	"18DB33F1#R3",
	"20000004#0004000000000000",
	"20000040#",
	"123##0",
	"123##100112233445566778899AABBCCDDEEFF",
	"18DAF110##3" + strings.Repeat("A5", 64),
	"7E8##2" + strings.Repeat("01", 12),
}

// TestPcapWriterLayout checks the file header and the packet layout byte
// by byte against LINKTYPE_CAN_SOCKETCAN: big-endian identifier with the
// EFF/RTR/ERR flags, length, FD flags with FDF, two reserved bytes, and
// the payload padded to Linux's can_frame or canfd_frame.
func TestPcapWriterLayout(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := "4d3cb2a1" + "0200" + "0400" + "00000000" + "00000000" + "ffff0000" + "e3000000"
	if got := hex.EncodeToString(buf.Bytes()); got != wantHeader {
		t.Fatalf("header %s, want %s", got, wantHeader)
	}
	stamp := time.Unix(0x01020304, 0x05060708)
	pad := func(n int) string { return strings.Repeat("00", n) }
	tests := []struct {
		frame  string
		packet string
	}{
		{"123#DEADBEEF", "00000123" + "04" + "00" + "0000" + "deadbeef" + pad(4)},
		{"18DAF110#01", "98daf110" + "01" + "00" + "0000" + "01" + pad(7)},
		{"7E0#R8", "400007e0" + "08" + "00" + "0000" + pad(8)},
		{"18DB33F1#R3", "d8db33f1" + "03" + "00" + "0000" + pad(8)},
		{"20000004#0004", "20000004" + "08" + "00" + "0000" + "0004" + pad(6)},
		{"123##0AABB", "00000123" + "02" + "04" + "0000" + "aabb" + pad(62)},
		{"18DAF110##3" + strings.Repeat("A5", 12), "98daf110" + "0c" + "07" + "0000" + strings.Repeat("a5", 12) + pad(52)},
	}
	for _, tt := range tests {
		buf.Reset()
		if err := w.WriteFrame(stamp, mustFrame(t, tt.frame)); err != nil {
			t.Fatal(err)
		}
		n := len(tt.packet) / 2
		rec := "04030201" + "08070605" + hex.EncodeToString([]byte{byte(n), 0, 0, 0, byte(n), 0, 0, 0})
		if got := hex.EncodeToString(buf.Bytes()); got != rec+tt.packet {
			t.Errorf("%s:\n got %s\nwant %s", tt.frame, got, rec+tt.packet)
		}
	}
	for _, bad := range []struct {
		t time.Time
		f Frame
	}{
		{stamp, Frame{ID: 0x800}},
		{time.Unix(-1, 0), Frame{}},
		{time.Unix(1<<32, 0), Frame{}},
	} {
		if err := w.WriteFrame(bad.t, bad.f); err == nil {
			t.Errorf("WriteFrame(%v, %v) succeeded", bad.t, bad.f)
		}
	}
}

// TestPcapDecodedByTshark has Wireshark's own dissector read a capture:
// every frame must decode with its identifier, length, flags and FD-ness,
// and nothing may be marked malformed or draw an expert warning.
func TestPcapDecodedByTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("SKIP: tshark is not installed (apt-get install tshark); the capture is not checked against Wireshark")
	}
	path := filepath.Join(t.TempDir(), "x.pcap")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewPcapWriter(file)
	if err != nil {
		t.Fatal(err)
	}
	var frames []Frame
	for i, s := range captureFrames {
		f := mustFrame(t, s)
		frames = append(frames, f)
		if err := w.WriteFrame(time.Unix(1436509052, int64(i)*1000), f); err != nil {
			t.Fatal(err)
		}
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	fields := []string{"can.id", "can.len", "can.flags.xtd", "can.flags.rtr",
		"can.flags.err", "canfd.flags.brs", "canfd.flags.esi", "_ws.malformed", "_ws.expert"}
	args := []string{"-r", path, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark decoded %d packets, want %d:\n%s", len(lines), len(frames), out)
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	for i, f := range frames {
		got := strings.Split(lines[i], "|")
		if len(got) != len(fields) {
			t.Fatalf("packet %d: %q has %d fields, want %d", i+1, lines[i], len(got), len(fields))
		}
		v := map[string]string{}
		for j, name := range fields {
			v[name] = got[j]
		}
		// Only the CAN FD dissector has the BRS field, in every
		// Wireshark version (the protocol column's field name is not).
		if decodedFD := v["canfd.flags.brs"] != ""; decodedFD != f.FD {
			t.Errorf("%v: decoded as CAN FD: %v, want %v", f, decodedFD, f.FD)
		}
		wantLen := int(f.Len)
		if f.Error {
			wantLen = 8
		}
		if n, _ := strconv.Atoi(v["can.len"]); n != wantLen {
			t.Errorf("%v: can.len %q, want %d", f, v["can.len"], wantLen)
		}
		if v["_ws.malformed"] != "" || v["_ws.expert"] != "" {
			t.Errorf("%v: tshark marks malformed %q expert %q", f, v["_ws.malformed"], v["_ws.expert"])
		}
		if f.Error {
			if v["can.flags.err"] != "1" {
				t.Errorf("%v: can.flags.err %q, want 1", f, v["can.flags.err"])
			}
			continue
		}
		if id, err := strconv.ParseUint(v["can.id"], 0, 32); err != nil || uint32(id) != f.ID {
			t.Errorf("%v: can.id %q, want %#x", f, v["can.id"], f.ID)
		}
		if v["can.flags.xtd"] != flag(f.Extended) {
			t.Errorf("%v: can.flags.xtd %q", f, v["can.flags.xtd"])
		}
		if f.FD {
			if v["canfd.flags.brs"] != flag(f.BRS) || v["canfd.flags.esi"] != flag(f.ESI) {
				t.Errorf("%v: brs %q esi %q", f, v["canfd.flags.brs"], v["canfd.flags.esi"])
			}
		} else if v["can.flags.rtr"] != flag(f.RTR) || v["can.flags.err"] != "0" {
			t.Errorf("%v: rtr %q err %q", f, v["can.flags.rtr"], v["can.flags.err"])
		}
	}
}

func TestLogWriterFormat(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewLogWriter(&buf, "vcan0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t time.Time
		f string
	}{
		{time.Unix(1436509052, 249713999), "123#DEADBEEF"},
		{time.Unix(5, 1000), "18DAF110##1AABB"},
		{time.Unix(1436509052, 0), "20000004#0004000000000000"},
		{time.Unix(1436509052, 0), "7E0#R8"},
	} {
		if err := w.WriteFrame(c.t, mustFrame(t, c.f)); err != nil {
			t.Fatal(err)
		}
	}
	want := "(1436509052.249713) vcan0 123#DEADBEEF\n" +
		"(0000000005.000001) vcan0 18DAF110##1AABB\n" +
		"(1436509052.000000) vcan0 20000004#0004000000000000\n" +
		"(1436509052.000000) vcan0 7E0#R8\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	for _, iface := range []string{"", "a b", "twenty-two-characters!", "tab\t"} {
		if _, err := NewLogWriter(io.Discard, iface); err == nil {
			t.Errorf("interface name %q accepted", iface)
		}
	}
}

// TestLogRoundTrip writes every kind of frame and reads it back.
func TestLogRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewLogWriter(&buf, "body")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 123456000)
	for i, s := range captureFrames {
		if err := w.WriteFrame(base.Add(time.Duration(i)*time.Millisecond), mustFrame(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	r := NewLogReader(&buf)
	for i, s := range captureFrames {
		rec, err := r.Read()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want := LogRecord{Time: base.Add(time.Duration(i) * time.Millisecond), Interface: "body", Frame: mustFrame(t, s)}
		if !rec.Time.Equal(want.Time) || rec.Interface != want.Interface || rec.Frame != want.Frame {
			t.Errorf("record %d: got %+v, want %+v", i, rec, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
}

// TestLogReaderReadsCandump reads what can-utils writes: padded interface
// names, nanosecond timestamps, T/R markers and DROPCOUNT lines.
func TestLogReaderReadsCandump(t *testing.T) {
	log := "(1436509052.249713) vcan0 123#DEADBEEF\n" +
		"DROPCOUNT: dropped 3 CAN frames on 'vcan0' socket (total drops 3)\n" +
		"\n" +
		"(1436509052.249713123)  can1 12345678#R T\n" +
		"(0000000001.000000) vcan10 7E8##3AABB R\r\n"
	want := []LogRecord{
		{time.Unix(1436509052, 249713000), "vcan0", mustFrame(t, "123#DEADBEEF")},
		{time.Unix(1436509052, 249713123), "can1", mustFrame(t, "12345678#R")},
		{time.Unix(1, 0), "vcan10", mustFrame(t, "7E8##3AABB")},
	}
	r := NewLogReader(strings.NewReader(strings.ReplaceAll(log, "\r\n", "\n")))
	for i, w := range want {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !got.Time.Equal(w.Time) || got.Interface != w.Interface || got.Frame != w.Frame {
			t.Errorf("record %d: got %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
}

func TestLogReaderRejects(t *testing.T) {
	for _, line := range []string{
		"(1436509052.249713 vcan0 123#00",
		"(1436509052.2497) vcan0 123#00",
		"(1436509052) vcan0 123#00",
		"(14365x9052.249713) vcan0 123#00",
		"(.249713) vcan0 123#00",
		"(99999999999999999999.249713) vcan0 123#00",
		"(1436509052.249713)vcan0 123#00",
		"(1436509052.249713) vcan0",
		"(1436509052.249713) vcan0 123#00 X",
		"(1436509052.249713) vcan0 123#00 T extra",
		"(1436509052.249713) twenty-two-characters! 123#00",
		"(1436509052.249713) vcan0 123#0",
		"(1436509052.249713) vcan0 800#00",
		"(1436509052.249713) vcan0 123#001122334455667788",
		"(1436509052.249713) vcan0 123#11223344_E",
		"(1436509052.249713) vcan0 123#" + strings.Repeat("0", 1100),
	} {
		r := NewLogReader(strings.NewReader("# comment\n" + line + "\n"))
		rec, err := r.Read()
		if err == nil {
			t.Errorf("%q read as %+v", line, rec)
			continue
		}
		if !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: error %q does not name line 2", line, err)
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrIDRange) && !errors.Is(err, ErrLength) {
			t.Errorf("%q: error %v is not a typed frame or format error", line, err)
		}
	}
}

// TestRecordWritesEveryFrame records a subscription into both formats.
func TestRecordWritesEveryFrame(t *testing.T) {
	bus := testBus(t, "")
	sub := bus.Subscribe()
	for _, s := range captureFrames {
		if err := bus.Send(context.Background(), mustFrame(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	sub.Close() // Record drains what is queued, then returns
	var logBuf, pcapBuf bytes.Buffer
	lw, err := NewLogWriter(&logBuf, "body")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := NewPcapWriter(&pcapBuf)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := Record(context.Background(), sub, lw, pw); err != nil {
		t.Fatalf("Record: %v", err)
	}
	r := NewLogReader(&logBuf)
	pcapLen := 24
	for _, s := range captureFrames {
		rec, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Frame != mustFrame(t, s) || rec.Time.Before(before.Truncate(time.Microsecond)) {
			t.Errorf("recorded %+v for %s", rec, s)
		}
		pcapLen += 16 + 16
		if rec.Frame.FD {
			pcapLen += 72 - 16
		}
	}
	if pcapBuf.Len() != pcapLen {
		t.Errorf("pcap has %d bytes, want %d", pcapBuf.Len(), pcapLen)
	}
}

func TestRecordStops(t *testing.T) {
	bus := testBus(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Record(ctx, bus.Subscribe()); !errors.Is(err, context.Canceled) {
		t.Errorf("Record with an ended context = %v, want context.Canceled", err)
	}
	sub := bus.Subscribe()
	bus.Send(context.Background(), Frame{ID: 1})
	broken := errors.New("disk full")
	if err := Record(context.Background(), sub, failingWriter{broken}); !errors.Is(err, broken) {
		t.Errorf("Record with a failing writer = %v, want %v", err, broken)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) WriteFrame(time.Time, Frame) error { return w.err }

// FuzzLogReader feeds arbitrary text to the candump log reader: nothing may
// panic, every record must hold a valid frame, and writing the records
// back must read back the same (to the microsecond the writer keeps).
func FuzzLogReader(f *testing.F) {
	f.Add([]byte("(1436509052.249713) vcan0 123#DEADBEEF\n"))
	f.Add([]byte("(1436509052.249713123)  can1 12345678#R T\nDROPCOUNT: x\n(1.000000) a 7E8##3AABB R\n"))
	f.Add([]byte("(0000000000.000000) x 20000004#0004000000000000\n(1.000000) y 123#R8"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewLogReader(bytes.NewReader(data))
		var recs []LogRecord
		for {
			rec, err := r.Read()
			if err != nil {
				break
			}
			if err := rec.Frame.Validate(); err != nil {
				t.Fatalf("invalid frame %v read: %v", rec.Frame, err)
			}
			recs = append(recs, rec)
		}
		var buf bytes.Buffer
		for _, rec := range recs {
			w, err := NewLogWriter(&buf, rec.Interface)
			if err != nil {
				t.Fatalf("interface %q read but not writable: %v", rec.Interface, err)
			}
			if err := w.WriteFrame(rec.Time, rec.Frame); err != nil {
				t.Fatalf("record %+v read but not writable: %v", rec, err)
			}
		}
		back := NewLogReader(&buf)
		for _, want := range recs {
			got, err := back.Read()
			if err != nil {
				t.Fatalf("re-reading %+v: %v", want, err)
			}
			if got.Frame != want.Frame || got.Interface != want.Interface || !got.Time.Equal(want.Time.Truncate(time.Microsecond)) {
				t.Fatalf("re-read %+v, want %+v", got, want)
			}
		}
	})
}

// BenchmarkCaptureWriters measures the cost of recording one frame.
func BenchmarkCaptureWriters(b *testing.B) {
	const batch = 10000
	frames := []Frame{mustFrame(b, "7E8#0011223344556677"), mustFrame(b, "18DAF110##1"+strings.Repeat("A5", 64))}
	pw, err := NewPcapWriter(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	lw, err := NewLogWriter(io.Discard, "vcan0")
	if err != nil {
		b.Fatal(err)
	}
	for _, w := range []struct {
		name string
		w    FrameWriter
	}{{"pcap", pw}, {"log", lw}} {
		b.Run(w.name, func(b *testing.B) {
			now := time.Now()
			start := time.Now()
			for b.Loop() {
				for i := range batch {
					if err := w.w.WriteFrame(now, frames[i%2]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*batch), "ns/frame")
		})
	}
}
