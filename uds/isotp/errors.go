package isotp

import "errors"

// Kind classifies a failure of the transport. Every Kind is itself an
// error, in the way syscall.Errno values are, so callers test the class of
// any error from this package with errors.Is:
//
//	if errors.Is(err, isotp.ErrTimeout) { ... }
//
// and reach the details (which timer ran out) with errors.As and *Error.
type Kind uint8

// The kinds of failure.
const (
	// ErrTimeout: a protocol timer ran out; Error.Timer says which one.
	ErrTimeout Kind = iota + 1
	// ErrOverflow: the receiver cannot take the message. Send reports it
	// when the peer answers with FC OVFLW; Recv reports it when a first
	// frame announced more than Options.MaxRecvLen bytes (and we answered
	// with FC OVFLW).
	ErrOverflow
	// ErrSequence: a consecutive frame carried the wrong sequence number,
	// so the message being received was abandoned.
	ErrSequence
	// ErrUnexpected: a well-formed frame arrived that the protocol state
	// does not allow, such as a consecutive frame while no message is being
	// received or a flow control while the sender waits for none. The frame
	// is ignored.
	ErrUnexpected
	// ErrWaitLimit: the receiver sent more FC WAIT frames in a row than
	// Options.WFTMax allows, so the message was abandoned.
	ErrWaitLimit
	// ErrFunctional: a message too large for one single frame was sent on a
	// functionally addressed Conn, or a first frame arrived on one.
	// Functional addressing cannot carry segmented messages.
	ErrFunctional
	// ErrInvalid: an invalid Address or Options value, or a message that no
	// ISO-TP frame sequence can carry (empty, or over 4 GiB).
	ErrInvalid
	// ErrMalformed: a frame that breaks the N_PCI encoding rules: a
	// reserved frame type, a length field that does not fit the frame, a
	// frame length that the data link cannot have, an invalid flow status.
	ErrMalformed
	// ErrInterrupted: a new single or first frame arrived while a message
	// was being received. The old message is abandoned and this error
	// reported; the new one proceeds.
	ErrInterrupted
)

var kindNames = [...]string{
	ErrTimeout:     "timeout",
	ErrOverflow:    "overflow",
	ErrSequence:    "wrong sequence number",
	ErrUnexpected:  "unexpected frame",
	ErrWaitLimit:   "too many flow control WAIT frames",
	ErrFunctional:  "segmented message on functional addressing",
	ErrInvalid:     "invalid argument",
	ErrMalformed:   "malformed frame",
	ErrInterrupted: "reception interrupted",
}

func (k Kind) Error() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return "isotp: " + kindNames[k]
	}
	return "isotp: unknown error kind"
}

// Timer names one of the network layer timers of ISO 15765-2.
type Timer uint8

// The timers whose expiry is an error. N_Br and N_Cs, the time this side
// takes to act, are not monitored: this implementation acts at once.
const (
	NAs Timer = iota + 1 // sender: a frame not accepted by the bus in time
	NAr                  // receiver: a flow control not accepted by the bus in time
	NBs                  // sender: no flow control from the receiver in time
	NCr                  // receiver: no consecutive frame from the sender in time
)

var timerNames = [...]string{NAs: "N_As", NAr: "N_Ar", NBs: "N_Bs", NCr: "N_Cr"}

func (t Timer) String() string {
	if int(t) < len(timerNames) && timerNames[t] != "" {
		return timerNames[t]
	}
	return "no timer"
}

// Error is the error type of the transport. Its Kind says what class of
// failure it is (and makes errors.Is work); Timer is set for ErrTimeout.
type Error struct {
	Kind   Kind
	Timer  Timer  // which timer ran out, for ErrTimeout
	Detail string // what happened, and what to check
}

func (e *Error) Error() string {
	s := e.Kind.Error()
	if e.Timer != 0 {
		s += " (" + e.Timer.String() + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns the Kind, so that errors.Is(err, ErrTimeout) holds for
// every timeout.
func (e *Error) Unwrap() error { return e.Kind }

func newError(k Kind, detail string) *Error { return &Error{Kind: k, Detail: detail} }

// ErrClosed is returned by Send and Recv after Close.
var ErrClosed = errors.New("isotp: connection closed")
