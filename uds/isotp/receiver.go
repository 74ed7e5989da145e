package isotp

import (
	"fmt"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// rxEvent is the receiver's answer to one input. Several fields can be set
// at once; the driver acts on them in field order: report err, transmit
// fc, deliver msg.
type rxEvent struct {
	err     error        // a message was lost or refused (Recv reports it)
	ignored error        // a frame was ignored; no message was lost
	fc      canbus.Frame // a flow control to transmit, when sendFC is set
	sendFC  bool
	msg     []byte // a complete message, owned by the caller
}

// receiver is the receiving half of ISO-TP as a state machine without I/O
// or clock: the driver feeds it the frames of its link and the current
// time, transmits the flow controls it returns, and calls expire when the
// deadline it reports has passed.
type receiver struct {
	l       link
	w       framer
	fcBS    byte
	fcSTmin byte
	maxRecv int
	nCr     time.Duration
	message // the message being received; reset by each first frame
}

// message is the state of receiving one segmented message.
type message struct {
	active   bool
	deadline time.Time // N_Cr
	buf      []byte
	size     int  // FF_DL
	rxDL     int  // the sender's TX_DL, learnt from the first frame
	sn       byte // expected sequence number
	inBlock  int  // CFs received since our last FC
}

// preallocMax bounds what a first frame alone makes us allocate: a larger
// message grows its buffer as its data arrives, so a peer that announces
// 4 GiB and sends nothing costs nothing.
const preallocMax = 64 << 10

func newReceiver(l link, c config) receiver {
	return receiver{l: l, w: newFramer(l, c), fcBS: c.fcBS, fcSTmin: c.fcSTmin, maxRecv: c.maxRecv, nCr: c.nCr}
}

// timer returns the deadline the driver must watch, if any.
func (r *receiver) timer() (time.Time, bool) { return r.deadline, r.active }

// handleFrame gives the receiver a frame received on its link. Flow
// controls belong to the sender and are ignored here.
func (r *receiver) handleFrame(f *canbus.Frame, now time.Time) rxEvent {
	p, ok := r.l.payload(f)
	if !ok {
		return rxEvent{}
	}
	canDL := int(f.Len)
	d, err := decodePDU(p, canDL)
	if err != nil {
		return rxEvent{ignored: fmt.Errorf("%w (frame %s)", err, f.String())}
	}
	switch d.typ {
	case typeSF:
		ev := r.interrupt("single frame")
		ev.msg = append([]byte(nil), d.data...)
		return ev
	case typeFF:
		return r.first(d, canDL, now)
	case typeCF:
		return r.consecutive(d, canDL, f, now)
	}
	return rxEvent{}
}

// first handles a first frame: it learns RX_DL, checks FF_DL and starts a
// reception, abandoning any other.
func (r *receiver) first(d pdu, canDL int, now time.Time) rxEvent {
	if r.l.functional {
		return rxEvent{ignored: newError(ErrFunctional, fmt.Sprintf("first frame of a %d-byte message ignored: functional addressing carries single frames only", d.size))}
	}
	rxDL := classic // a classic first frame shorter than 8 bytes is tolerated, as python-can-isotp does
	if canDL > classic {
		if !canbus.ValidFDLen(canDL) {
			return rxEvent{ignored: newError(ErrMalformed, fmt.Sprintf("first frame of %d bytes: not a CAN FD length, so no valid RX_DL", canDL))}
		}
		rxDL = canDL
	}
	// FF_DLmin: a message that fits a single frame must not be segmented.
	if sfMax := sfCapacity(rxDL, r.l.prefixLen); d.size <= sfMax {
		return rxEvent{ignored: newError(ErrMalformed, fmt.Sprintf("first frame announces %d bytes, which fit a single frame at RX_DL %d", d.size, rxDL))}
	}
	ev := r.interrupt("first frame")
	if d.size > r.maxRecv {
		detail := fmt.Sprintf("a first frame announced %d bytes, more than MaxRecvLen %d; answered FC OVFLW", d.size, r.maxRecv)
		if ev.err != nil {
			detail += ", abandoning the message being received"
		}
		ev.err = newError(ErrOverflow, detail)
		ev.fc, ev.sendFC = r.w.flowControl(fsOvflw, 0, 0), true
		return ev
	}
	data := d.data[:min(len(d.data), d.size)]
	r.message = message{
		active:   true,
		deadline: now.Add(r.nCr),
		buf:      append(make([]byte, 0, min(d.size, preallocMax)), data...),
		size:     d.size,
		rxDL:     rxDL,
		sn:       1,
	}
	ev.fc, ev.sendFC = r.w.flowControl(fsCTS, r.fcBS, r.fcSTmin), true
	return ev
}

// consecutive handles a consecutive frame.
func (r *receiver) consecutive(d pdu, canDL int, f *canbus.Frame, now time.Time) rxEvent {
	if !r.active {
		return rxEvent{ignored: newError(ErrUnexpected, fmt.Sprintf("consecutive frame %s ignored: no message is being received", f.String()))}
	}
	rest := r.size - len(r.buf)
	// Every CF but the last fills RX_DL; the last may be shorter but must
	// hold the rest of the message. Others are ignored, as the standard
	// says, and the reception goes on.
	if canDL > r.rxDL || canDL < r.rxDL && rest > canDL-r.l.prefixLen-cfPCI {
		return rxEvent{ignored: newError(ErrMalformed, fmt.Sprintf("consecutive frame of %d bytes ignored: RX_DL is %d and %d bytes remain", canDL, r.rxDL, rest))}
	}
	if d.sn != r.sn {
		r.active = false
		return rxEvent{err: newError(ErrSequence, fmt.Sprintf("consecutive frame has sequence number %d, want %d; the %d-byte message is abandoned after %d bytes", d.sn, r.sn, r.size, len(r.buf)))}
	}
	r.buf = appendBounded(r.buf, d.data[:min(len(d.data), rest)], r.size)
	r.sn = (r.sn + 1) & lowNib
	if len(r.buf) == r.size {
		msg := r.buf
		r.message = message{}
		return rxEvent{msg: msg}
	}
	r.deadline = now.Add(r.nCr)
	if r.inBlock++; r.fcBS > 0 && r.inBlock == int(r.fcBS) {
		r.inBlock = 0
		return rxEvent{fc: r.w.flowControl(fsCTS, r.fcBS, r.fcSTmin), sendFC: true}
	}
	return rxEvent{}
}

// interrupt abandons the message being received, if any, because a new
// single or first frame arrived.
func (r *receiver) interrupt(by string) rxEvent {
	if !r.active {
		return rxEvent{}
	}
	err := newError(ErrInterrupted, fmt.Sprintf("a %s began a new message; the %d-byte message is abandoned after %d bytes", by, r.size, len(r.buf)))
	r.message = message{}
	return rxEvent{err: err}
}

// expire tells the receiver that time now has come; it abandons the
// message if no consecutive frame came within N_Cr.
func (r *receiver) expire(now time.Time) rxEvent {
	if !r.active || now.Before(r.deadline) {
		return rxEvent{}
	}
	err := &Error{Kind: ErrTimeout, Timer: NCr, Detail: fmt.Sprintf("no consecutive frame within %v; the %d-byte message is abandoned after %d bytes", r.nCr, r.size, len(r.buf))}
	r.message = message{}
	return rxEvent{err: err}
}

// abort abandons the message being received with err, for failures the
// driver sees, such as a flow control the bus did not accept.
func (r *receiver) abort(err error) rxEvent {
	r.message = message{}
	return rxEvent{err: err}
}

// sfCapacity is the largest message a single frame of a sender with the
// given TX_DL carries.
func sfCapacity(txDL, prefixLen int) int {
	if txDL > classic {
		return txDL - prefixLen - sfPCIEsc
	}
	return classic - prefixLen - sfPCI
}

// appendBounded appends p to buf, doubling its capacity as append would but
// never beyond limit, so that a message's buffer never exceeds its FF_DL.
func appendBounded(buf, p []byte, limit int) []byte {
	if n := len(buf) + len(p); n > cap(buf) {
		grown := make([]byte, len(buf), min(limit, max(2*cap(buf), n)))
		copy(grown, buf)
		buf = grown
	}
	return append(buf, p...)
}
