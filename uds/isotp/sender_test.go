package isotp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// txStep is one input to the sender and what it must answer. After the
// input the runner confirms every frame the sender transmits at once, as a
// bus with room in its queue would, until the sender waits or is done.
type txStep struct {
	wait    time.Duration // time that passes before the input
	send    []byte        // start sending this message
	confirm bool          // the bus confirms the frame the sender waits for
	slow    bool          // the bus does not confirm frames at once in this step
	in      string        // a received frame; with neither send nor in, the timer is checked
	sent    []string      // the frames transmitted, in candump notation
	done    bool          // the message is finished
	err     Kind          // with done: why it failed
	timer   Timer         // with err ErrTimeout: which timer
	ignored Kind          // a frame was ignored
}

func runTx(t *testing.T, addr Address, opts Options, steps []txStep) {
	t.Helper()
	s := newSender(mustLink(t, addr), mustConfig(t, opts))
	now := t0
	for i, st := range steps {
		now = now.Add(st.wait)
		var ev txEvent
		in := st.in
		switch {
		case st.send != nil:
			in = fmt.Sprintf("send %d bytes", len(st.send))
			ev = s.start(st.send)
		case st.confirm:
			in = "confirmation"
			ev = s.confirmed(now)
		case st.in != "":
			f := mustFrame(t, st.in)
			ev = s.handleFrame(&f, now)
		default:
			in = fmt.Sprintf("timer at +%v", now.Sub(t0))
			ev = s.expire(now)
		}
		var sent []string
		var ignored error
		for {
			if ev.err != nil && !ev.done {
				ignored = ev.err
			}
			if !ev.send {
				break
			}
			if err := ev.frame.Validate(); err != nil {
				t.Errorf("step %d (%s): invalid frame %v: %v", i, in, ev.frame, err)
			}
			sent = append(sent, ev.frame.String())
			if ev = s.transmitted(now); s.state == txConfirm && !st.slow {
				ev = s.confirmed(now)
			}
		}
		if !slices.Equal(sent, st.sent) {
			t.Errorf("step %d (%s): sent\n\t%s\nwant\n\t%s", i, in, strings.Join(sent, "\n\t"), strings.Join(st.sent, "\n\t"))
		}
		if ev.done != st.done {
			t.Errorf("step %d (%s): done %v, want %v", i, in, ev.done, st.done)
		}
		if got := kindOf(t, ev.err); ev.done && got != st.err {
			t.Errorf("step %d (%s): error %v, want kind %v", i, in, ev.err, st.err)
		} else if st.timer != 0 {
			var e *Error
			if errors.As(ev.err, &e); e.Timer != st.timer {
				t.Errorf("step %d (%s): timer %v, want %v", i, in, e.Timer, st.timer)
			}
		}
		if got := kindOf(t, ignored); got != st.ignored {
			t.Errorf("step %d (%s): ignored %v, want kind %v", i, in, ignored, st.ignored)
		}
		if st.done && s.busy() {
			t.Errorf("step %d (%s): still busy after done", i, in)
		}
	}
}

// fcIn writes a flow control from the ECU.
func fcIn(fs, bs, stmin byte) string { return fmt.Sprintf("7E8#3%X%02X%02X", fs, bs, stmin) }

// blocks is the whole classic transmission of msg to a receiver that
// answers every block of bs frames with a flow control of STmin 0.
func blocks(msg []byte, bs byte) []txStep {
	cfs := cfLines("7E0", msg, 6, 8)
	if len(msg) > 0xFFF {
		cfs = cfLines("7E0", msg, 2, 8)
	}
	cfs[len(cfs)-1] = padTo8(cfs[len(cfs)-1])
	steps := []txStep{{send: msg, sent: []string{ffLine("7E0", msg, 8)}}}
	for len(cfs) > 0 {
		n := len(cfs)
		if bs > 0 {
			n = min(n, int(bs))
		}
		steps = append(steps, txStep{in: fcIn(0, bs, 0), sent: cfs[:n], done: n == len(cfs)})
		cfs = cfs[n:]
	}
	return steps
}

