package isotp

import (
	"fmt"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Defaults of the zero Options.
const (
	DefaultPadByte    = 0xCC        // the filler ISO 15765-2 and the Linux kernel use
	DefaultTimeout    = time.Second // N_As, N_Ar, N_Bs and N_Cr (ISO 15765-2 performance values)
	DefaultWFTMax     = 32          // FC WAIT frames accepted in a row before giving up
	DefaultMaxRecvLen = 4 << 20     // largest message received: 4 MiB
)

// MaxMessageLen is the largest message ISO-TP can carry: the 32-bit first
// frame length.
const MaxMessageLen = 1<<32 - 1

// Options tunes a Conn. The zero value gives the standard's defaults:
// classic CAN frames of 8 bytes padded with 0xCC, flow controls asking for
// no block limit and no separation time, 1 s timeouts.
type Options struct {
	// TxDL is the data length of the frames we send (TX_DL): 0 or 8 for
	// classic CAN, or a CAN FD length 12, 16, 20, 24, 32, 48 or 64. The
	// receive side needs no setting: it learns the sender's TX_DL from
	// each first frame (RX_DL) and holds its consecutive frames to it.
	TxDL int
	// FD sends CAN FD frames even with TxDL 8, for a CAN FD bus whose
	// peers expect FD frames of up to 8 bytes (a Linux CAN_ISOTP socket
	// with CANFD_MTU and tx_dl 8). A TxDL above 8 implies it.
	FD bool
	// BRS sets the bit rate switch on the CAN FD frames we send.
	BRS bool

	// BlockSize is the BS of our flow controls: how many consecutive frames
	// the sender may send before it waits for our next flow control. 0
	// means no limit: a single flow control for the whole message.
	BlockSize uint8
	// STmin is the STmin byte of our flow controls, the separation time the
	// sender must keep between consecutive frames, as ISO 15765-2 encodes
	// it: 0x00-0x7F milliseconds, 0xF1-0xF9 100-900 microseconds. Other
	// values are reserved and rejected. See STminDuration.
	STmin byte

	// NoPadding sends frames only as long as their content, as the Linux
	// kernel does by default. CAN FD frames over 8 bytes are still filled up
	// to the next valid length, as ISO 15765-2 requires. Without it every
	// frame is filled to 8 bytes (or to the next valid CAN FD length).
	NoPadding bool
	// PadByte is the filler of padded frames. The zero value means
	// DefaultPadByte (0xCC); to fill with 0x00 set PadZero.
	PadByte byte
	// PadZero fills with 0x00, which PadByte cannot say.
	PadZero bool

	// Timeouts bounds the waits of the protocol; zero fields take
	// DefaultTimeout.
	Timeouts Timeouts
	// WFTMax is how many FC WAIT frames in a row the sender accepts before
	// it abandons the message with ErrWaitLimit. 0 means DefaultWFTMax; a
	// negative value accepts none.
	WFTMax int
	// MaxRecvLen is the largest message we receive. A first frame that
	// announces more is answered with FC OVFLW and reported by Recv as
	// ErrOverflow. 0 means DefaultMaxRecvLen.
	MaxRecvLen int

	// OnError, if set, is called with the protocol errors that lose no
	// message: frames ignored because they were unexpected or malformed
	// (ErrUnexpected, ErrMalformed), and messages dropped because Recv was
	// not called in time. Errors that lose a message are returned by Send
	// and Recv instead. It is called from the Conn's reading goroutine and
	// from Send, possibly at the same time, and must not block.
	OnError func(error)
}

// Timeouts are the network layer timeouts of ISO 15765-2. Zero fields take
// DefaultTimeout.
type Timeouts struct {
	As time.Duration // N_As: the bus must accept each frame we send within it
	Ar time.Duration // N_Ar: the bus must accept each flow control we send within it
	Bs time.Duration // N_Bs: the receiver must answer with a flow control within it
	Cr time.Duration // N_Cr: the sender must send the next consecutive frame within it
}

// STminDuration decodes an STmin byte: 0x00-0x7F are milliseconds,
// 0xF1-0xF9 are 100 to 900 microseconds, and the reserved values mean the
// longest time, 127 ms, as ISO 15765-2 tells a sender to assume.
func STminDuration(b byte) time.Duration {
	switch {
	case b <= 0x7F:
		return time.Duration(b) * time.Millisecond
	case b >= 0xF1 && b <= 0xF9:
		return time.Duration(b-0xF0) * 100 * time.Microsecond
	}
	return 127 * time.Millisecond
}

// config is Options resolved: defaults applied and validated, in the form
// the state machines use.
type config struct {
	txDL     int  // 8 or a CAN FD length
	fd, brs  bool // frame flags
	fcBS     byte // BS of our flow controls
	fcSTmin  byte // STmin of our flow controls
	pad      bool // fill frames to 8 bytes or the next CAN FD length
	padByte  byte
	nAs, nAr time.Duration
	nBs, nCr time.Duration
	wftMax   int // negative: no FC WAIT accepted
	maxRecv  int
}

func (o Options) resolve() (config, error) {
	c := config{
		txDL:    o.TxDL,
		fd:      o.FD || o.TxDL > canbus.MaxClassicLen,
		brs:     o.BRS,
		fcBS:    o.BlockSize,
		fcSTmin: o.STmin,
		pad:     !o.NoPadding,
		padByte: o.PadByte,
		nAs:     orDefault(o.Timeouts.As, DefaultTimeout),
		nAr:     orDefault(o.Timeouts.Ar, DefaultTimeout),
		nBs:     orDefault(o.Timeouts.Bs, DefaultTimeout),
		nCr:     orDefault(o.Timeouts.Cr, DefaultTimeout),
		wftMax:  o.WFTMax,
		maxRecv: o.MaxRecvLen,
	}
	if c.txDL == 0 {
		c.txDL = canbus.MaxClassicLen
	}
	if c.txDL < canbus.MaxClassicLen || !canbus.ValidFDLen(c.txDL) {
		return c, newError(ErrInvalid, fmt.Sprintf("TxDL %d: want 8 for classic CAN or a CAN FD length 12, 16, 20, 24, 32, 48 or 64", o.TxDL))
	}
	if c.brs && !c.fd {
		return c, newError(ErrInvalid, "BRS needs CAN FD frames: set FD or a TxDL above 8")
	}
	if c.fcSTmin > 0x7F && (c.fcSTmin < 0xF1 || c.fcSTmin > 0xF9) {
		return c, newError(ErrInvalid, fmt.Sprintf("STmin %#02x is reserved: want 0x00-0x7F (ms) or 0xF1-0xF9 (100-900 us)", o.STmin))
	}
	if o.PadZero && o.PadByte != 0 {
		return c, newError(ErrInvalid, fmt.Sprintf("PadZero contradicts PadByte %#02x: set one of them", o.PadByte))
	}
	if !o.PadZero && c.padByte == 0 {
		c.padByte = DefaultPadByte
	}
	for _, t := range []time.Duration{o.Timeouts.As, o.Timeouts.Ar, o.Timeouts.Bs, o.Timeouts.Cr} {
		if t < 0 {
			return c, newError(ErrInvalid, fmt.Sprintf("timeout %v is negative: want a positive duration, or 0 for the default %v", t, DefaultTimeout))
		}
	}
	switch {
	case c.wftMax == 0:
		c.wftMax = DefaultWFTMax
	case c.wftMax < 0:
		c.wftMax = -1
	}
	switch {
	case c.maxRecv == 0:
		c.maxRecv = DefaultMaxRecvLen
	case c.maxRecv < 0 || int64(c.maxRecv) > MaxMessageLen:
		return c, newError(ErrInvalid, fmt.Sprintf("MaxRecvLen %d: want 1 to %d, or 0 for the default %d", o.MaxRecvLen, int64(MaxMessageLen), DefaultMaxRecvLen))
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
