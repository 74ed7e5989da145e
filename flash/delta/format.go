package delta

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// PatchType is the high nibble of a detools patch's first byte.
type PatchType uint8

// The patch types detools defines. Only Sequential and InPlace are applied
// here; HDiffPatch is recognised so that it is reported as unsupported rather
// than as garbage.
const (
	Sequential PatchType = 0
	InPlace    PatchType = 1
	HDiffPatch PatchType = 2
)

// String returns detools' name of the patch type.
func (t PatchType) String() string {
	switch t {
	case Sequential:
		return "sequential"
	case InPlace:
		return "in-place"
	case HDiffPatch:
		return "hdiffpatch"
	}
	return fmt.Sprintf("patch-type(%d)", uint8(t))
}

// Compression is the low nibble of a detools patch's first byte: how the
// patch data after the header is compressed.
type Compression uint8

// The compressions detools defines, with its numeric ids. BZ2 is recognised
// but not applied (see docs/delta.md).
const (
	CompressionNone       Compression = 0
	CompressionLZMA       Compression = 1
	CompressionCRLE       Compression = 2
	CompressionBZ2        Compression = 3
	CompressionHeatshrink Compression = 4
	CompressionZstd       Compression = 5
	CompressionLZ4        Compression = 6
)

var compressionNames = [...]string{"none", "lzma", "crle", "bz2", "heatshrink", "zstd", "lz4"}

// String returns detools' name of the compression ("lzma", "heatshrink", ...).
func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression returns the compression detools names s.
func ParseCompression(s string) (Compression, error) {
	for i, name := range compressionNames {
		if s == name {
			return Compression(i), nil
		}
	}
	return 0, fmt.Errorf("delta: unknown compression %q: want one of %s", s, strings.Join(compressionNames[:], ", "))
}

// Header is the uncompressed start of a detools patch. Sequential patches
// carry only Compression and ToSize; in-place patches carry all fields.
type Header struct {
	Type        PatchType
	Compression Compression
	// ToSize is the size of the new image in bytes.
	ToSize int64

	// MemorySize is the size of the flash region an in-place patch works in,
	// SegmentSize the unit it rewrites at a time, ShiftSize how far the old
	// image is moved up before patching, and FromSize the old image's size.
	MemorySize  int64
	SegmentSize int64
	ShiftSize   int64
	FromSize    int64
}

// AppendBinary appends the header's encoding to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if h.Type > 0x7 || h.Compression > 0xf {
		return b, fmt.Errorf("delta: header type %d or compression %d does not fit its nibble", h.Type, h.Compression)
	}
	b = append(b, byte(h.Type)<<4|byte(h.Compression))
	var sizes []int64
	switch h.Type {
	case Sequential:
		sizes = []int64{h.ToSize}
	case InPlace:
		sizes = []int64{h.MemorySize, h.SegmentSize, h.ShiftSize, h.FromSize, h.ToSize}
	default:
		return b, fmt.Errorf("delta: cannot encode a %v header", h.Type)
	}
	for _, s := range sizes {
		if s < 0 {
			return b, fmt.Errorf("delta: negative size %d in a %v header", s, h.Type)
		}
		b = AppendSize(b, s)
	}
	return b, nil
}

// ReadHeader reads a sequential or in-place patch header. It reports an
// unknown patch type with *BadPatchTypeError and an unknown compression with
// *BadCompressionError, after reading only the first byte.
func ReadHeader(r io.ByteReader) (Header, error) {
	first, err := r.ReadByte()
	if err != nil {
		return Header{}, ErrShortHeader
	}
	// The top bit is padding in detools' bit layout (p1u3u4).
	h := Header{Type: PatchType(first >> 4 & 0x7), Compression: Compression(first & 0xf)}
	switch h.Type {
	case Sequential, InPlace:
	case HDiffPatch:
		return h, &UnsupportedError{What: "hdiffpatch patches"}
	default:
		return h, &BadPatchTypeError{Type: h.Type}
	}
	if int(h.Compression) >= len(compressionNames) {
		return h, &BadCompressionError{ID: uint8(h.Compression)}
	}
	fields := []*int64{&h.ToSize}
	if h.Type == InPlace {
		fields = []*int64{&h.MemorySize, &h.SegmentSize, &h.ShiftSize, &h.FromSize, &h.ToSize}
	}
	for _, f := range fields {
		if *f, err = ReadSize(r); err != nil {
			return h, err
		}
		if *f < 0 {
			return h, fmt.Errorf("%w: negative size %d in the header", ErrCorrupt, *f)
		}
	}
	return h, nil
}

// AppendSize appends detools' encoding of a signed size: the first byte holds
// a continuation bit (0x80), a sign bit (0x40) and the six lowest bits of the
// magnitude; each following byte a continuation bit and the next seven bits.
// Zero is the single byte 0x00.
func AppendSize(b []byte, v int64) []byte {
	if v == 0 {
		return append(b, 0)
	}
	var first byte
	m := uint64(v)
	if v < 0 {
		first = 0x40
		m = -m // two's complement magnitude; correct for math.MinInt64 too
	}
	first |= byte(m & 0x3f)
	m >>= 6
	if m == 0 {
		return append(b, first)
	}
	b = append(b, first|0x80)
	for m >= 0x80 {
		b = append(b, byte(m&0x7f)|0x80)
		m >>= 7
	}
	return append(b, byte(m))
}

