package isotp

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// pciType is the frame type in the high nibble of the first N_PCI byte.
type pciType uint8

const (
	typeSF pciType = iota // single frame
	typeFF                // first frame
	typeCF                // consecutive frame
	typeFC                // flow control
)

// Flow status values of a flow control frame.
const (
	fsCTS   = 0 // continue to send
	fsWait  = 1 // wait for another flow control
	fsOvflw = 2 // overflow: the receiver cannot take the message
)

// Field sizes of the N_PCI.
const (
	sfPCI    = 1     // SF with 4-bit SF_DL
	sfPCIEsc = 2     // SF with escape: 0x00 then an 8-bit SF_DL (CAN_DL > 8)
	ffPCI    = 2     // FF with 12-bit FF_DL
	ffPCIEsc = 6     // FF with escape: 0x10 0x00 then a 32-bit FF_DL (FF_DL > 4095)
	cfPCI    = 1     // CF with its sequence number
	fcLen    = 3     // FC: flow status, BS, STmin
	ffDL12   = 0xFFF // largest FF_DL without the escape
	classic  = 8     // CAN_DL of a full classic frame; the TX_DL without SF escape
	pciShift = 4     // the frame type sits in the high nibble
	lowNib   = 0x0F  // the low nibble: SF_DL, FF_DL bits 11-8, SN or FS
)

// pdu is one decoded N_PDU. data aliases the frame it was decoded from.
type pdu struct {
	typ   pciType
	size  int    // SF_DL or FF_DL
	sn    byte   // CF sequence number
	fs    byte   // FC flow status
	bs    byte   // FC block size
	stmin byte   // FC separation time, raw
	data  []byte // SF: its SF_DL bytes; FF, CF: every byte after the N_PCI
}

// decodePDU decodes p, the data of a frame after any address byte; canDL is
// the length of the whole frame, which decides the SF_DL encoding. It checks
// what one frame alone can tell; whether the frame fits the state of a
// transfer (RX_DL, FF_DLmin, sequence) is for the receiver.
func decodePDU(p []byte, canDL int) (pdu, error) {
	if len(p) == 0 {
		return pdu{}, newError(ErrMalformed, "frame has no N_PCI byte")
	}
	d := pdu{typ: pciType(p[0] >> pciShift)}
	low := p[0] & lowNib
	switch d.typ {
	case typeSF:
		pci := sfPCI
		if canDL > classic {
			if low != 0 {
				return d, newError(ErrMalformed, fmt.Sprintf("single frame of %d bytes lacks the SF_DL escape (0x00 then the length) that CAN FD frames over 8 bytes need", canDL))
			}
			if len(p) < sfPCIEsc {
				return d, newError(ErrMalformed, "single frame escape without its length byte")
			}
			pci, d.size = sfPCIEsc, int(p[1])
		} else {
			d.size = int(low)
		}
		if d.size == 0 || d.size > len(p)-pci {
			return d, newError(ErrMalformed, fmt.Sprintf("single frame length %d does not fit a frame with %d data bytes", d.size, len(p)-pci))
		}
		d.data = p[pci : pci+d.size]
	case typeFF:
		if len(p) < ffPCI {
			return d, newError(ErrMalformed, "first frame shorter than its N_PCI")
		}
		pci := ffPCI
		d.size = int(low)<<8 | int(p[1])
		if d.size == 0 {
			if len(p) < ffPCIEsc {
				return d, newError(ErrMalformed, "first frame escape without its 32-bit length")
			}
			// Clamped so that a 32-bit platform sees a huge length, not a
			// negative one.
			pci, d.size = ffPCIEsc, int(min(uint64(binary.BigEndian.Uint32(p[2:6])), math.MaxInt))
			if d.size == 0 {
				return d, newError(ErrMalformed, "first frame announces an empty message")
			}
		}
		d.data = p[pci:]
	case typeCF:
		d.sn, d.data = low, p[cfPCI:]
	case typeFC:
		if len(p) < fcLen {
			return d, newError(ErrMalformed, fmt.Sprintf("flow control of %d bytes lacks BS and STmin", len(p)))
		}
		d.fs, d.bs, d.stmin = low, p[1], p[2]
	default:
		return d, newError(ErrMalformed, fmt.Sprintf("reserved N_PCI type %#x", d.typ))
	}
	return d, nil
}

