package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"
)

// decompressor is the patch data after the header, decompressed. Read
// returns io.EOF where the compressed stream ends properly,
// io.ErrUnexpectedEOF where the input is cut off inside it, and any other
// error where the data is corrupt.
type decompressor interface {
	io.Reader
	// Close releases the decompressor's resources (zstd's decoder).
	Close()
}

// lzmaHeaderLen is the size of the "LZMA alone" header detools writes
// (Python's lzma.FORMAT_ALONE): properties byte, little-endian 32-bit
// dictionary size, little-endian 64-bit uncompressed size (all ones when
// unknown, as detools writes it).
const lzmaHeaderLen = 13

// newDecompressor returns the decompressor for compression c reading the
// compressed stream from r. maxMemory bounds the window or dictionary it may
// allocate; toSize is the new image's size, which bounds how far back an
// LZMA match in a sane patch can reach.
func newDecompressor(c Compression, r *bufio.Reader, maxMemory, toSize int64) (decompressor, error) {
	switch c {
	case CompressionNone:
		return nopCloser{r}, nil
	case CompressionCRLE:
		return nopCloser{newCRLEReader(r)}, nil
	case CompressionHeatshrink:
		return newHeatshrinkReader(r, maxMemory)
	case CompressionLZMA:
		return newLZMAReader(r, maxMemory, toSize)
	case CompressionZstd:
		return newZstdReader(r, maxMemory)
	case CompressionLZ4:
		return newLZ4Reader(r, maxMemory)
	case CompressionBZ2:
		return nil, &UnsupportedError{What: "bz2-compressed patches"}
	}
	return nil, &BadCompressionError{ID: uint8(c)}
}

type nopCloser struct{ io.Reader }

func (nopCloser) Close() {}

// lzmaReader turns the library's errors into the decompressor contract.
type lzmaReader struct {
	r      io.Reader
	capped bool // the dictionary was limited by the memory limit
	need   int64
	limit  int64
}

func newLZMAReader(r *bufio.Reader, maxMemory, toSize int64) (decompressor, error) {
	hdr, err := r.Peek(lzmaHeaderLen)
	if err != nil {
		return nil, noHeader(err)
	}
	// The header's dictionary size is what the encoder could refer back to,
	// not what this stream does: detools writes 8 MiB for any image. A
	// match never reaches further back than the bytes decoded so far, which
	// in a patch are the new image's bytes plus a little framing, so a
	// smaller dictionary decodes every such stream, and the decoder rejects
	// a match beyond it instead of producing wrong bytes.
	var h [lzmaHeaderLen]byte
	copy(h[:], hdr)
	r.Discard(lzmaHeaderLen)
	need := int64(binary.LittleEndian.Uint32(h[1:5]))
	dict := min(need, maxMemory)
	if toSize < 1<<40 {
		dict = min(dict, toSize+toSize/4+lzmaFramingSlack)
	}
	dict = max(dict, lzma.MinDictCap)
	binary.LittleEndian.PutUint32(h[1:5], uint32(dict))
	cfg := lzma.ReaderConfig{DictCap: int(dict)}
	lr, err := cfg.NewReader(io.MultiReader(bytes.NewReader(h[:]), r))
	switch {
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		// Cut off while priming the range decoder after the header.
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, fmt.Errorf("%w: lzma header: %v", ErrDecompression, err)
	}
	return &lzmaReader{r: lr, capped: maxMemory < need && dict == maxMemory, need: need, limit: maxMemory}, nil
}

// lzmaFramingSlack is room in the LZMA dictionary for the patch's size
// fields beyond a quarter of the image.
const lzmaFramingSlack = 64 << 10

func (l *lzmaReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	switch {
	case err == nil, err == io.EOF, err == io.ErrUnexpectedEOF:
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = io.ErrUnexpectedEOF
	case l.capped:
		err = fmt.Errorf("%w (the stream may refer further back than the limited dictionary)",
			&MemoryLimitError{Compression: CompressionLZMA, Need: l.need, Limit: l.limit})
	}
	return n, err
}

func (*lzmaReader) Close() {}

// zstdReader is klauspost's streaming decoder with a bounded window.
type zstdReader struct {
	d     *zstd.Decoder
	limit int64
}

func newZstdReader(r *bufio.Reader, maxMemory int64) (decompressor, error) {
	window := max(maxMemory, zstd.MinWindowSize)
	d, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(window)),
		zstd.WithDecoderMaxMemory(uint64(window)),
	)
	if err != nil {
		return nil, fmt.Errorf("delta: zstd decoder: %w", err)
	}
	return &zstdReader{d: d, limit: maxMemory}, nil
}

func (z *zstdReader) Read(p []byte) (int, error) {
	n, err := z.d.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		err = fmt.Errorf("%w: %v", &MemoryLimitError{Compression: CompressionZstd, Limit: z.limit}, err)
	}
	return n, err
}

func (z *zstdReader) Close() { z.d.Close() }

// lz4FrameMagic starts an LZ4 frame (detools writes one frame with Python's
// lz4.frame, linked 64 KiB blocks by default).
const lz4FrameMagic = 0x184D2204

func newLZ4Reader(r *bufio.Reader, maxMemory int64) (decompressor, error) {
	// Check the block size the frame declares before the library allocates
	// buffers for it: two blocks plus the 64 KiB history of linked blocks.
	b, err := r.Peek(6)
	if err != nil {
		return nil, noHeader(err)
	}
	if binary.LittleEndian.Uint32(b) != lz4FrameMagic {
		return nil, fmt.Errorf("%w: lz4: no frame magic", ErrDecompression)
	}
	var block int64
	switch b[5] >> 4 & 0x7 {
	case 4:
		block = 64 << 10
	case 5:
		block = 256 << 10
	case 6:
		block = 1 << 20
	case 7:
		block = 4 << 20
	default:
		return nil, fmt.Errorf("%w: lz4: bad block size id %d", ErrDecompression, b[5]>>4&0x7)
	}
	if need := 2*block + 128<<10; need > maxMemory {
		return nil, &MemoryLimitError{Compression: CompressionLZ4, Need: need, Limit: maxMemory}
	}
	zr := lz4.NewReader(r)
	if err := zr.Apply(lz4.ConcurrencyOption(1)); err != nil {
		return nil, fmt.Errorf("delta: lz4 decoder: %w", err)
	}
	return nopCloser{zr}, nil
}

// noHeader reports a compressed stream too short for its own header.
func noHeader(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, bufio.ErrBufferFull) {
		return io.ErrUnexpectedEOF
	}
	return err
}