// padTo8 pads a frame in candump notation with 0xCC up to 8 bytes.
func padTo8(frame string) string {
	head, data, _ := strings.Cut(frame, "#")
	head += "#"
	if strings.HasPrefix(data, "#") {
		head, data = head+data[:2], data[2:]
	}
	return head + data + strings.Repeat("CC", max(0, 8-len(data)/2))
}

func TestSender(t *testing.T) {
	p10, p10b, p20 := payload(10, 0), payload(10, 0x80), payload(20, 0)
	ms := time.Millisecond
	tests := []struct {
		name  string
		addr  Address
		opts  Options
		steps []txStep
	}{
		{name: "single frames without padding", opts: Options{NoPadding: true}, steps: []txStep{
			{send: payload(1, 1), sent: []string{"7E0#0101"}, done: true},
			{send: payload(6, 1), sent: []string{"7E0#06010203040506"}, done: true},
			{send: payload(7, 1), sent: []string{"7E0#0701020304050607"}, done: true},
		}},
		{name: "single frames padded with 0xCC", steps: []txStep{
			{send: payload(1, 1), sent: []string{"7E0#0101CCCCCCCCCCCC"}, done: true},
			{send: payload(3, 1), sent: []string{"7E0#03010203CCCCCCCC"}, done: true},
		}},
		{name: "single frame padded with PadByte", opts: Options{PadByte: 0xAA}, steps: []txStep{
			{send: payload(3, 1), sent: []string{"7E0#03010203AAAAAAAA"}, done: true},
		}},
		{name: "empty message", steps: []txStep{
			{send: []byte{}, done: true, err: ErrInvalid},
			{send: []byte{0x55}, sent: []string{"7E0#0155CCCCCCCCCCCC"}, done: true},
		}},
		{name: "small multi-frame", opts: Options{NoPadding: true}, steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{wait: 10 * ms},
			{in: fcIn(0, 8, 0), sent: []string{"7E0#2106070809"}, done: true},
		}},
		{name: "multi-frame padded", opts: Options{PadByte: 0x55}, steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: fcIn(0, 8, 0), sent: []string{"7E0#2106070809555555"}, done: true},
		}},
		{name: "two multi-frame messages", steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: fcIn(0, 8, 0), sent: []string{"7E0#2106070809CCCCCC"}, done: true},
			{send: p10b, sent: []string{"7E0#100A808182838485"}},
			{in: fcIn(0, 8, 0), sent: []string{"7E0#2186878889CCCCCC"}, done: true},
		}},
		{name: "N_Bs: no flow control after the first frame", opts: Options{Timeouts: Timeouts{Bs: 200 * ms}}, steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{wait: 199 * ms},
			{wait: ms, done: true, err: ErrTimeout, timer: NBs},
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: fcIn(0, 8, 0), sent: []string{"7E0#2106070809CCCCCC"}, done: true},
		}},
		{name: "N_Bs: no flow control after a block", opts: Options{Timeouts: Timeouts{Bs: 200 * ms}}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{wait: 150 * ms, in: fcIn(0, 1, 0), sent: []string{"7E0#21060708090A0B0C"}},
			{wait: 199 * ms},
			{wait: ms, done: true, err: ErrTimeout, timer: NBs},
		}},
		{name: "flow control while idle is unexpected", steps: []txStep{
			{in: fcIn(0, 8, 100), ignored: ErrUnexpected},
		}},
		{name: "flow control between consecutive frames is unexpected", steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 10), sent: []string{"7E0#21060708090A0B0C"}},
			{in: fcIn(0, 0, 10), ignored: ErrUnexpected},
			{wait: 10 * ms, sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "overflow", steps: []txStep{
			{send: payload(0x30, 0), sent: []string{"7E0#1030000102030405"}},
			{in: fcIn(2, 8, 0), done: true, err: ErrOverflow},
		}},
		{name: "invalid flow status", steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: fcIn(3, 0, 0), done: true, err: ErrMalformed},
		}},
		{name: "malformed flow control is ignored", steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: "7E8#3000", ignored: ErrMalformed},
			{in: fcIn(0, 0, 0), sent: []string{"7E0#2106070809CCCCCC"}, done: true},
		}},
		{name: "frames other than flow controls are not the sender's", steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: "7E8#0211223344"},
			{in: "7E8#2111"},
		}},
		{name: "FC WAIT within WFTMax", opts: Options{WFTMax: 15, Timeouts: Timeouts{Bs: 500 * ms}}, steps: func() []txStep {
			s := []txStep{{send: p20, sent: []string{"7E0#1014000102030405"}}}
			for range 10 {
				s = append(s, txStep{in: fcIn(1, 1, 0)}, txStep{wait: 200 * ms})
			}
			s = append(s, txStep{in: fcIn(0, 1, 0), sent: []string{"7E0#21060708090A0B0C"}})
			for range 10 {
				s = append(s, txStep{in: fcIn(1, 1, 0)}, txStep{wait: 200 * ms})
			}
			return append(s, txStep{in: fcIn(0, 1, 0), sent: []string{"7E0#220D0E0F10111213"}, done: true})
		}()},
		{name: "FC WAIT restarts N_Bs, which then runs out", opts: Options{WFTMax: 15, Timeouts: Timeouts{Bs: 500 * ms}}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(1, 1, 0)},
			{wait: 200 * ms, in: fcIn(1, 1, 0)},
			{wait: 200 * ms, in: fcIn(1, 1, 0)},
			{wait: 499 * ms},
			{wait: ms, done: true, err: ErrTimeout, timer: NBs},
			{in: fcIn(0, 1, 0), ignored: ErrUnexpected},
		}},
		{name: "no FC WAIT accepted after the first frame", opts: Options{WFTMax: -1}, steps: []txStep{
			{send: p10, sent: []string{"7E0#100A000102030405"}},
			{in: fcIn(1, 8, 0), done: true, err: ErrWaitLimit},
			{wait: 10 * ms, in: fcIn(0, 8, 0), ignored: ErrUnexpected},
		}},
		{name: "no FC WAIT accepted after a block", opts: Options{WFTMax: -1}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 1, 0), sent: []string{"7E0#21060708090A0B0C"}},
			{in: fcIn(1, 1, 0), done: true, err: ErrWaitLimit},
		}},
		{name: "FC WAIT at WFTMax is accepted, beyond it fails", opts: Options{WFTMax: 5}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)},
			{in: fcIn(1, 1, 0), done: true, err: ErrWaitLimit},
			{in: fcIn(0, 1, 0), ignored: ErrUnexpected},
		}},
		{name: "FC WAIT beyond WFTMax after a block", opts: Options{WFTMax: 5}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 1, 0), sent: []string{"7E0#21060708090A0B0C"}},
			{in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)}, {in: fcIn(1, 1, 0)},
			{in: fcIn(1, 1, 0), done: true, err: ErrWaitLimit},
		}},
		{name: "the WAIT count restarts with each CTS", opts: Options{WFTMax: 1}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(1, 0, 0)},
			{in: fcIn(0, 1, 0), sent: []string{"7E0#21060708090A0B0C"}},
			{in: fcIn(1, 0, 0)},
			{in: fcIn(0, 1, 0), sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "STmin 100 ms between consecutive frames, also across flow controls", steps: []txStep{
			{send: payload(30, 0), sent: []string{"7E0#101E000102030405"}},
			{in: fcIn(0, 3, 100), sent: []string{"7E0#21060708090A0B0C"}},
			{wait: 99 * ms},
			{wait: ms, sent: []string{"7E0#220D0E0F10111213"}},
			{wait: 100 * ms, sent: []string{"7E0#231415161718191A"}},
			{wait: 50 * ms, in: fcIn(0, 3, 100)},
			{wait: 99 * ms},
			{wait: ms, sent: []string{"7E0#241B1C1DCCCCCCCC"}, done: true},
		}},
		{name: "STmin counts from the end of the frame on the bus", steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 10), sent: []string{"7E0#21060708090A0B0C"}, slow: true},
			{wait: 3 * ms, confirm: true},
			{wait: 9 * ms},
			{wait: ms, sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "N_As: the bus does not carry a frame", opts: Options{Timeouts: Timeouts{As: 50 * ms}}, steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 10), sent: []string{"7E0#21060708090A0B0C"}, slow: true},
			{wait: 49 * ms},
			{wait: ms, done: true, err: ErrTimeout, timer: NAs},
		}},
		{name: "STmin 0xF1 is 100 us", steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 0xF1), sent: []string{"7E0#21060708090A0B0C"}},
			{wait: 99 * time.Microsecond},
			{wait: time.Microsecond, sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "reserved STmin 0x80 means 127 ms", steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 0x80), sent: []string{"7E0#21060708090A0B0C"}},
			{wait: 126 * ms},
			{wait: ms, sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "reserved STmin 0xFA means 127 ms", steps: []txStep{
			{send: p20, sent: []string{"7E0#1014000102030405"}},
			{in: fcIn(0, 0, 0xFA), sent: []string{"7E0#21060708090A0B0C"}},
			{wait: 126 * ms},
			{wait: ms, sent: []string{"7E0#220D0E0F10111213"}, done: true},
		}},
		{name: "BS and STmin come from the first flow control only", steps: []txStep{
			{send: payload(30, 0), sent: []string{"7E0#101E000102030405"}},
			{in: fcIn(0, 2, 0), sent: []string{"7E0#21060708090A0B0C", "7E0#220D0E0F10111213"}},
			{in: fcIn(0, 1, 0x7F), sent: []string{"7E0#231415161718191A", "7E0#241B1C1DCCCCCCCC"}, done: true},
		}},
		{name: "4095 bytes, BS 5", steps: blocks(payload(4095, 0), 5)},
		{name: "4095 bytes, BS 0", steps: blocks(payload(4095, 0), 0)},
		{name: "4096 bytes: escaped first frame", steps: blocks(payload(4096, 0), 0)},
		{name: "10000 bytes", steps: blocks(payload(10000, 0), 0)},

		// CAN FD
		{name: "FD single frame keeps the 4-bit length when it fits 8 bytes", opts: Options{TxDL: 64}, steps: []txStep{
			{send: payload(7, 0), sent: []string{"7E0##00700010203040506"}, done: true},
			{send: payload(3, 0), sent: []string{"7E0##003000102CCCCCCCC"}, done: true},
		}},
		{name: "FD single frame 12 bytes", opts: Options{TxDL: 12}, steps: []txStep{
			{send: payload(10, 0), sent: []string{line("7E0", true, []byte{0, 10}, payload(10, 0))}, done: true},
			{send: payload(9, 0), sent: []string{line("7E0", true, []byte{0, 9}, payload(9, 0), []byte{0xCC})}, done: true},
		}},
		{name: "FD single frame padded to the next valid length", opts: Options{TxDL: 64, PadByte: 0xAA}, steps: []txStep{
			{send: payload(16, 0), sent: []string{line("7E0", true, []byte{0, 16}, payload(16, 0), rep(0xAA, 2))}, done: true},
			{send: payload(55, 0), sent: []string{line("7E0", true, []byte{0, 55}, payload(55, 0), rep(0xAA, 7))}, done: true},
		}},
		{name: "FD without padding still fills to a valid length", opts: Options{TxDL: 64, NoPadding: true}, steps: []txStep{
			{send: payload(3, 0), sent: []string{"7E0##003000102"}, done: true},
			{send: payload(9, 0), sent: []string{line("7E0", true, []byte{0, 9}, payload(9, 0), rep(0xCC, 1))}, done: true},
		}},
		{name: "FD multi-frame TxDL 32", opts: Options{TxDL: 32}, steps: []txStep{
			{send: payload(100, 0), sent: []string{line("7E0", true, []byte{0x10, 100}, payload(30, 0))}},
			{in: fcIn(0, 0, 0), sent: []string{
				line("7E0", true, []byte{0x21}, payload(31, 30)),
				line("7E0", true, []byte{0x22}, payload(31, 61)),
				line("7E0", true, []byte{0x23}, payload(8, 92), rep(0xCC, 3)),
			}, done: true},
		}},
		{name: "FD frames with bit rate switch", opts: Options{TxDL: 16, BRS: true}, steps: []txStep{
			{send: payload(2, 0), sent: []string{"7E0##1020001CCCCCCCCCC"}, done: true},
		}},
		{name: "FD frames of 8 bytes", opts: Options{FD: true}, steps: []txStep{
			{send: p10, sent: []string{"7E0##0100A000102030405"}},
			{in: fcIn(0, 0, 0), sent: []string{"7E0##02106070809CCCCCC"}, done: true},
		}},

		// addressing
		{name: "extended addressing", addr: Address{Mode: Extended, TxID: 0x6F1, RxID: 0x612, Source: 0xF1, Target: 0x12}, steps: []txStep{
			{send: p10, sent: []string{"6F1#12100A0001020304"}},
			{in: "612#55300000"},
			{in: "612#F1300000", sent: []string{"6F1#12210506070809CC"}, done: true},
		}},
		{name: "extended addressing single frame", addr: Address{Mode: Extended, TxID: 0x6F1, RxID: 0x612, Source: 0xF1, Target: 0x12}, opts: Options{NoPadding: true}, steps: []txStep{
			{send: payload(6, 0), sent: []string{"6F1#1206000102030405"}, done: true},
			{send: payload(7, 0), sent: []string{"6F1#1210070001020304"}},
		}},
		{name: "mixed 29-bit addressing", addr: Address{Mode: Mixed, Extended29: true, Source: 0xF1, Target: 0x10, AddressExtension: 0x42}, steps: []txStep{
			{send: payload(2, 0), sent: []string{"18CE10F1#42020001CCCCCCCC"}, done: true},
		}},
		{name: "normal fixed addressing", addr: Address{Mode: NormalFixed, Source: 0xF1, Target: 0x10}, steps: []txStep{
			{send: p10, sent: []string{"18DA10F1#100A000102030405"}},
			{in: "18DAF110#300000", sent: []string{"18DA10F1#2106070809CCCCCC"}, done: true},
		}},
		{name: "functional addressing sends single frames only", addr: Address{Mode: NormalFixed, Source: 0xF1, Target: 0x33, Functional: true}, steps: []txStep{
			{send: []byte{0x3E, 0x80}, sent: []string{"18DB33F1#023E80CCCCCCCCCC"}, done: true},
			{send: payload(8, 0), done: true, err: ErrFunctional},
		}},
		{name: "functional addressing on CAN FD", addr: Address{TxID: 0x7DF, RxID: 0x7E8, Functional: true}, opts: Options{TxDL: 64}, steps: []txStep{
			{send: payload(62, 0), sent: []string{line("7DF", true, []byte{0, 62}, payload(62, 0))}, done: true},
			{send: payload(63, 0), done: true, err: ErrFunctional},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if addr == (Address{}) {
				addr = tester
			}
			runTx(t, addr, tt.opts, tt.steps)
		})
	}
}

