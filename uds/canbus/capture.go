package canbus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// FrameWriter records frames with their time of receipt. PcapWriter and
// LogWriter are FrameWriters.
type FrameWriter interface {
	WriteFrame(t time.Time, f Frame) error
}

// Record writes every frame of sub to each writer, stamped with the time
// Record took it from the subscription, until sub is closed (it returns
// nil) or ctx ends (it returns ctx's error). A writer's error stops it.
func Record(ctx context.Context, sub *Subscription, writers ...FrameWriter) error {
	for {
		select {
		case f, ok := <-sub.Frames():
			if !ok {
				return nil
			}
			t := time.Now()
			for _, w := range writers {
				if err := w.WriteFrame(t, f); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// The classic pcap file format with nanosecond timestamps, and the link
// type whose packets are Linux's struct can_frame and struct canfd_frame
// (tcpdump.org's LINKTYPE_CAN_SOCKETCAN).
const (
	pcapMagicNanos       = 0xA1B23C4D
	linkTypeCANSocketCAN = 227
	pcapSnapLen          = 65535
)

// PcapWriter writes frames as a pcap capture with link type
// LINKTYPE_CAN_SOCKETCAN (227), readable by tcpdump, Wireshark and tshark.
// Each packet is laid out as Linux's can_frame (16 bytes) or canfd_frame
// (72 bytes) with the identifier in network byte order: classic, remote and
// error frames as can_frame, CAN FD frames as canfd_frame with the FDF flag
// set, so that readers old (by size) and new (by flag) see them as FD.
type PcapWriter struct {
	w   io.Writer
	buf [16 + canfdMTU]byte // record header and packet
	pkt [canfdMTU]byte
}

// NewPcapWriter writes the pcap file header to w and returns a writer for
// the packets that follow.
func NewPcapWriter(w io.Writer) (*PcapWriter, error) {
	var h [24]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], pcapMagicNanos)
	le.PutUint16(h[4:], 2) // version 2.4
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], pcapSnapLen)
	le.PutUint32(h[20:], linkTypeCANSocketCAN)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("canbus: writing pcap header: %w", err)
	}
	return &PcapWriter{w: w}, nil
}

// WriteFrame writes f as one packet received at t, in a single Write.
func (p *PcapWriter) WriteFrame(t time.Time, f Frame) error {
	if err := f.Validate(); err != nil {
		return err
	}
	secs := t.Unix()
	if secs < 0 || secs > 0xFFFFFFFF {
		return fmt.Errorf("canbus: time %v is outside the pcap format's range (1970 to 2106)", t)
	}
	pkt := encodeSocketCAN(&f, &p.pkt, binary.BigEndian)
	n := len(pkt)
	b := p.buf[:16+n]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(secs))
	le.PutUint32(b[4:], uint32(t.Nanosecond()))
	le.PutUint32(b[8:], uint32(n))
	le.PutUint32(b[12:], uint32(n))
	copy(b[16:], pkt)
	if _, err := p.w.Write(b); err != nil {
		return fmt.Errorf("canbus: writing pcap packet: %w", err)
	}
	return nil
}

// maxIfaceLen is the longest interface name in a candump log (can-utils
// reads it with %21s).
const maxIfaceLen = 21

// LogWriter writes frames as candump log text (candump -l, read by
// canplayer and log2asc), one line per frame:
//
//	(1436509052.249713) vcan0 123#DEADBEEF
type LogWriter struct {
	w     io.Writer
	iface string
	buf   []byte
}

// NewLogWriter returns a writer of candump log lines naming interface
// iface, which must have 1 to 21 printable characters and no spaces.
func NewLogWriter(w io.Writer, iface string) (*LogWriter, error) {
	if err := checkIface(iface); err != nil {
		return nil, err
	}
	return &LogWriter{w: w, iface: iface}, nil
}

func checkIface(iface string) error {
	if iface == "" || len(iface) > maxIfaceLen {
		return fmt.Errorf("canbus: candump interface name %q must have 1 to %d characters", iface, maxIfaceLen)
	}
	for _, c := range []byte(iface) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("canbus: candump interface name %q has a space or a non-printable character", iface)
		}
	}
	return nil
}