// payload returns the frame's data after the address byte, and false when
// the frame is not for this link: a remote or error frame, or an address
// byte for another node.
func (l *link) payload(f *canbus.Frame) ([]byte, bool) {
	if f.RTR || f.Error {
		return nil, false
	}
	p := f.Payload()
	if l.prefixLen > 0 {
		if len(p) == 0 || p[0] != l.rxPrefix {
			return nil, false
		}
		p = p[1:]
	}
	return p, true
}

// isFlowControl reports whether f is a flow control for this link, which
// the Conn routes to its sender rather than its receiver.
func (l *link) isFlowControl(f *canbus.Frame) bool {
	p, ok := l.payload(f)
	return ok && len(p) > 0 && pciType(p[0]>>pciShift) == typeFC
}

// framer builds the frames one side sends: identifier, flags, address
// byte, N_PCI and padding.
type framer struct {
	id        uint32
	extended  bool
	fd, brs   bool
	prefixLen int
	prefix    byte
	txDL      int
	pad       bool
	padByte   byte
}

func newFramer(l link, c config) framer {
	return framer{
		id: l.txID, extended: l.extended,
		fd: c.fd, brs: c.fd && c.brs,
		prefixLen: l.prefixLen, prefix: l.txPrefix,
		txDL: c.txDL, pad: c.pad, padByte: c.padByte,
	}
}

// sfMax is the largest message one single frame carries.
func (w *framer) sfMax() int { return sfCapacity(w.txDL, w.prefixLen) }

// begin returns a frame with identifier, flags and address byte set, and
// the index of its N_PCI.
func (w *framer) begin() (canbus.Frame, int) {
	f := canbus.Frame{ID: w.id, Extended: w.extended, FD: w.fd, BRS: w.brs}
	if w.prefixLen > 0 {
		f.Data[0] = w.prefix
	}
	return f, w.prefixLen
}

// end sets the length of a frame whose content is n bytes long, padding
// it: CAN FD frames over 8 bytes always to the next valid length, others
// to 8 bytes when padding is on.
func (w *framer) end(f *canbus.Frame, n int) {
	l := n
	switch {
	case n > classic:
		l = canbus.RoundFDLen(n)
	case w.pad:
		l = classic
	}
	for i := n; i < l; i++ {
		f.Data[i] = w.padByte
	}
	f.Len = uint8(l)
}

// single returns the single frame carrying msg, which has at most sfMax
// bytes. The SF_DL escape is used only when the message does not fit the
// 4-bit length, so that short messages stay in 8-byte frames on CAN FD too.
func (w *framer) single(msg []byte) canbus.Frame {
	f, i := w.begin()
	if len(msg) <= classic-w.prefixLen-sfPCI {
		f.Data[i] = byte(typeSF)<<pciShift | byte(len(msg))
		i += sfPCI
	} else {
		f.Data[i], f.Data[i+1] = byte(typeSF)<<pciShift, byte(len(msg))
		i += sfPCIEsc
	}
	w.end(&f, i+copy(f.Data[i:], msg))
	return f
}

// first returns the first frame of msg and how many bytes of msg it
// carries. A first frame always fills TX_DL.
func (w *framer) first(msg []byte) (canbus.Frame, int) {
	f, i := w.begin()
	if len(msg) <= ffDL12 {
		f.Data[i], f.Data[i+1] = byte(typeFF)<<pciShift|byte(len(msg)>>8), byte(len(msg))
		i += ffPCI
	} else {
		f.Data[i], f.Data[i+1] = byte(typeFF)<<pciShift, 0
		binary.BigEndian.PutUint32(f.Data[i+2:], uint32(len(msg)))
		i += ffPCIEsc
	}
	n := copy(f.Data[i:w.txDL], msg)
	w.end(&f, i+n)
	return f, n
}

// consecutive returns the consecutive frame with sequence number sn that
// carries the start of rest, and how many bytes it carries.
func (w *framer) consecutive(sn byte, rest []byte) (canbus.Frame, int) {
	f, i := w.begin()
	f.Data[i] = byte(typeCF)<<pciShift | sn&lowNib
	i += cfPCI
	n := copy(f.Data[i:w.txDL], rest)
	w.end(&f, i+n)
	return f, n
}

// flowControl returns a flow control frame. Like the Linux kernel's, it is
// never longer than 8 bytes, also on CAN FD.
func (w *framer) flowControl(fs, bs, stmin byte) canbus.Frame {
	f, i := w.begin()
	f.Data[i], f.Data[i+1], f.Data[i+2] = byte(typeFC)<<pciShift|fs, bs, stmin
	w.end(&f, i+fcLen)
	return f
}