// ReadSize reads a size written by AppendSize. A stream that ends before the
// first byte gives ErrSizeFirstByte, one that ends inside the field
// ErrSizeNextByte; a magnitude beyond 63 bits or a field longer than ten
// bytes gives ErrSizeOverflow.
func ReadSize(r io.ByteReader) (int64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, sizeReadError(err, ErrSizeFirstByte)
	}
	negative := c&0x40 != 0
	m := uint64(c & 0x3f)
	for shift := uint(6); c&0x80 != 0; shift += 7 {
		if c, err = r.ReadByte(); err != nil {
			return 0, sizeReadError(err, ErrSizeNextByte)
		}
		p := uint64(c & 0x7f)
		// Ten bytes carry 69 bits; an eleventh, even of zero bits, is
		// refused so that an endless run of 0x80 cannot stall the reader.
		if shift >= 63 || p>>(63-shift) != 0 {
			return 0, ErrSizeOverflow
		}
		m |= p << shift
	}
	if negative {
		return -int64(m), nil
	}
	return int64(m), nil
}

// sizeReadError keeps a decompressor's own failure (early end, corrupt
// data) visible instead of hiding it behind "the field was cut off".
func sizeReadError(err, ended error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ended
	}
	return err
}

// HeatshrinkParams are the window and lookahead sizes, as powers of two, of
// a heatshrink stream. detools writes them as the first byte of the
// compressed data: window-4 in the high nibble, lookahead-3 in the low one.
type HeatshrinkParams struct {
	WindowBits    uint8
	LookaheadBits uint8
}

// DefaultHeatshrinkParams are detools' defaults (-w 8 -l 7): a 256-byte
// window, which an ECU bootloader can afford.
var DefaultHeatshrinkParams = HeatshrinkParams{WindowBits: 8, LookaheadBits: 7}

// The limits heatshrink's decoder accepts.
const (
	heatshrinkMinWindowBits    = 4
	heatshrinkMaxWindowBits    = 15
	heatshrinkMinLookaheadBits = 3
)

// Validate reports whether heatshrink's decoder accepts p: a window of 4 to
// 15 bits and a lookahead of at least 3 bits and less than the window.
func (p HeatshrinkParams) Validate() error {
	if p.WindowBits < heatshrinkMinWindowBits || p.WindowBits > heatshrinkMaxWindowBits ||
		p.LookaheadBits < heatshrinkMinLookaheadBits || p.LookaheadBits >= p.WindowBits {
		return fmt.Errorf("%w: heatshrink window %d bits, lookahead %d bits: want a window of %d to %d bits and a lookahead of %d bits up to the window",
			ErrHeatshrinkHeader, p.WindowBits, p.LookaheadBits, heatshrinkMinWindowBits, heatshrinkMaxWindowBits, heatshrinkMinLookaheadBits)
	}
	return nil
}

// Byte returns the parameter byte that starts a heatshrink stream.
func (p HeatshrinkParams) Byte() (byte, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	return (p.WindowBits-4)<<4 | (p.LookaheadBits - 3), nil
}

// ParseHeatshrinkParams decodes the parameter byte that starts a heatshrink
// stream and validates it.
func ParseHeatshrinkParams(b byte) (HeatshrinkParams, error) {
	p := HeatshrinkParams{WindowBits: b>>4 + 4, LookaheadBits: b&0xf + 3}
	return p, p.Validate()
}

// CRLE segment kinds and the shortest run detools encodes as repeated. A
// CRLE stream is a sequence of segments: kind byte, length as an unsigned
// LEB128 varint (encoding/binary's Uvarint, not detools' size encoding), then
// the bytes (scattered) or the one byte to repeat (repeated).
const (
	crleScattered    = 0
	crleRepeated     = 1
	crleMinRepeatLen = 6
)

// detoolsError is a malformed-patch error: a Go message for logs and the
// message detools itself prints for the same fault, so that the project's
// behaviour can be checked against detools' test vectors.
type detoolsError struct {
	msg, detools string
}

func (e *detoolsError) Error() string   { return e.msg }
func (e *detoolsError) Detools() string { return e.detools }

