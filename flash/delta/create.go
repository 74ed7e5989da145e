package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// CreateOptions tunes Create. Create with nil options makes an lzma patch.
type CreateOptions struct {
	// Compression of the patch data: CompressionLZMA, CompressionHeatshrink,
	// CompressionCRLE or CompressionNone.
	Compression Compression
	// Heatshrink sets heatshrink's window and lookahead; the zero value
	// means DefaultHeatshrinkParams, the sizes detools' C library is
	// usually built with.
	Heatshrink HeatshrinkParams
	// LZMADictCap caps the LZMA dictionary, which the applier must hold in
	// memory (at least 4 KiB); zero means DefaultLZMADictCap and a
	// negative value no cap, when the dictionary is the smallest power of
	// two (at least 4 KiB) that holds all of the patch data.
	LZMADictCap int
}

// DefaultLZMADictCap is the LZMA dictionary of patches made with default
// options: a bootloader applying them holds it in RAM, and patch data gains
// little from more. On the MicroPython ESP8266 pair a 32 KiB dictionary
// gives 68,112 bytes against 68,015 with 1 MiB (+0.14%).
const DefaultLZMADictCap = 32 << 10

// maxImageSize bounds the images Create accepts: the suffix array holds
// 32-bit positions.
const maxImageSize = 1<<31 - 1

// ErrImageTooLarge is returned by Create for an image of 2 GiB or more.
var ErrImageTooLarge = errors.New("delta: image of 2 GiB or more; split it or send it whole")

// Create writes to w a detools sequential patch that turns old into new.
// The output depends only on old, new and opts, never on timing or
// concurrency, so the same inputs always give the same patch.
func Create(w io.Writer, old, new []byte, opts *CreateOptions) error {
	o := CreateOptions{Compression: CompressionLZMA}
	if opts != nil {
		o = *opts
	}
	if o.Heatshrink == (HeatshrinkParams{}) {
		o.Heatshrink = DefaultHeatshrinkParams
	}
	switch o.Compression {
	case CompressionNone, CompressionLZMA, CompressionCRLE:
	case CompressionHeatshrink:
		if err := o.Heatshrink.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("delta: cannot create patches with compression %v; use lzma, heatshrink, crle or none", o.Compression)
	}
	if len(old) > maxImageSize || len(new) > maxImageSize {
		return ErrImageTooLarge
	}
	var data []byte
	if len(new) > 0 {
		// detools writes no patch data at all for an empty new image.
		data = sequentialData(old, new)
	}
	return writePatch(w, new, data, o)
}

// sequentialData returns the uncompressed data of a sequential patch: an
// empty data-format section, then a diff, extra and adjustment per chunk.
func sequentialData(old, new []byte) []byte {
	chunks := selectChunks(newMatcher(old), new)

	var out bytes.Buffer
	out.Grow(len(new) + len(new)/8)
	out.Write(AppendSize(nil, 0)) // no data format
	newPos := 0
	var buf []byte
	for i, c := range chunks {
		buf = AppendSize(buf[:0], int64(c.diffLen))
		out.Write(buf)
		for j := range c.diffLen {
			out.WriteByte(new[newPos+j] - old[c.oldPos+j])
		}
		newPos += c.diffLen
		buf = AppendSize(buf[:0], int64(c.extraLen))
		buf = append(buf, new[newPos:newPos+c.extraLen]...)
		out.Write(buf)
		newPos += c.extraLen
		var adjust int64
		if i+1 < len(chunks) {
			adjust = int64(chunks[i+1].oldPos) - int64(c.oldPos+c.diffLen)
		}
		out.Write(AppendSize(buf[:0], adjust))
	}
	return out.Bytes()
}

// writePatch writes the header and data, compressed as o says.
func writePatch(w io.Writer, new, data []byte, o CreateOptions) error {
	hdr, err := Header{Type: Sequential, Compression: o.Compression, ToSize: int64(len(new))}.AppendBinary(nil)
	if err != nil {
		return err
	}
	var body []byte
	if len(new) > 0 {
		body, err = compress(data, o)
		if err != nil {
			return err
		}
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("delta: write patch: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("delta: write patch: %w", err)
	}
	return nil
}

// compress compresses the patch data as o says.
func compress(data []byte, o CreateOptions) ([]byte, error) {
	switch o.Compression {
	case CompressionNone:
		return data, nil
	case CompressionLZMA:
		return compressLZMA(data, o.LZMADictCap)
	case CompressionHeatshrink:
		return heatshrinkEncode(data, o.Heatshrink)
	default: // CompressionCRLE; Create refused the others
		return crleEncode(data), nil
	}
}

// compressLZMA writes data as an LZMA-alone stream with an end marker and
// no size in its header, which is what detools writes and reads. The
// dictionary is the smallest power of two that holds all of data, or at
// most dictCap (DefaultLZMADictCap when zero, no cap when negative) if that
// is smaller: a larger one compresses little better and makes the applier
// reserve more memory.
func compressLZMA(data []byte, dictCap int) ([]byte, error) {
	dict := lzmaMinDict
	for dict < len(data) {
		dict <<= 1
	}
	if dictCap == 0 {
		dictCap = DefaultLZMADictCap
	}
	if dictCap > 0 && dict > dictCap {
		dict = lzmaDictAtMost(dictCap)
	}
	return lzmaCompress(data, dict), nil
}

// lzmaDictAtMost returns the largest dictionary size of the form 2^n or
// 2^n+2^(n-1) that is at most limit, and at least 4 KiB: liblzma's
// stricter .lzma reader (Python's lzma module, which detools' Python
// applier uses) accepts no other sizes.
func lzmaDictAtMost(limit int) int {
	dict := lzmaMinDict
	for {
		switch {
		case dict*2 <= limit:
			dict *= 2
		case dict+dict/2 <= limit:
			return dict + dict/2
		default:
			return dict
		}
	}
}
