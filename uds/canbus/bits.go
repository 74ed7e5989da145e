package canbus

import "time"

// This file computes the exact length of a frame on the wire, bit by bit,
// as ISO 11898-1:2015 lays it out: the frame is encoded with its real CRC
// and stuffed, so the count includes exactly the stuff bits that this
// frame needs, not a worst case.
//
// Bit values follow the bus: 0 is dominant, 1 is recessive.

// errorFrameBits is the length the mem bus gives an error frame: an error
// flag (6 dominant bits), the error delimiter (8 recessive bits) and the
// intermission (3). It is the shortest error frame; superposed flags of
// other nodes could stretch it to 23 bits, which the model ignores.
const errorFrameBits = 6 + 8 + 3

// CRC generators of ISO 11898-1:2015, without the leading x^n term.
const (
	crc15Poly = 0x4599   // classic CAN: x^15+x^14+x^10+x^8+x^7+x^4+x^3+1
	crc17Poly = 0x1685B  // CAN FD, up to 16 data bytes
	crc21Poly = 0x102899 // CAN FD, more than 16 data bytes
)

// FrameBits returns how many bits f occupies on the wire, from its start
// of frame through the 3-bit intermission that must follow it before the
// next frame can start: arbitration and control fields, data, CRC field,
// CRC delimiter, ACK slot and delimiter, the 7-bit end of frame, and every
// stuff bit, computed from the frame's actual bit stream (ISO 11898-1:2015
// §10.5): dynamic stuff bits after five equal bits from SOF through the
// CRC sequence in classic frames and through the data field in CAN FD
// frames, whose CRC field instead carries the stuff count and a fixed
// stuff bit before it and after every fourth bit.
//
// nominal counts bits at the nominal (arbitration) bit rate and data the
// bits at the data bit rate, which is non-zero only for CAN FD frames with
// BRS. The rate switches inside two bits, at the sample point of BRS and
// at the sample point of the CRC delimiter; FrameBits counts BRS as a
// nominal bit and the CRC delimiter as a data bit. That makes the frame's
// total duration exact whenever both phases place their sample point at
// the same fraction of the bit (BRS lasts p·Tnom + (1-p)·Tdata, the CRC
// delimiter p·Tdata + (1-p)·Tnom, together one bit of each), and off by
// less than one bit time otherwise.
//
// An error frame (f.Error) counts as errorFrameBits nominal bits: a 6-bit
// error flag, the 8-bit error delimiter and the intermission. FrameBits
// expects a frame that passes Validate; for others it returns a length
// without panicking but the value has no meaning.
func FrameBits(f *Frame) (nominal, data int) {
	var e bitEncoder
	e.encode(f)
	return e.bits[nominalPhase], e.bits[dataPhase]
}

// FrameTime returns how long f occupies a bus configured as c: FrameBits'
// nominal bits at c.Bitrate and its data bits at c.DataBitrate (or
// c.Bitrate when that is zero), each phase rounded up to the nanosecond.
// On an untimed bus (Bitrate zero) it returns zero.
//
// It is the interval between the starts of two back-to-back frames, so a
// sum of FrameTime over the frames of a transfer is the shortest time any
// CAN bus with this configuration needs to carry it.
func (c Config) FrameTime(f *Frame) time.Duration {
	if c.Bitrate <= 0 {
		return 0
	}
	nominal, data := FrameBits(f)
	dataRate := c.DataBitrate
	if dataRate <= 0 {
		dataRate = c.Bitrate
	}
	return bitsTime(nominal, c.Bitrate) + bitsTime(data, dataRate)
}

// bitsTime returns the duration of n bits at rate bit/s, rounded up.
func bitsTime(n, rate int) time.Duration {
	ns := int64(n) * int64(time.Second)
	return time.Duration((ns + int64(rate) - 1) / int64(rate))
}

// Bit-rate phases of a frame.
const (
	nominalPhase = 0
	dataPhase    = 1
)

// bitEncoder lays a frame out on the wire one bit at a time. It keeps
// only counts, so encoding allocates nothing, unless trace is set.
type bitEncoder struct {
	fd      bool   // CAN FD: dynamic stuff bits enter the CRC
	phase   int    // phase of the bits being written
	bits    [2]int // bits on the wire per phase
	last    uint8  // last bit on the wire
	run     int    // equal bits in a row ending with last, stuff bits included
	stuffed int    // dynamic stuff bits inserted

	crc      uint32 // CRC register
	crcPoly  uint32
	crcWidth uint

	tracing bool
	trace   []byte // the wire, '0' and '1', when tracing
}

