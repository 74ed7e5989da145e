package isotp

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// t0 is the time the state machine tests start at; it is synctest's epoch,
// though nothing depends on that.
var t0 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// tester is the address of the side under test in most tests: a
// diagnostic tester sending on 0x7E0 and receiving the ECU's 0x7E8.
var tester = Address{TxID: 0x7E0, RxID: 0x7E8}

// payload returns n bytes counting up from start, so that any misplaced
// byte shows.
func payload(n int, start byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = start + byte(i)
	}
	return p
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// rep returns n copies of b.
func rep(b byte, n int) []byte { return []byte(strings.Repeat(string([]byte{b}), n)) }

// line writes a frame in candump notation; FD frames use the ## form with
// no flags.
func line(id string, fd bool, data ...[]byte) string {
	sep := "#"
	if fd {
		sep = "##0"
	}
	return id + sep + strings.ToUpper(hex.EncodeToString(cat(data...)))
}

func mustFrame(t testing.TB, s string) canbus.Frame {
	t.Helper()
	f, err := canbus.ParseFrame(s)
	if err != nil {
		t.Fatalf("test frame %q: %v", s, err)
	}
	return f
}

// fdPad fills data the way a sender must for CAN FD: frames over 8 bytes
// up to the next valid length, with 0xCC.
func fdPad(data []byte) []byte {
	if len(data) <= 8 {
		return data
	}
	return append(data, rep(0xCC, canbus.RoundFDLen(len(data))-len(data))...)
}

// cfLines writes, independently of the package's encoder, the consecutive
// frames that carry msg[sent:] for a sender with data length dl, normal
// addressing and no padding beyond what CAN FD requires.
func cfLines(id string, msg []byte, sent, dl int) []string {
	var out []string
	for sn, off := 1, sent; off < len(msg); sn++ {
		n := min(dl-1, len(msg)-off)
		out = append(out, line(id, dl > 8, fdPad(cat([]byte{0x20 | byte(sn&0xF)}, msg[off:off+n]))))
		off += n
	}
	return out
}

func mustLink(t testing.TB, a Address) link {
	t.Helper()
	l, err := a.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustConfig(t testing.TB, o Options) config {
	t.Helper()
	c, err := o.resolve()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// kindOf returns the Kind of err, 0 for nil, and fails on foreign errors.
func kindOf(t testing.TB, err error) Kind {
	t.Helper()
	if err == nil {
		return 0
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *isotp.Error", err)
	}
	return e.Kind
}
