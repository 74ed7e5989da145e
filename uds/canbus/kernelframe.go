package canbus

import (
	"encoding/binary"
	"fmt"
)

// Linux's struct can_frame and struct canfd_frame (linux/can.h) are the
// layout of SocketCAN's raw sockets, in the host's byte order, and of
// pcap's LINKTYPE_CAN_SOCKETCAN, with the identifier in network byte order.
// One codec serves both; the caller names the byte order.
const (
	canMTU   = 16 // sizeof(struct can_frame)
	canfdMTU = 72 // sizeof(struct canfd_frame)

	canEFFFlag = 0x80000000 // 29-bit identifier
	canRTRFlag = 0x40000000 // remote frame
	canERRFlag = 0x20000000 // error frame; the identifier holds the error class
	canSFFMask = 0x000007FF
	canEFFMask = 0x1FFFFFFF

	canfdBRS = 0x01
	canfdESI = 0x02
	canfdFDF = 0x04 // marks a CAN FD frame in canfd_frame.flags; kernels before 6.0 ignore it

	canErrDLC = 8 // the length of every error frame
)

// decodeSocketCAN decodes a struct can_frame (16 bytes) or struct
// canfd_frame (72 bytes) whose identifier word is in byte order order. vcan
// passes on whatever length a sender wrote, so an FD length between the
// valid ones is rounded up to the next, as a controller would pad it on a
// real bus.
func decodeSocketCAN(b []byte, order binary.ByteOrder) (Frame, error) {
	var f Frame
	if len(b) != canMTU && len(b) != canfdMTU {
		return f, fmt.Errorf("canbus: %d bytes are neither a can_frame (16) nor a canfd_frame (72): %w", len(b), ErrMalformed)
	}
	id := order.Uint32(b[0:4])
	n := b[4]
	switch {
	case id&canERRFlag != 0:
		f.Error, f.ID = true, id&canEFFMask
	case id&canEFFFlag != 0:
		f.Extended, f.ID = true, id&canEFFMask
	default:
		f.ID = id & canSFFMask
	}
	if len(b) == canfdMTU {
		if f.Error || n > MaxFDLen {
			return f, fmt.Errorf("canbus: canfd_frame with id %#x and length %d: %w", id, n, ErrMalformed)
		}
		f.FD, f.BRS, f.ESI = true, b[5]&canfdBRS != 0, b[5]&canfdESI != 0
		f.Len = uint8(RoundFDLen(int(n)))
		copy(f.Data[:f.Len], b[8:])
		return f, f.Validate()
	}
	if n > MaxClassicLen {
		return f, fmt.Errorf("canbus: can_frame with id %#x and length %d: %w", id, n, ErrMalformed)
	}
	f.Len = n
	f.RTR = !f.Error && id&canRTRFlag != 0
	if !f.RTR {
		copy(f.Data[:n], b[8:])
	}
	return f, f.Validate()
}

// encodeSocketCAN lays the valid frame f out as struct can_frame or, for FD
// frames, struct canfd_frame in buf, with the identifier word in byte order
// order, and returns the bytes. Error frames get length 8, as Linux reports
// them.
func encodeSocketCAN(f *Frame, buf *[canfdMTU]byte, order binary.ByteOrder) []byte {
	*buf = [canfdMTU]byte{}
	id, n := f.ID, f.Len
	switch {
	case f.Error:
		id, n = id|canERRFlag, canErrDLC
	case f.Extended:
		id |= canEFFFlag
	}
	if f.RTR {
		id |= canRTRFlag
	}
	order.PutUint32(buf[0:4], id)
	buf[4] = n
	if !f.FD {
		copy(buf[8:canMTU], f.Payload())
		return buf[:canMTU]
	}
	buf[5] = canfdFDF | f.fdFlags()
	copy(buf[8:], f.Payload())
	return buf[:canfdMTU]
}
