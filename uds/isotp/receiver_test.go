package isotp

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// rxStep is one input to the receiver and what it must answer.
type rxStep struct {
	wait    time.Duration // time that passes before the input
	in      string        // a received frame in candump notation; empty: the timer is checked
	raw     *canbus.Frame // a received frame candump notation cannot write
	fc      string        // the flow control we must send
	msg     []byte        // the message we must deliver
	err     Kind          // a lost or refused message
	timer   Timer         // with err ErrTimeout: which timer
	ignored Kind          // an ignored frame
}

func runRx(t *testing.T, addr Address, opts Options, steps []rxStep) {
	t.Helper()
	r := newReceiver(mustLink(t, addr), mustConfig(t, opts))
	now := t0
	for i, st := range steps {
		now = now.Add(st.wait)
		var ev rxEvent
		switch {
		case st.raw != nil:
			ev = r.handleFrame(st.raw, now)
		case st.in != "":
			f := mustFrame(t, st.in)
			ev = r.handleFrame(&f, now)
		default:
			ev = r.expire(now)
		}
		in := st.in
		if st.raw != nil {
			in = st.raw.String()
		}
		if in == "" {
			in = fmt.Sprintf("timer at +%v", now.Sub(t0))
		}
		gotFC := ""
		if ev.sendFC {
			gotFC = ev.fc.String()
		}
		if gotFC != st.fc {
			t.Errorf("step %d (%s): flow control %q, want %q", i, in, gotFC, st.fc)
		}
		if !bytes.Equal(ev.msg, st.msg) || (ev.msg == nil) != (st.msg == nil) {
			t.Errorf("step %d (%s): message % X, want % X", i, in, ev.msg, st.msg)
		}
		if got := kindOf(t, ev.err); got != st.err {
			t.Errorf("step %d (%s): error %v, want kind %v", i, in, ev.err, st.err)
		} else if st.timer != 0 {
			var e *Error
			if errors.As(ev.err, &e); e.Timer != st.timer {
				t.Errorf("step %d (%s): timer %v, want %v", i, in, e.Timer, st.timer)
			}
		}
		if got := kindOf(t, ev.ignored); got != st.ignored {
			t.Errorf("step %d (%s): ignored %v, want kind %v", i, in, ev.ignored, st.ignored)
		}
		if r.active && cap(r.buf) > r.size {
			t.Errorf("step %d (%s): buffer capacity %d exceeds the announced %d bytes", i, in, cap(r.buf), r.size)
		}
	}
}

// cts writes our flow control "continue to send" as the tester sends it
// with default padding.
func cts(bs, stmin byte) string {
	return fmt.Sprintf("7E0#30%02X%02XCCCCCCCCCC", bs, stmin)
}

const ovflw = "7E0#320000CCCCCCCCCC"