func TestSenderBlockSizes(t *testing.T) {
	for bs := byte(1); bs < 8; bs++ {
		t.Run(fmt.Sprint("BS ", bs), func(t *testing.T) {
			runTx(t, tester, Options{}, blocks(payload(128, 0), bs))
		})
	}
}

// TestSenderEveryFDLength sends the largest single frame and multi-frame
// messages around every length boundary for each TX_DL, with and without
// padding, and checks every frame against an independent segmentation.
func TestSenderEveryFDLength(t *testing.T) {
	for _, dl := range []int{8, 12, 16, 20, 24, 32, 48, 64} {
		for _, noPad := range []bool{false, true} {
			t.Run(fmt.Sprintf("TxDL %d NoPadding %v", dl, noPad), func(t *testing.T) {
				fd := dl > 8
				opts := Options{TxDL: dl, FD: fd, NoPadding: noPad}
				sfMax, pci := 7, []byte{7}
				if fd {
					sfMax, pci = dl-2, []byte{0, byte(dl - 2)}
				}
				sf := payload(sfMax, 0)
				wantSF := line("7E0", fd, pci, sf)
				runTx(t, tester, opts, []txStep{{send: sf, sent: []string{wantSF}, done: true}})

				for _, n := range []int{sfMax + 1, dl + 1, 2*dl - 3, 2*dl - 2, 2*dl - 1, 5*dl + 7, 0x7FF + 32, 4095, 4096, 5000} {
					msg := payload(n, byte(n))
					first := dl - 2
					if n > 0xFFF {
						first = dl - 6
					}
					cfs := cfLines("7E0", msg, first, dl)
					if !noPad {
						cfs[len(cfs)-1] = padTo8(cfs[len(cfs)-1])
					}
					runTx(t, tester, opts, []txStep{
						{send: msg, sent: []string{ffLine("7E0", msg, dl)}},
						{in: fcIn(0, 0, 0), sent: cfs, done: true},
					})
				}
			})
		}
	}
}