// The errors a malformed patch gives. They may be wrapped with detail; test
// them with errors.Is. DetoolsMessage gives detools' wording.
var (
	ErrShortHeader   = &detoolsError{"delta: patch is empty: no header byte", "Failed to read the patch header."}
	ErrSizeFirstByte = &detoolsError{"delta: patch ends where a size field should start", "Failed to read first size byte."}
	ErrSizeNextByte  = &detoolsError{"delta: patch ends inside a size field", "Failed to read consecutive size byte."}
	ErrSizeOverflow  = &detoolsError{"delta: size field exceeds 63 bits", "Corrupt patch, overflow."}
	// ErrEndNotFound: the new image is complete but the patch data goes on
	// or its compressed stream is not properly terminated.
	ErrEndNotFound = &detoolsError{"delta: patch data does not end where the new image does", "End of patch not found."}
	// ErrEarlyEnd: the patch data ended cleanly before the new image was complete.
	ErrEarlyEnd = &detoolsError{"delta: patch data ends before the new image is complete", "Early end of patch data."}
	// ErrOutOfData: the compressed stream was cut off in the middle.
	ErrOutOfData     = &detoolsError{"delta: patch is truncated inside its compressed data", "Out of patch data."}
	ErrDecompression = &detoolsError{"delta: patch data does not decompress", "Patch decompression failed."}
	ErrDiffTooLong   = &detoolsError{"delta: diff block runs past the new image's declared size", "Patch diff data too long."}
	ErrExtraTooLong  = &detoolsError{"delta: extra block runs past the new image's declared size", "Patch extra data too long."}
	// ErrCorrupt: a structurally impossible value, like a negative length or
	// a copy from outside the old image.
	ErrCorrupt          = &detoolsError{"delta: corrupt patch", "Corrupt patch."}
	ErrHeatshrinkHeader = &detoolsError{"delta: bad heatshrink parameters", "Heatshrink header."}
)

// BadPatchTypeError is a header whose patch type detools does not define.
type BadPatchTypeError struct{ Type PatchType }

func (e *BadPatchTypeError) Error() string {
	return fmt.Sprintf("delta: patch type %d is not a detools patch type (0 sequential, 1 in-place): is this a detools patch?", uint8(e.Type))
}

// Detools returns detools' message for the fault.
func (e *BadPatchTypeError) Detools() string { return fmt.Sprintf("Bad patch type %d.", uint8(e.Type)) }

// PatchTypeError is a valid patch of another type than the caller applies,
// such as an in-place patch given to Apply.
type PatchTypeError struct{ Want, Got PatchType }

func (e *PatchTypeError) Error() string {
	return fmt.Sprintf("delta: want a %v patch, got a %v patch", e.Want, e.Got)
}

// Detools returns detools' message for the fault.
func (e *PatchTypeError) Detools() string {
	return fmt.Sprintf("Expected patch type %d, but got %d.", uint8(e.Want), uint8(e.Got))
}

// BadCompressionError is a header whose compression id detools does not define.
type BadCompressionError struct{ ID uint8 }

func (e *BadCompressionError) Error() string {
	return fmt.Sprintf("delta: compression id %d is not one detools defines (0 to %d)", e.ID, len(compressionNames)-1)
}

// Detools returns detools' message for the fault.
func (e *BadCompressionError) Detools() string {
	names := make([]string, len(compressionNames))
	for i, n := range compressionNames {
		names[i] = fmt.Sprintf("%s(%d)", n, i)
	}
	return fmt.Sprintf("Expected compression %s or %s, but got %d.",
		strings.Join(names[:len(names)-1], ", "), names[len(names)-1], e.ID)
}

// UnsupportedError is a well-formed patch using a detools feature this
// package does not implement (bz2, hdiffpatch, data formats).
type UnsupportedError struct{ What string }

func (e *UnsupportedError) Error() string {
	return "delta: " + e.What + " are not supported; create the patch without them (see docs/delta.md)"
}

// Detools returns detools' C library message for the fault.
func (e *UnsupportedError) Detools() string { return "Function not implemented." }

// MemoryLimitError is a patch whose decompressor needs a larger window or
// dictionary than Options.MaxMemory allows. Need is 0 where the
// decompressor does not say how much it needs.
type MemoryLimitError struct {
	Compression Compression
	Need, Limit int64
}

func (e *MemoryLimitError) Error() string {
	need := "a larger window"
	if e.Need > 0 {
		need = fmt.Sprintf("a %d-byte window", e.Need)
	}
	return fmt.Sprintf("delta: %v patch needs %s than the %d-byte memory limit allows: raise Options.MaxMemory or create the patch with a smaller window",
		e.Compression, need, e.Limit)
}

// Detools returns detools' C library message for the fault.
func (e *MemoryLimitError) Detools() string { return "Out of memory." }

// DetoolsMessage returns the message detools reports for the fault err
// stands for, or "" if err is not a patch fault.
func DetoolsMessage(err error) string {
	var d interface{ Detools() string }
	if errors.As(err, &d) {
		return d.Detools()
	}
	return ""
}

// MemorySizeError is an in-place patch for a larger memory than the one
// given.
type MemorySizeError struct{ Need, Got int64 }

func (e *MemorySizeError) Error() string {
	return fmt.Sprintf("delta: in-place patch needs a %d-byte memory, got %d bytes: is it for this ECU?", e.Need, e.Got)
}

// Detools returns detools' message for the fault.
func (e *MemorySizeError) Detools() string {
	return fmt.Sprintf("Expected memory size of at least %d bytes, but got %d.", e.Need, e.Got)
}