// ffLine writes the first frame of msg from a sender with data length dl.
func ffLine(id string, msg []byte, dl int) string {
	if len(msg) > 0xFFF {
		n := len(msg)
		return line(id, dl > 8, []byte{0x10, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, msg[:dl-6])
	}
	return line(id, dl > 8, []byte{0x10 | byte(len(msg)>>8), byte(len(msg))}, msg[:dl-2])
}

// segmented is the whole reception of msg from a sender with data length
// dl by a receiver whose flow controls are fc with block size bs.
func segmented(msg []byte, dl int, bs byte, fc string) []rxStep {
	first := dl - 2
	if len(msg) > 0xFFF {
		first = dl - 6
	}
	steps := []rxStep{{in: ffLine("7E8", msg, dl), fc: fc}}
	cfs := cfLines("7E8", msg, first, dl)
	for i, cf := range cfs {
		st := rxStep{in: cf}
		switch {
		case i == len(cfs)-1:
			st.msg = msg
		case bs > 0 && (i+1)%int(bs) == 0:
			st.fc = fc
		}
		steps = append(steps, st)
	}
	return steps
}

func TestReceiver(t *testing.T) {
	p10, p10b := payload(10, 0), payload(10, 0x80)
	p16, p30, p33 := payload(16, 0), payload(30, 0), payload(33, 0)
	p37, p100, p288 := payload(37, 0), payload(100, 0), payload(0x120, 0)
	sf5 := payload(5, 0x40)

	tests := []struct {
		name  string
		addr  Address
		opts  Options
		steps []rxStep
	}{
		{name: "single frame", steps: []rxStep{
			{in: "7E8#051122334455", msg: []byte{0x11, 0x22, 0x33, 0x44, 0x55}},
		}},
		{name: "single frames in a row, padded", steps: []rxStep{
			{in: "7E8#051122334455CCCC", msg: []byte{0x11, 0x22, 0x33, 0x44, 0x55}},
			{in: "7E8#05AABBCCDDEE", msg: []byte{0xAA, 0xBB, 0xCC, 0xDD, 0xEE}},
		}},
		{name: "multi-frame", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "two multi-frame messages", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
			{in: line("7E8", false, []byte{0x10, 10}, p10b[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10b[6:]), msg: p10b},
		}},
		{name: "flow control carries our BS and STmin", opts: Options{BlockSize: 5, STmin: 2}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(5, 2)},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "flow control padded with PadByte", opts: Options{PadByte: 0x22, BlockSize: 5, STmin: 2}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: "7E0#3005022222222222"},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "flow control padded with zeros", opts: Options{PadZero: true}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: "7E0#3000000000000000"},
		}},
		{name: "flow control without padding", opts: Options{NoPadding: true}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: "7E0#300000"},
		}},
		{name: "block size 3 asks again after each block", opts: Options{BlockSize: 3, STmin: 5}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 30}, p30[:6]), fc: cts(3, 5)},
			{in: line("7E8", false, []byte{0x21}, p30[6:13])},
			{in: line("7E8", false, []byte{0x22}, p30[13:20])},
			{in: line("7E8", false, []byte{0x23}, p30[20:27]), fc: cts(3, 5)},
			{in: line("7E8", false, []byte{0x24}, p30[27:30]), msg: p30},
		}},
		{name: "block size 0 asks once", opts: Options{STmin: 5}, steps: segmented(p30, 8, 0, cts(0, 5))},
		{name: "overflow: first frame over MaxRecvLen", opts: Options{MaxRecvLen: 32}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 33}, p33[:6]), fc: ovflw, err: ErrOverflow},
			{in: line("7E8", false, []byte{0x21}, p33[6:13]), ignored: ErrUnexpected},
			{in: line("7E8", false, []byte{0x10, 32}, p33[:6]), fc: cts(0, 0)},
		}},
		{name: "overflow: escaped first frame over MaxRecvLen", opts: Options{MaxRecvLen: 32}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 0, 0, 0, 0, 33}, p33[:2]), fc: ovflw, err: ErrOverflow},
			{in: line("7E8", false, []byte{0x21}, p33[2:9]), ignored: ErrUnexpected},
			{in: line("7E8", false, []byte{0x10, 0, 0, 0, 0, 32}, p33[:2]), fc: cts(0, 0)},
		}},
		{name: "overflow: 4 GiB announced", steps: []rxStep{
			{in: "7E8#1000FFFFFFFF0102", fc: ovflw, err: ErrOverflow},
		}},
		{name: "overflow interrupting a reception", opts: Options{MaxRecvLen: 32}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x10, 33}, p33[:6]), fc: ovflw, err: ErrOverflow},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), ignored: ErrUnexpected},
		}},
		{name: "wrong sequence number abandons the message", opts: Options{BlockSize: 1}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(1, 0)},
			{in: line("7E8", false, []byte{0x22}, p10[6:]), err: ErrSequence},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), ignored: ErrUnexpected},
		}},
		{name: "N_Cr after the first flow control", opts: Options{Timeouts: Timeouts{Cr: 200 * time.Millisecond}}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{wait: 199 * time.Millisecond},
			{wait: time.Millisecond, err: ErrTimeout, timer: NCr},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), ignored: ErrUnexpected},
		}},
		{name: "N_Cr after the second flow control", opts: Options{BlockSize: 2, Timeouts: Timeouts{Cr: 200 * time.Millisecond}}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 50}, payload(6, 0)), fc: cts(2, 0)},
			{wait: 150 * time.Millisecond, in: line("7E8", false, []byte{0x21}, payload(7, 6))},
			{wait: 150 * time.Millisecond, in: line("7E8", false, []byte{0x22}, payload(7, 13)), fc: cts(2, 0)},
			{wait: 199 * time.Millisecond},
			{wait: time.Millisecond, err: ErrTimeout, timer: NCr},
		}},
		{name: "N_Cr is measured from the last frame", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 30}, p30[:6]), fc: cts(0, 0)},
			{wait: 900 * time.Millisecond, in: line("7E8", false, []byte{0x21}, p30[6:13])},
			{wait: 900 * time.Millisecond},
			{wait: 99 * time.Millisecond, in: line("7E8", false, []byte{0x22}, p30[13:20])},
			{wait: 999 * time.Millisecond},
			{wait: time.Millisecond, err: ErrTimeout, timer: NCr},
		}},
		{name: "recovery after N_Cr", opts: Options{Timeouts: Timeouts{Cr: 200 * time.Millisecond}}, steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{wait: 200 * time.Millisecond, err: ErrTimeout, timer: NCr},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), ignored: ErrUnexpected},
			{in: line("7E8", false, []byte{0x10, 10}, p10b[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10b[6:]), msg: p10b},
		}},
		{name: "first frame interrupting a reception", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x10, 10}, p10b[:6]), fc: cts(0, 0), err: ErrInterrupted},
			{in: line("7E8", false, []byte{0x21}, p10b[6:]), msg: p10b},
		}},
		{name: "single frame interrupting a reception, then recovery", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 16}, p16[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p16[6:13])},
			{in: line("7E8", false, []byte{0x05}, sf5), msg: sf5, err: ErrInterrupted},
			{in: line("7E8", false, []byte{0x22}, p16[13:]), ignored: ErrUnexpected},
			{in: line("7E8", false, []byte{0x10, 16}, p16[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p16[6:13])},
			{in: line("7E8", false, []byte{0x22}, p16[13:]), msg: p16},
		}},
		{name: "malformed frames leave a reception alone", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: "7E8#40", ignored: ErrMalformed},
			{in: "7E8#0011", ignored: ErrMalformed},
			{in: "7E8#1005", ignored: ErrMalformed},
			{in: "7E8#", ignored: ErrMalformed},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "flow controls are the sender's", steps: []rxStep{
			{in: "7E8#300000"},
		}},
		{name: "consecutive frame too short for the rest is ignored", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10[6:9]), ignored: ErrMalformed},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "consecutive frame shorter than RX_DL before the last is ignored", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 30}, p30[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p30[6:12]), ignored: ErrMalformed},
			{in: line("7E8", false, []byte{0x21}, p30[6:13])},
		}},
		{name: "last consecutive frame may be padded", steps: []rxStep{
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), fc: cts(0, 0)},
			{in: line("7E8", false, []byte{0x21}, p10[6:], []byte{0xAA, 0xAA, 0xAA}), msg: p10},
		}},
		{name: "4095 bytes", steps: segmented(payload(4095, 0), 8, 0, cts(0, 0))},
		{name: "4096 bytes: escaped first frame", steps: segmented(payload(4096, 0), 8, 0, cts(0, 0))},
		{name: "10000 bytes", opts: Options{MaxRecvLen: 11000}, steps: segmented(payload(10000, 0), 8, 0, cts(0, 0))},
		{name: "short classic first frame is tolerated", steps: []rxStep{
			{in: "7E8#10140102030405", fc: cts(0, 0)},
		}},
		{name: "first frame announcing what a single frame holds is ignored", steps: []rxStep{
			{in: "7E8#1007010203040506", ignored: ErrMalformed},
			{in: "7E8#1008010203040506", fc: cts(0, 0)},
		}},

		// CAN FD
		{name: "FD single frame over 8 bytes needs the escape", steps: []rxStep{
			{in: line("7E8", true, []byte{0x0B}, payload(11, 0)), ignored: ErrMalformed},
		}},
		{name: "FD single frame of 16 bytes without escape", steps: []rxStep{
			{in: line("7E8", true, []byte{0x05}, payload(5, 0), rep(0xCC, 10)), ignored: ErrMalformed},
		}},
		{name: "FD single frame 12 bytes", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 10}, payload(10, 0)), msg: payload(10, 0)},
		}},
		{name: "FD single frame 16 bytes", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 14}, payload(14, 0)), msg: payload(14, 0)},
		}},
		{name: "FD single frame 48 bytes", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 46}, payload(46, 0)), msg: payload(46, 0)},
		}},
		{name: "FD single frame 64 bytes", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 62}, payload(62, 0)), msg: payload(62, 0)},
		}},
		{name: "FD single frame 64 bytes with padding", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 60}, payload(60, 0), []byte{0xAA, 0xBB}), msg: payload(60, 0)},
		}},
		{name: "FD single frame of 8 bytes keeps the 4-bit length", steps: []rxStep{
			{in: line("7E8", true, []byte{0x07}, payload(7, 0)), msg: payload(7, 0)},
			{in: line("7E8", true, []byte{0x00, 0x06}, payload(6, 0)), ignored: ErrMalformed},
		}},
		{name: "FD single frame escape length beyond the frame", steps: []rxStep{
			{in: line("7E8", true, []byte{0x00, 11}, payload(10, 0)), ignored: ErrMalformed},
			{in: line("7E8", true, []byte{0x00, 0}, payload(10, 0)), ignored: ErrMalformed},
		}},
		{name: "FD multi-frame, RX_DL 12", opts: Options{BlockSize: 4, STmin: 5}, steps: segmented(p37, 12, 4, cts(4, 5))},
		{name: "FD multi-frame, RX_DL 32", opts: Options{BlockSize: 4, STmin: 5}, steps: segmented(p100, 32, 4, cts(4, 5))},
		{name: "FD multi-frame, RX_DL 64, escaped first frame", opts: Options{BlockSize: 2, STmin: 5}, steps: []rxStep{
			{in: line("7E8", true, []byte{0x10, 0, 0, 0, 0x01, 0x20}, p288[:58]), fc: cts(2, 5)},
			{in: line("7E8", true, []byte{0x21}, p288[58:121])},
			{in: line("7E8", true, []byte{0x22}, p288[121:184]), fc: cts(2, 5)},
			{in: line("7E8", true, []byte{0x23}, p288[184:247])},
			{in: line("7E8", true, []byte{0x24}, p288[247:288], rep(0xCC, 6)), msg: p288},
		}},
		{name: "FD multi-frame of 10000 bytes, RX_DL 64", opts: Options{MaxRecvLen: 10000}, steps: segmented(payload(10000, 0), 64, 0, cts(0, 0))},
		{name: "FD consecutive frame shorter than RX_DL is ignored", opts: Options{BlockSize: 4, STmin: 5}, steps: []rxStep{
			{in: line("7E8", true, []byte{0x10, 100}, p100[:30]), fc: cts(4, 5)},
			{in: line("7E8", true, []byte{0x21}, p100[30:61])},
			{in: line("7E8", true, []byte{0x22}, p100[61:80]), ignored: ErrMalformed},
			{in: line("7E8", true, []byte{0x23}, p100[80:100], rep(0xCC, 11)), err: ErrSequence},
		}},
		{name: "FD consecutive frame longer than RX_DL is ignored", steps: []rxStep{
			{in: line("7E8", true, []byte{0x10, 100}, p100[:10]), fc: cts(0, 0)},
			{in: line("7E8", true, []byte{0x21}, p100[10:25]), ignored: ErrMalformed},
			{in: line("7E8", true, []byte{0x21}, p100[10:21])},
		}},
		{name: "FD first frame of no valid length is ignored", steps: []rxStep{
			{raw: &canbus.Frame{ID: 0x7E8, FD: true, Len: 11, Data: [64]byte{0x10, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, ignored: ErrMalformed},
		}},
		{name: "frame longer than 64 bytes is ignored", steps: []rxStep{
			{raw: &canbus.Frame{ID: 0x7E8, FD: true, Len: 200}, ignored: ErrMalformed},
		}},

		// addressing
		{name: "extended addressing", addr: Address{Mode: Extended, TxID: 0x6F1, RxID: 0x612, Source: 0xF1, Target: 0x12}, steps: []rxStep{
			{in: line("612", false, []byte{0xF1, 0x10, 10}, p10[:5]), fc: "6F1#12300000CCCCCCCC"},
			{in: line("612", false, []byte{0x55, 0x21}, p10[5:])},
			{in: line("612", false, []byte{0xF1, 0x21}, p10[5:]), msg: p10},
			{in: line("612", false, []byte{0xF1, 0x06}, payload(6, 0)), msg: payload(6, 0)},
			{in: line("612", false, []byte{0xF1, 0x07}, payload(6, 0)), ignored: ErrMalformed},
			{in: "612#F1", ignored: ErrMalformed},
			{in: "612#"},
		}},
		{name: "mixed 11-bit addressing", addr: Address{Mode: Mixed, TxID: 0x700, RxID: 0x701, AddressExtension: 0x42}, steps: []rxStep{
			{in: line("701", false, []byte{0x42, 0x10, 10}, p10[:5]), fc: "700#42300000CCCCCCCC"},
			{in: line("701", false, []byte{0x42, 0x21}, p10[5:]), msg: p10},
		}},
		{name: "mixed 29-bit addressing", addr: Address{Mode: Mixed, Extended29: true, Source: 0xF1, Target: 0x10, AddressExtension: 0x42}, steps: []rxStep{
			{in: line("18CEF110", false, []byte{0x42, 0x10, 10}, p10[:5]), fc: "18CE10F1#42300000CCCCCCCC"},
			{in: line("18CEF110", false, []byte{0x42, 0x21}, p10[5:]), msg: p10},
		}},
		{name: "normal fixed addressing", addr: Address{Mode: NormalFixed, Source: 0xF1, Target: 0x10}, steps: []rxStep{
			{in: line("18DAF110", false, []byte{0x10, 10}, p10[:6]), fc: "18DA10F1#300000CCCCCCCCCC"},
			{in: line("18DAF110", false, []byte{0x21}, p10[6:]), msg: p10},
		}},
		{name: "FD FF_DLmin counts the address byte", addr: Address{Mode: Extended, TxID: 0x6F1, RxID: 0x612, Source: 0xF1, Target: 0x12}, steps: []rxStep{
			{in: line("612", true, []byte{0xF1, 0x10, 9}, payload(9, 0)), ignored: ErrMalformed},
			{in: line("612", true, []byte{0xF1, 0x10, 10}, payload(9, 0)), fc: "6F1#12300000CCCCCCCC"},
		}},
		{name: "functional addressing takes single frames only", addr: Address{TxID: 0x7DF, RxID: 0x7E8, Functional: true}, steps: []rxStep{
			{in: "7E8#023E00", msg: []byte{0x3E, 0x00}},
			{in: line("7E8", false, []byte{0x10, 10}, p10[:6]), ignored: ErrFunctional},
			{in: line("7E8", false, []byte{0x21}, p10[6:]), ignored: ErrUnexpected},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if addr == (Address{}) {
				addr = tester
			}
			runRx(t, addr, tt.opts, tt.steps)
		})
	}
}