// TestPerFramePathAllocatesNothing defends the throughput of the state
// machines: sending and receiving a consecutive frame allocates nothing.
func TestPerFramePathAllocatesNothing(t *testing.T) {
	l, c := mustLink(t, tester), mustConfig(t, Options{})
	s := newSender(l, c)
	s.start(payload(1<<16, 0))
	s.transmitted(t0)
	fc := mustFrame(t, "7E8#300000")
	s.handleFrame(&fc, t0)
	if n := testing.AllocsPerRun(1000, func() { s.transmitted(t0) }); n != 0 {
		t.Errorf("sender: %v allocations per consecutive frame, want 0", n)
	}

	r := newReceiver(mustLink(t, mirror(tester)), c)
	ff := mustFrame(t, "7E0#1000000100000102")
	r.handleFrame(&ff, t0)
	cf := mustFrame(t, "7E0#2100000000000000")
	sn := byte(1)
	if n := testing.AllocsPerRun(1000, func() {
		cf.Data[0] = 0x20 | sn
		sn = (sn + 1) & 0xF
		if ev := r.handleFrame(&cf, t0); ev.err != nil || ev.ignored != nil {
			t.Fatalf("consecutive frame: %+v", ev)
		}
	}); n != 0 {
		t.Errorf("receiver: %v allocations per consecutive frame, want 0", n)
	}
}

// BenchmarkStateMachines measures the protocol's own CPU cost per frame: the
// sender building each frame of a 1 MiB message and the receiver taking
// it, without a bus or goroutines.
func BenchmarkStateMachines(b *testing.B) {
	for _, dl := range []int{8, 64} {
		b.Run(fmt.Sprint("TxDL-", dl), func(b *testing.B) {
			msg := payload(1<<20, 0)
			tx := newSender(mustLink(b, tester), mustConfig(b, Options{TxDL: dl}))
			rx := newReceiver(mustLink(b, mirror(tester)), mustConfig(b, Options{}))
			frames := 0
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				ev := tx.start(msg)
				for !ev.done {
					if !ev.send {
						b.Fatal("the sender stalled")
					}
					f := ev.frame
					rev := rx.handleFrame(&f, t0)
					frames++
					ev = tx.transmitted(t0)
					if rev.sendFC {
						ev = tx.handleFrame(&rev.fc, t0)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/frame")
		})
	}
}
