package canbus

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Identifier limits.
const (
	MaxStdID = 0x7FF      // largest 11-bit identifier
	MaxExtID = 0x1FFFFFFF // largest 29-bit identifier
)

// Payload limits.
const (
	MaxClassicLen = 8
	MaxFDLen      = 64
)

// Frame is one CAN or CAN FD frame. The zero value is a valid classic data
// frame with identifier 0 and no data.
//
// Frame is a plain value (80 bytes) so that it can be passed and queued
// without allocation.
type Frame struct {
	ID       uint32 // 11-bit, or 29-bit when Extended; for error frames the error class
	Extended bool   // 29-bit identifier (IDE)
	RTR      bool   // remote transmission request (classic only)
	Error    bool   // error frame as reported by SocketCAN (CAN_ERR_FLAG)
	FD       bool   // CAN FD frame (FDF)
	BRS      bool   // FD bit rate switch
	ESI      bool   // FD error state indicator
	Len      uint8  // payload length in bytes; for RTR the requested length
	Data     [MaxFDLen]byte
}

// Payload returns the frame's data bytes, Data[:Len] (empty for RTR frames).
func (f *Frame) Payload() []byte {
	if f.RTR || int(f.Len) > len(f.Data) {
		return nil
	}
	return f.Data[:f.Len]
}

// SetPayload copies p into the frame and sets Len. It does not validate:
// call Validate to check the length against the frame kind.
func (f *Frame) SetPayload(p []byte) {
	f.Len = uint8(copy(f.Data[:], p))
}

// Typed validation errors, so callers can tell what to fix.
var (
	ErrIDRange   = errors.New("identifier out of range")
	ErrLength    = errors.New("invalid payload length")
	ErrFlags     = errors.New("inconsistent frame flags")
	ErrMalformed = errors.New("malformed frame text")
)

// Validate reports whether the frame can exist on a bus: the identifier fits
// its format, the length is valid for classic CAN (0-8) or CAN FD (0-8, 12,
// 16, 20, 24, 32, 48, 64), and the flags agree (no RTR in FD, BRS and ESI
// only in FD).
func (f *Frame) Validate() error {
	if f.Error {
		if f.FD || f.RTR {
			return fmt.Errorf("canbus: error frame with FD or RTR flag: %w", ErrFlags)
		}
		if f.ID > MaxExtID || f.Len > MaxClassicLen {
			return fmt.Errorf("canbus: error frame class %#x len %d: %w", f.ID, f.Len, ErrLength)
		}
		return nil
	}
	if f.Extended && f.ID > MaxExtID {
		return fmt.Errorf("canbus: 29-bit identifier %#x exceeds %#x: %w", f.ID, MaxExtID, ErrIDRange)
	}
	if !f.Extended && f.ID > MaxStdID {
		return fmt.Errorf("canbus: 11-bit identifier %#x exceeds %#x (set Extended for 29-bit): %w", f.ID, MaxStdID, ErrIDRange)
	}
	if f.FD {
		if f.RTR {
			return fmt.Errorf("canbus: CAN FD has no remote frames: %w", ErrFlags)
		}
		if !ValidFDLen(int(f.Len)) {
			return fmt.Errorf("canbus: CAN FD length %d is not one of 0-8, 12, 16, 20, 24, 32, 48, 64: %w", f.Len, ErrLength)
		}
		return nil
	}
	if f.BRS || f.ESI {
		return fmt.Errorf("canbus: BRS/ESI set on a classic frame: %w", ErrFlags)
	}
	if f.Len > MaxClassicLen {
		return fmt.Errorf("canbus: classic CAN length %d exceeds 8 (set FD for longer frames): %w", f.Len, ErrLength)
	}
	return nil
}

// fdLens maps an FD DLC code (0-15) to its length in bytes.
var fdLens = [16]uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64}

// DLCToLen returns the payload length for a 4-bit DLC code. Classic CAN
// frames with a DLC above 8 carry 8 bytes.
func DLCToLen(dlc uint8, fd bool) int {
	dlc &= 0xF
	if !fd && dlc > 8 {
		return 8
	}
	return int(fdLens[dlc])
}

// LenToDLC returns the smallest DLC code whose length is at least n (n <= 64).
func LenToDLC(n int) uint8 {
	for dlc, l := range fdLens {
		if int(l) >= n {
			return uint8(dlc)
		}
	}
	return 15
}

// ValidFDLen reports whether n is a length a CAN FD frame can have.
func ValidFDLen(n int) bool {
	return n >= 0 && n <= MaxFDLen && int(fdLens[LenToDLC(n)]) == n
}

