package isotp

import (
	"fmt"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// txState is where the sender is in sending one message.
type txState uint8

const (
	txIdle      txState = iota
	txSending           // a frame is with the driver, until the bus accepts it (transmitted)
	txConfirm           // waiting for the bus to confirm it carried a CF (confirmed; N_As)
	txWaitFC            // waiting for a flow control (N_Bs)
	txWaitSTmin         // waiting out the separation time before the next CF
)

// txEvent is the sender's answer to one input.
type txEvent struct {
	frame canbus.Frame // the frame to transmit, when send is set
	send  bool         // transmit frame, then call transmitted
	done  bool         // the message is finished: sent when err is nil
	err   error        // with done, why the message failed; without, a frame the sender ignored
}

// sender is the sending half of ISO-TP as a state machine without I/O or
// clock. The driver feeds it inputs with the current time: start, a
// received frame, transmitted (the bus accepted the frame it returned into
// its queue), confirmed (the bus carried it), expire (its deadline has
// passed), abort. It transmits the frames the sender returns and watches
// the deadline the sender reports.
//
// It hands out one frame at a time. With STmin 0 the next consecutive frame
// follows as soon as the bus has accepted the previous one, so a bus with
// a transmit queue is kept full. With STmin above 0 the separation time
// counts from the end of the previous frame on the bus, as ISO 15765-2
// defines it, so the sender waits for the bus to confirm each frame; the
// first frame of a later block waits STmin from the flow control, which
// came after the previous frame ended.
type sender struct {
	l        link
	w        framer
	nAs, nBs time.Duration
	wftMax   int
	transfer // the message being sent; reset by start
}

// transfer is the state of sending one message.
type transfer struct {
	state    txState
	deadline time.Time
	msg      []byte // the message being sent; not retained after done
	off      int    // bytes of msg handed out in frames
	sn       byte   // sequence number of the next CF
	params   bool   // bs and stmin were taken from the first FC CTS
	bs       int    // the receiver's block size; 0: no limit
	stmin    time.Duration
	inBlock  int // CFs sent since the last FC
	waits    int // FC WAIT received in a row
}

func newSender(l link, c config) sender {
	return sender{l: l, w: newFramer(l, c), nAs: c.nAs, nBs: c.nBs, wftMax: c.wftMax}
}

// busy reports whether a message is being sent.
func (s *sender) busy() bool { return s.state != txIdle }

// confirms reports whether the frames the sender hands out now may need
// confirmed: the driver must be ready to see them on the bus before it
// transmits them.
func (s *sender) confirms() bool { return s.params && s.stmin > 0 }

// timer returns the deadline the driver must watch, if any.
func (s *sender) timer() (time.Time, bool) {
	return s.deadline, s.state == txConfirm || s.state == txWaitFC || s.state == txWaitSTmin
}

// start begins sending msg, which must stay unchanged until the message is
// done.
func (s *sender) start(msg []byte) txEvent {
	switch {
	case s.state != txIdle:
		return txEvent{done: true, err: newError(ErrInvalid, "a message is already being sent; send one at a time")}
	case len(msg) == 0:
		return txEvent{done: true, err: newError(ErrInvalid, "empty message: ISO-TP carries 1 byte or more")}
	case uint64(len(msg)) > MaxMessageLen:
		return txEvent{done: true, err: newError(ErrInvalid, fmt.Sprintf("message of %d bytes exceeds the ISO-TP limit of %d", len(msg), uint64(MaxMessageLen)))}
	}
	s.transfer = transfer{msg: msg}
	if len(msg) <= s.w.sfMax() {
		s.off = len(msg)
		return s.transmit(s.w.single(msg))
	}
	if s.l.functional {
		return s.finish(newError(ErrFunctional, fmt.Sprintf("message of %d bytes needs segmenting, but functional addressing carries single frames of at most %d bytes; send it physically", len(msg), s.w.sfMax())))
	}
	f, n := s.w.first(msg)
	s.off, s.sn = n, 1
	return s.transmit(f)
}

// transmitted tells the sender that the bus accepted the frame it returned.
func (s *sender) transmitted(now time.Time) txEvent {
	if s.state != txSending {
		return txEvent{}
	}
	switch {
	case s.off == len(s.msg):
		return s.finish(nil)
	case !s.params, s.bs > 0 && s.inBlock == s.bs:
		s.waits = 0
		s.wait(txWaitFC, now.Add(s.nBs))
	case s.stmin > 0:
		s.wait(txConfirm, now.Add(s.nAs))
	default:
		return s.next()
	}
	return txEvent{}
}

// confirmed tells the sender that the bus has carried the frame it is
// waiting for.
func (s *sender) confirmed(now time.Time) txEvent {
	if s.state == txConfirm {
		s.wait(txWaitSTmin, now.Add(s.stmin))
	}
	return txEvent{}
}

// handleFrame gives the sender a frame received on its link. Only flow
// controls concern it.
func (s *sender) handleFrame(f *canbus.Frame, now time.Time) txEvent {
	p, ok := s.l.payload(f)
	if !ok {
		return txEvent{}
	}
	d, err := decodePDU(p, int(f.Len))
	switch {
	case err != nil && len(p) > 0 && pciType(p[0]>>pciShift) == typeFC:
		return txEvent{err: fmt.Errorf("%w (frame %s)", err, f.String())}
	case err != nil || d.typ != typeFC:
		return txEvent{}
	}
	if s.state != txWaitFC {
		return txEvent{err: newError(ErrUnexpected, fmt.Sprintf("flow control %s ignored: the sender is not waiting for one", f.String()))}
	}
	switch d.fs {
	case fsCTS:
		s.inBlock, s.waits = 0, 0
		if !s.params {
			// ISO 15765-2 and the Linux kernel take BS and STmin from
			// the first FC only; later ones just open the next block.
			s.params, s.bs, s.stmin = true, int(d.bs), STminDuration(d.stmin)
		} else if s.stmin > 0 {
			s.wait(txWaitSTmin, now.Add(s.stmin))
			return txEvent{}
		}
		return s.next()
	case fsWait:
		s.waits++
		if s.waits > s.wftMax {
			return s.finish(newError(ErrWaitLimit, fmt.Sprintf("the receiver sent %d FC WAIT in a row; WFTMax allows %d", s.waits, max(s.wftMax, 0))))
		}
		s.deadline = now.Add(s.nBs)
		return txEvent{}
	case fsOvflw:
		return s.finish(newError(ErrOverflow, fmt.Sprintf("the receiver answered FC OVFLW: it cannot take a message of %d bytes", len(s.msg))))
	}
	return s.finish(newError(ErrMalformed, fmt.Sprintf("flow control with invalid flow status %d", d.fs)))
}

// expire tells the sender that time now has come; it acts if its deadline
// has passed.
func (s *sender) expire(now time.Time) txEvent {
	if _, ok := s.timer(); !ok || now.Before(s.deadline) {
		return txEvent{}
	}
	switch s.state {
	case txConfirm:
		return s.finish(&Error{Kind: ErrTimeout, Timer: NAs, Detail: fmt.Sprintf("the bus did not carry a consecutive frame within %v; is it connected, and are other nodes acknowledging?", s.nAs)})
	case txWaitFC:
		what := "after the first frame"
		if s.params {
			what = "after a block of consecutive frames"
		}
		return s.finish(&Error{Kind: ErrTimeout, Timer: NBs, Detail: fmt.Sprintf("no flow control within %v %s; is the receiver there and listening on our identifier?", s.nBs, what)})
	}
	return s.next()
}

// abort ends the message with err, for failures the driver sees: a
// cancelled context, a closed bus, a frame the bus did not accept in time.
func (s *sender) abort(err error) txEvent {
	if s.state == txIdle {
		return txEvent{}
	}
	return s.finish(err)
}

// next returns the next consecutive frame.
func (s *sender) next() txEvent {
	f, n := s.w.consecutive(s.sn, s.msg[s.off:])
	s.off += n
	s.sn = (s.sn + 1) & lowNib
	s.inBlock++
	return s.transmit(f)
}

func (s *sender) transmit(f canbus.Frame) txEvent {
	s.state = txSending
	return txEvent{frame: f, send: true}
}

func (s *sender) wait(st txState, deadline time.Time) { s.state, s.deadline = st, deadline }

func (s *sender) finish(err error) txEvent {
	s.state, s.msg = txIdle, nil
	return txEvent{done: true, err: err}
}