// TestReceiverFlowControlAfterEachBlock checks, for block sizes 1 to 9 over
// a 4095-byte message, that a flow control follows exactly every BS-th
// consecutive frame but the last.
func TestReceiverFlowControlAfterEachBlock(t *testing.T) {
	msg := payload(4095, 0)
	for bs := byte(1); bs < 10; bs++ {
		t.Run(fmt.Sprint("BS ", bs), func(t *testing.T) {
			steps := segmented(msg, 8, bs, cts(bs, 2))
			fcs := 0
			for _, st := range steps {
				if st.fc != "" {
					fcs++
				}
			}
			cfs := len(steps) - 1
			if want := 1 + (cfs-1)/int(bs); fcs != want {
				t.Fatalf("script has %d flow controls, want %d", fcs, want)
			}
			runRx(t, tester, Options{BlockSize: bs, STmin: 2}, steps)
		})
	}
}

// TestReceiverBufferGrowsWithData defends the memory bound: a first frame
// alone allocates at most preallocMax, and the buffer never exceeds FF_DL.
func TestReceiverBufferGrowsWithData(t *testing.T) {
	r := newReceiver(mustLink(t, tester), mustConfig(t, Options{MaxRecvLen: 1 << 30}))
	f := mustFrame(t, "7E8#10003FFFFFFF0102")
	if ev := r.handleFrame(&f, t0); !ev.sendFC || ev.err != nil {
		t.Fatalf("first frame of 1 GiB: %+v", ev)
	}
	if cap(r.buf) > preallocMax {
		t.Fatalf("first frame allocated %d bytes, want at most %d", cap(r.buf), preallocMax)
	}
	var b strings.Builder
	b.WriteString("7E8#21")
	b.WriteString(strings.Repeat("AB", 7))
	cf := mustFrame(t, b.String())
	r.handleFrame(&cf, t0)
	if len(r.buf) != 9 {
		t.Fatalf("buffer holds %d bytes after FF and CF, want 9", len(r.buf))
	}
}

// TestReceiverEveryRXDL receives messages from senders of every TX_DL,
// with the last consecutive frame padded to 8 bytes or not.
func TestReceiverEveryRXDL(t *testing.T) {
	for _, dl := range []int{8, 12, 16, 20, 24, 32, 48, 64} {
		for _, padded := range []bool{false, true} {
			t.Run(fmt.Sprintf("RX_DL %d padded %v", dl, padded), func(t *testing.T) {
				for _, n := range []int{sfCapacity(dl, 0) + 1, dl, 2*dl + 5, 4095, 4096, 5000} {
					msg := payload(n, byte(n))
					steps := segmented(msg, dl, 0, cts(0, 0))
					if padded {
						steps[len(steps)-1].in = padTo8(steps[len(steps)-1].in)
					}
					runRx(t, tester, Options{}, steps)
				}
			})
		}
	}
}