// encode writes frame f. See FrameBits for the layout.
func (e *bitEncoder) encode(f *Frame) {
	if f.Error {
		e.bits[nominalPhase] = errorFrameBits
		return
	}
	dlc, n := frameDLC(f)
	e.fd = f.FD
	switch {
	case !f.FD:
		e.crcPoly, e.crcWidth = crc15Poly, 15
	case n <= 16:
		// ISO CAN FD CRCs start from a non-zero value, so that leading
		// dominant bits are covered as well.
		e.crcPoly, e.crcWidth, e.crc = crc17Poly, 17, 1<<16
	default:
		e.crcPoly, e.crcWidth, e.crc = crc21Poly, 21, 1<<20
	}
	e.last = 1 // the idle bus is recessive; SOF starts the first run

	e.dyn(0) // SOF
	rtr := uint8(0)
	if f.RTR && !f.FD {
		rtr = 1
	}
	fdf := uint8(0)
	if f.FD {
		fdf = 1
	}
	if f.Extended {
		e.dynN(f.ID>>18, 11) // base identifier
		e.dyn(1)             // SRR
		e.dyn(1)             // IDE
		e.dynN(f.ID, 18)     // identifier extension
		e.dyn(rtr)           // RTR, or RRS in FD
		e.dyn(fdf)           // FDF, or r1 in classic
		if !f.FD {
			e.dyn(0) // r0
		}
	} else {
		e.dynN(f.ID, 11)
		e.dyn(rtr) // RTR, or RRS in FD
		e.dyn(0)   // IDE
		e.dyn(fdf) // FDF, or r0 in classic
	}
	if f.FD {
		e.dyn(0) // res
		if f.BRS {
			e.dyn(1)
			// Bits after BRS, stuff bits included, are at the data rate.
			e.phase = dataPhase
		} else {
			e.dyn(0)
		}
		esi := uint8(0)
		if f.ESI {
			esi = 1
		}
		e.dyn(esi)
	}
	e.dynN(uint32(dlc), 4)
	for _, b := range f.Data[:n] {
		e.dynN(uint32(b), 8)
	}

	if f.FD {
		e.fdCRCField()
	} else {
		crc := e.crc
		for i := 14; i >= 0; i-- {
			e.stuff(uint8(crc>>i) & 1)
		}
		// The CRC sequence is the last stuffed field: five equal bits at
		// its end still take a stuff bit before the delimiter.
		if e.run == 5 {
			e.stuffBit()
		}
	}
	e.put(1) // CRC delimiter (data phase with BRS: see FrameBits)
	e.phase = nominalPhase
	e.put(0) // ACK slot, driven dominant by the receivers
	for range 1 + 7 + 3 {
		e.put(1) // ACK delimiter, end of frame, intermission
	}
}

// fdCRCField writes the CRC field of a CAN FD frame: the stuff count (the
// number of dynamic stuff bits modulo 8, Gray-coded, with an even parity
// bit) and the CRC sequence, with a fixed stuff bit, the complement of the
// bit before it, ahead of the field and after every fourth bit. The fixed
// stuff bit ahead of the field replaces a dynamic stuff bit that five
// equal bits at the end of the data field would otherwise need, which is
// why dyn inserts stuff bits lazily.
func (e *bitEncoder) fdCRCField() {
	gray := uint32(e.stuffed%8) ^ uint32(e.stuffed%8)>>1
	parity := (gray ^ gray>>1 ^ gray>>2) & 1
	count := gray<<1 | parity

	e.put(e.last ^ 1)
	written := 0
	fixed := func(b uint8) {
		if written == 4 {
			e.put(e.last ^ 1)
			written = 0
		}
		e.put(b)
		written++
	}
	for i := 3; i >= 0; i-- {
		b := uint8(count>>i) & 1
		e.crcBit(b)
		fixed(b)
	}
	crc := e.crc
	for i := int(e.crcWidth) - 1; i >= 0; i-- {
		fixed(uint8(crc>>i) & 1)
	}
}

// dynN writes the low n bits of v, most significant first, into the CRC
// and the dynamically stuffed stream.
func (e *bitEncoder) dynN(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		e.dyn(uint8(v>>i) & 1)
	}
}

// dyn writes b into the CRC and the dynamically stuffed stream.
func (e *bitEncoder) dyn(b uint8) {
	e.stuff(b)
	e.crcBit(b)
}

// stuff writes b to the stuffed stream. A stuff bit owed after five equal
// bits is inserted here, before the next bit, so it takes that bit's rate
// and is never inserted when a fixed stuff bit comes next instead.
func (e *bitEncoder) stuff(b uint8) {
	if e.run == 5 {
		e.stuffBit()
	}
	e.put(b)
}

// stuffBit inserts a dynamic stuff bit, which CAN FD also feeds to the CRC.
func (e *bitEncoder) stuffBit() {
	s := e.last ^ 1
	e.stuffed++
	if e.fd {
		e.crcBit(s)
	}
	e.put(s)
}

// crcBit shifts b into the CRC register.
func (e *bitEncoder) crcBit(b uint8) {
	top := uint8(e.crc>>(e.crcWidth-1)) & 1
	e.crc = e.crc << 1 & (1<<e.crcWidth - 1)
	if b != top {
		e.crc ^= e.crcPoly
	}
}

// put puts b on the wire.
func (e *bitEncoder) put(b uint8) {
	e.bits[e.phase]++
	if b == e.last {
		e.run++
	} else {
		e.last, e.run = b, 1
	}
	if e.tracing {
		e.trace = append(e.trace, '0'+b)
	}
}

// frameDLC returns the DLC a frame sends and the number of data bytes that
// follow it, tolerating invalid lengths.
func frameDLC(f *Frame) (dlc uint8, n int) {
	if f.FD {
		dlc = LenToDLC(int(f.Len))
		return dlc, int(fdLens[dlc])
	}
	dlc = min(f.Len, MaxClassicLen)
	if f.RTR {
		return dlc, 0
	}
	return dlc, int(dlc)
}
