package delta

import (
	"io"
)

// heatshrinkReader decodes a heatshrink stream as detools writes it: one
// parameter byte (HeatshrinkParams), then a bit stream, most significant bit
// first, of literals (tag 1, eight bits) and back-references (tag 0, window
// bits of distance-1, lookahead bits of length-1) into a window that starts
// zero-filled. The stream has no end marker: it ends with the input, and
// the zero bits padding its last byte are not a code.
type heatshrinkReader struct {
	in     io.ByteReader
	window []byte // 1<<WindowBits bytes, the decoder's only allocation
	mask   int
	head   int // position of the next output byte, modulo the window

	idxBits, cntBits uint

	cur  byte // input byte being consumed
	left uint // bits of cur not consumed yet

	// A back-reference being copied out.
	dist, count int
	err         error
}

func newHeatshrinkReader(in io.ByteReader, maxMemory int64) (decompressor, error) {
	b, err := in.ReadByte()
	if err != nil {
		return nil, noHeader(err)
	}
	p, err := ParseHeatshrinkParams(b)
	if err != nil {
		return nil, err
	}
	size := int64(1) << p.WindowBits
	if size > maxMemory {
		return nil, &MemoryLimitError{Compression: CompressionHeatshrink, Need: size, Limit: maxMemory}
	}
	return &heatshrinkReader{
		in:      in,
		window:  make([]byte, size),
		mask:    int(size - 1),
		idxBits: uint(p.WindowBits),
		cntBits: uint(p.LookaheadBits),
	}, nil
}

// bits returns the next n (at most 16) bits. It returns io.EOF when the
// input ends first: whatever was started is padding.
func (h *heatshrinkReader) bits(n uint) (int, error) {
	v := 0
	for n > 0 {
		if h.left == 0 {
			c, err := h.in.ReadByte()
			if err != nil {
				return 0, err
			}
			h.cur, h.left = c, 8
		}
		take := min(n, h.left)
		h.left -= take
		v = v<<take | int(h.cur>>h.left)&(1<<take-1)
		n -= take
	}
	return v, nil
}

func (h *heatshrinkReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if h.count > 0 {
			for h.count > 0 && n < len(p) {
				c := h.window[(h.head-h.dist)&h.mask]
				h.window[h.head&h.mask] = c
				h.head++
				p[n] = c
				n++
				h.count--
			}
			continue
		}
		if h.err != nil {
			break
		}
		tag, err := h.bits(1)
		if err != nil {
			h.err = err
			break
		}
		if tag == 1 {
			c, err := h.bits(8)
			if err != nil {
				h.err = err
				break
			}
			h.window[h.head&h.mask] = byte(c)
			h.head++
			p[n] = byte(c)
			n++
			continue
		}
		idx, err := h.bits(h.idxBits)
		if err != nil {
			h.err = err
			break
		}
		cnt, err := h.bits(h.cntBits)
		if err != nil {
			h.err = err
			break
		}
		h.dist, h.count = idx+1, cnt+1
	}
	if n > 0 {
		return n, nil
	}
	return 0, h.err
}

func (*heatshrinkReader) Close() {}