// RoundFDLen returns the smallest valid CAN FD length that holds n bytes
// (n <= 64), the length a padded frame must have.
func RoundFDLen(n int) int {
	return int(fdLens[LenToDLC(n)])
}

// String formats the frame in candump's compact notation: 123#DEADBEEF,
// 12345678#00, 123#R2 for remote frames, 123##1DEADBEEF for FD (the digit
// after ## holds BRS=1 and ESI=2), and error frames with the 20000000 flag.
func (f Frame) String() string {
	var b strings.Builder
	switch {
	case f.Error:
		fmt.Fprintf(&b, "%08X#", f.ID|0x20000000)
	case f.Extended:
		fmt.Fprintf(&b, "%08X#", f.ID)
	default:
		fmt.Fprintf(&b, "%03X#", f.ID)
	}
	switch {
	case f.RTR:
		b.WriteByte('R')
		if f.Len > 0 {
			fmt.Fprintf(&b, "%d", f.Len)
		}
	case f.FD:
		fmt.Fprintf(&b, "#%X", f.fdFlags())
		b.WriteString(strings.ToUpper(hex.EncodeToString(f.Payload())))
	default:
		b.WriteString(strings.ToUpper(hex.EncodeToString(f.Payload())))
	}
	return b.String()
}

// ParseFrame parses candump's compact notation as written by String. It is
// the inverse of String and validates the result.
func ParseFrame(s string) (Frame, error) {
	var f Frame
	idPart, rest, ok := strings.Cut(s, "#")
	if !ok {
		return f, fmt.Errorf("canbus: %q has no '#' between identifier and data: %w", s, ErrMalformed)
	}
	if len(idPart) != 3 && len(idPart) != 8 {
		return f, fmt.Errorf("canbus: identifier %q must have 3 (11-bit) or 8 (29-bit) hex digits: %w", idPart, ErrMalformed)
	}
	var id uint64
	for _, c := range idPart {
		v, ok := hexVal(c)
		if !ok {
			return f, fmt.Errorf("canbus: identifier %q is not hex: %w", idPart, ErrMalformed)
		}
		id = id<<4 | uint64(v)
	}
	if len(idPart) == 8 {
		f.Extended = true
		if id&0x20000000 != 0 {
			f.Error, f.Extended = true, false
			id &^= 0x20000000
		}
	}
	f.ID = uint32(id)
	switch {
	case strings.HasPrefix(rest, "#"):
		if len(rest) < 2 {
			return f, fmt.Errorf("canbus: FD frame %q lacks its flags digit: %w", s, ErrMalformed)
		}
		flags, ok := hexVal(rune(rest[1]))
		if !ok {
			return f, fmt.Errorf("canbus: FD flags %q are not hex: %w", rest[1:2], ErrMalformed)
		}
		f.FD, f.BRS, f.ESI = true, flags&1 != 0, flags&2 != 0
		rest = rest[2:]
	case strings.HasPrefix(rest, "R"):
		f.RTR = true
		if len(rest) > 1 {
			n, ok := hexVal(rune(rest[1]))
			if !ok || len(rest) > 2 {
				return f, fmt.Errorf("canbus: remote frame length %q must be one digit 0-8: %w", rest[1:], ErrMalformed)
			}
			f.Len = n
		}
		return f, f.Validate()
	}
	rest = strings.ReplaceAll(rest, ".", "")
	if len(rest)%2 != 0 || len(rest)/2 > MaxFDLen {
		return f, fmt.Errorf("canbus: data %q must be an even number of hex digits, at most 128: %w", rest, ErrMalformed)
	}
	n, err := hex.Decode(f.Data[:], []byte(rest))
	if err != nil {
		return f, fmt.Errorf("canbus: data %q: %v: %w", rest, err, ErrMalformed)
	}
	f.Len = uint8(n)
	return f, f.Validate()
}

func hexVal(c rune) (uint8, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint8(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint8(c - 'a' + 10), true
	case c >= 'A' && c <= 'F':
		return uint8(c - 'A' + 10), true
	}
	return 0, false
}

// fdFlags returns the frame's BRS and ESI flags as SocketCAN's canfd_frame
// and candump's notation both encode them: BRS 1, ESI 2.
func (f *Frame) fdFlags() uint8 {
	var flags uint8
	if f.BRS {
		flags |= canfdBRS
	}
	if f.ESI {
		flags |= canfdESI
	}
	return flags
}