// WriteFrame writes one line for f received at t, with microseconds as
// candump writes them.
func (l *LogWriter) WriteFrame(t time.Time, f Frame) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if t.Unix() < 0 {
		return fmt.Errorf("canbus: time %v is before 1970, which a candump log cannot hold", t)
	}
	b := append(l.buf[:0], '(')
	secs := strconv.AppendInt(nil, t.Unix(), 10)
	for range 10 - len(secs) {
		b = append(b, '0')
	}
	b = append(b, secs...)
	us := strconv.AppendInt(nil, int64(t.Nanosecond()/1000), 10)
	b = append(b, "."...)
	for range 6 - len(us) {
		b = append(b, '0')
	}
	b = append(b, us...)
	b = append(b, ") "...)
	b = append(b, l.iface...)
	b = append(b, ' ')
	b = append(b, f.String()...)
	b = append(b, '\n')
	l.buf = b
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("canbus: writing candump log: %w", err)
	}
	return nil
}

// LogRecord is one frame of a candump log.
type LogRecord struct {
	Time      time.Time
	Interface string
	Frame     Frame
}

// maxLogLine bounds one line of a candump log. A CAN FD line has at most
// 1 + 20 + 1 + 9 + 2 + 21 + 1 + 139 + 2 = 196 bytes; the rest is room for
// padding of the interface name and for comment lines.
const maxLogLine = 1024

// LogReader reads candump log text as written by candump -l or LogWriter.
// As in can-utils, lines that do not start with '(' are comments and
// skipped (candump writes DROPCOUNT lines into its logs). A trailing T or
// R (candump -x: transmitted or received) is accepted and not kept. CAN XL
// frames and the _DLC suffix of classic frames with a DLC above 8 are
// rejected.
type LogReader struct {
	s    *bufio.Scanner
	line int
}

// NewLogReader returns a reader of the candump log r.
func NewLogReader(r io.Reader) *LogReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 256), maxLogLine)
	return &LogReader{s: s}
}

// Read returns the next record, or io.EOF after the last. Errors wrap
// ErrMalformed (or ErrLength etc. for frames that cannot exist) and name
// the line.
func (r *LogReader) Read() (LogRecord, error) {
	for r.s.Scan() {
		r.line++
		line := r.s.Bytes()
		if len(line) == 0 || line[0] != '(' {
			continue
		}
		rec, err := parseLogLine(line)
		if err != nil {
			return LogRecord{}, fmt.Errorf("canbus: candump log line %d: %w", r.line, err)
		}
		return rec, nil
	}
	if err := r.s.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return LogRecord{}, fmt.Errorf("canbus: candump log line %d is longer than %d bytes: %w", r.line+1, maxLogLine, ErrMalformed)
		}
		return LogRecord{}, fmt.Errorf("canbus: reading candump log: %w", err)
	}
	return LogRecord{}, io.EOF
}

// parseLogLine decodes "(SECS.FRACTION) IFACE FRAME [T|R]".
func parseLogLine(line []byte) (LogRecord, error) {
	var rec LogRecord
	end := bytes.IndexByte(line, ')')
	if end < 0 {
		return rec, fmt.Errorf("%q has no ')' after the timestamp: %w", quoteStart(line), ErrMalformed)
	}
	secs, frac, ok := bytes.Cut(line[1:end], []byte{'.'})
	if !ok || (len(frac) != 6 && len(frac) != 9) || !allDigits(secs) || !allDigits(frac) {
		return rec, fmt.Errorf("timestamp %q is not SECONDS.FRACTION with 6 or 9 decimals: %w", line[:end+1], ErrMalformed)
	}
	s, err := strconv.ParseInt(string(secs), 10, 64)
	if err != nil || s > 1<<40 {
		return rec, fmt.Errorf("timestamp %q is out of range: %w", line[:end+1], ErrMalformed)
	}
	ns, _ := strconv.ParseInt(string(frac), 10, 64)
	if len(frac) == 6 {
		ns *= 1000
	}
	rec.Time = time.Unix(s, ns)
	rest := line[end+1:]
	if len(rest) == 0 || rest[0] != ' ' {
		return rec, fmt.Errorf("%q lacks a space after the timestamp: %w", quoteStart(line), ErrMalformed)
	}
	fields := bytes.FieldsFunc(rest, func(r rune) bool { return r == ' ' })
	switch {
	case len(fields) == 3 && (string(fields[2]) == "T" || string(fields[2]) == "R"):
	case len(fields) != 2:
		return rec, fmt.Errorf("%q is not (TIME) INTERFACE FRAME [T|R]: %w", quoteStart(line), ErrMalformed)
	}
	rec.Interface = string(fields[0])
	if err := checkIface(rec.Interface); err != nil {
		return rec, fmt.Errorf("%w: %w", err, ErrMalformed)
	}
	if rec.Frame, err = ParseFrame(string(fields[1])); err != nil {
		return rec, err
	}
	return rec, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
