package delta

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMemory is the decompressor memory limit when Options.MaxMemory is
// zero: detools' default LZMA dictionary (8 MiB), so that every patch
// detools creates with its defaults applies. An ECU-sized applier sets a
// smaller limit; heatshrink, CRLE and uncompressed patches need at most
// 32 KiB.
const DefaultMaxMemory = 8 << 20

// chunkSize is the unit of the applier's I/O buffers, the same 4 KiB
// detools' own applier works in.
const chunkSize = 4096

// maxIdleTriples bounds the diff/extra/adjustment triples that produce no
// output. detools never writes them (except that bsdiff may start with an
// empty diff), but a tiny CRLE patch could repeat one forever.
const maxIdleTriples = 1 << 10

// Options tune the applier. The zero value is ready to use.
type Options struct {
	// MaxMemory bounds, in bytes, the window or dictionary the patch's
	// decompressor may allocate. A patch declaring more is refused with a
	// *MemoryLimitError (LZMA's dictionary is instead limited, and the
	// patch fails only if it refers further back). Zero means
	// DefaultMaxMemory. The applier's other memory is four 4 KiB buffers
	// and the decompressor's fixed state, whatever the image sizes.
	MaxMemory int64
}

func (o *Options) maxMemory() int64 {
	if o == nil || o.MaxMemory <= 0 {
		return DefaultMaxMemory
	}
	return o.MaxMemory
}

// Apply applies the sequential patch read from patch to the old image old,
// writing the new image to w, and returns the number of bytes written. It
// never writes more than the size the patch header declares. Malformed
// patches give the errors of format.go (DetoolsMessage names detools'
// message for each); errors from old and w are returned wrapped.
func Apply(old io.ReaderAt, patch io.Reader, w io.Writer, opts *Options) (int64, error) {
	pr := bufio.NewReaderSize(patchReader{patch}, chunkSize)
	h, err := ReadHeader(pr)
	if err != nil {
		return 0, err
	}
	if h.Type != Sequential {
		return 0, &PatchTypeError{Want: Sequential, Got: h.Type}
	}
	if h.ToSize == 0 {
		// detools writes nothing after the header of an empty image.
		return 0, nil
	}
	s, err := openStream(h, pr, opts.maxMemory())
	if err != nil {
		return 0, err
	}
	defer s.dec.Close()

	a := applier{s: s, size: h.ToSize}
	if err := a.dataFormat(); err != nil {
		return 0, err
	}
	var written int64
	from := func(off int64, p []byte) error { return readOld(old, off, p) }
	to := func(p []byte) error {
		n, err := w.Write(p)
		written += int64(n)
		if err != nil {
			return fmt.Errorf("delta: writing the new image at offset %d: %w", written, err)
		}
		return nil
	}
	if err := a.run(0, from, to); err != nil {
		return written, err
	}
	return written, s.end()
}

// readOld fills p from old at off, refusing to read outside it.
func readOld(old io.ReaderAt, off int64, p []byte) error {
	if off < 0 {
		return fmt.Errorf("%w: copy from offset %d, before the old image", ErrCorrupt, off)
	}
	n, err := old.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF || err == nil {
		return fmt.Errorf("%w: copy of %d bytes from offset %d runs past the old image", ErrCorrupt, len(p), off)
	}
	return fmt.Errorf("delta: reading the old image at offset %d: %w", off+int64(n), err)
}

// applier runs the triples of one sequential patch or in-place segment.
type applier struct {
	s    *stream
	size int64 // bytes the triples must produce
	data [chunkSize]byte
	old  [chunkSize]byte
	idle int
}

// dataFormat reads the data-format block detools puts before the triples,
// which must be empty: its machine-code-aware preprocessing is not
// implemented.
func (a *applier) dataFormat() error {
	n, err := a.s.size()
	if err != nil {
		return err
	}
	if n != 0 {
		return &UnsupportedError{What: "data-format (machine code aware) patches"}
	}
	return nil
}

// run produces a.size bytes from triples: a diff block added bytewise to the
// old image at fromPos (read through from), an extra block copied as is, and
// a signed move of fromPos. It hands the output to to.
func (a *applier) run(fromPos int64, from func(int64, []byte) error, to func([]byte) error) error {
	var pos int64
	for pos < a.size {
		diff, err := a.blockSize(pos, ErrDiffTooLong)
		if err != nil {
			return err
		}
		for done := int64(0); done < diff; {
			c := int(min(diff-done, chunkSize))
			if err := a.s.read(a.data[:c]); err != nil {
				return err
			}
			if err := from(fromPos, a.old[:c]); err != nil {
				return err
			}
			for i := range c {
				a.data[i] += a.old[i]
			}
			if err := to(a.data[:c]); err != nil {
				return err
			}
			fromPos += int64(c)
			done += int64(c)
		}
		pos += diff
		extra, err := a.blockSize(pos, ErrExtraTooLong)
		if err != nil {
			return err
		}
		for done := int64(0); done < extra; {
			c := int(min(extra-done, chunkSize))
			if err := a.s.read(a.data[:c]); err != nil {
				return err
			}
			if err := to(a.data[:c]); err != nil {
				return err
			}
			done += int64(c)
		}
		pos += extra
		adjust, err := a.s.size()
		if err != nil {
			return err
		}
		next := fromPos + adjust
		if (adjust > 0 && next < fromPos) || (adjust < 0 && next > fromPos) {
			return fmt.Errorf("%w: adjustment %d overflows the old image position", ErrCorrupt, adjust)
		}
		fromPos = next
		if diff == 0 && extra == 0 {
			if a.idle++; a.idle > maxIdleTriples {
				return fmt.Errorf("%w: more than %d triples produce no data", ErrCorrupt, maxIdleTriples)
			}
		}
	}
	return nil
}

// blockSize reads a diff or extra block size and checks it against what is
// left of the output.
func (a *applier) blockSize(pos int64, tooLong error) (int64, error) {
	n, err := a.s.size()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: negative block size %d", ErrCorrupt, n)
	}
	if n > a.size-pos {
		return 0, fmt.Errorf("%w: %d bytes at offset %d of %d", tooLong, n, pos, a.size)
	}
	return n, nil
}

// stream is the decompressed patch data with detools' meaning given to its
// ends and failures.
type stream struct {
	dec decompressor
	r   *bufio.Reader
}

func openStream(h Header, pr *bufio.Reader, maxMemory int64) (*stream, error) {
	dec, err := newDecompressor(h.Compression, pr, maxMemory, h.ToSize)
	if err != nil {
		return nil, streamError(err)
	}
	if h.Compression == CompressionNone {
		// The patch reader is buffered already.
		return &stream{dec: dec, r: pr}, nil
	}
	return &stream{dec: dec, r: bufio.NewReaderSize(dec, chunkSize)}, nil
}

func (s *stream) size() (int64, error) {
	n, err := ReadSize(s)
	return n, streamError(err)
}

// read fills p. Unlike io.ReadFull it keeps a clean end of the stream
// (io.EOF, early end) apart from a cut-off one (io.ErrUnexpectedEOF).
func (s *stream) read(p []byte) error {
	for len(p) > 0 {
		n, err := s.r.Read(p)
		p = p[n:]
		if err != nil && len(p) > 0 {
			return streamError(err)
		}
	}
	return nil
}

// ReadByte makes stream an io.ByteReader for ReadSize. Inside the patch
// data detools reports the stream's end, not the size field's.
func (s *stream) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	return b, streamError(err)
}

// end checks that the patch data ends where the new image does.
func (s *stream) end() error {
	var b [1]byte
	for {
		n, err := s.r.Read(b[:])
		switch {
		case n > 0:
			return fmt.Errorf("%w: data follows the last triple", ErrEndNotFound)
		case err == io.EOF:
			return nil
		case err == io.ErrUnexpectedEOF:
			return fmt.Errorf("%w: the compressed stream is cut off after the last triple", ErrEndNotFound)
		case err != nil:
			return streamError(err)
		}
	}
}

// streamError gives a decompressor's error detools' meaning: the stream
// ended properly too early, it was cut off, or it is corrupt. A failure to
// read the patch itself is no patch fault and stays what it was.
func streamError(err error) error {
	switch err {
	case nil:
		return nil
	case io.EOF:
		return ErrEarlyEnd
	case io.ErrUnexpectedEOF:
		return ErrOutOfData
	}
	var re *patchReadError
	if errors.As(err, &re) {
		return err
	}
	if DetoolsMessage(err) != "" {
		return err
	}
	return fmt.Errorf("%w: %v", ErrDecompression, err)
}

// patchReader marks the patch's own read errors so that streamError can
// tell them from corrupt data after they pass through a decompressor.
type patchReader struct{ r io.Reader }

func (p patchReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF {
		err = &patchReadError{err}
	}
	return n, err
}

type patchReadError struct{ err error }

func (e *patchReadError) Error() string { return "delta: reading the patch: " + e.err.Error() }
func (e *patchReadError) Unwrap() error { return e.err }

// Memory is the flash region an in-place patch rewrites: the old image at
// its start on entry, the new image at its start on return.
type Memory interface {
	io.ReaderAt
	io.WriterAt
}

// ApplyInPlace applies detools' in-place patch read from patch to mem, a
// region of memSize bytes that holds the old image at offset 0, and returns
// the new image's size. It first moves the old image up by the patch's
// shift size, then writes the new image segment by segment from offset 0,
// each segment reading only old data above it. It never reads or writes
// outside [0, memSize), but a failure part way leaves mem holding neither
// image: in-place patching is for ECUs that can re-download on failure.
func ApplyInPlace(mem Memory, memSize int64, patch io.Reader, opts *Options) (int64, error) {
	pr := bufio.NewReaderSize(patchReader{patch}, chunkSize)
	h, err := ReadHeader(pr)
	if err != nil {
		return 0, err
	}
	if h.Type != InPlace {
		return 0, &PatchTypeError{Want: InPlace, Got: h.Type}
	}
	if h.ToSize == 0 {
		return 0, nil
	}
	if memSize < h.MemorySize {
		return 0, &MemorySizeError{Need: h.MemorySize, Got: memSize}
	}
	if h.SegmentSize <= 0 || h.ShiftSize > h.MemorySize || h.ToSize > h.MemorySize {
		return 0, fmt.Errorf("%w: in-place header: segment %d, shift %d, new image %d bytes in a %d-byte memory",
			ErrCorrupt, h.SegmentSize, h.ShiftSize, h.ToSize, h.MemorySize)
	}
	s, err := openStream(h, pr, opts.maxMemory())
	if err != nil {
		return 0, err
	}
	defer s.dec.Close()

	a := applier{s: s}
	if err := shiftUp(mem, min(h.FromSize, h.MemorySize-h.ShiftSize), h.ShiftSize, a.data[:]); err != nil {
		return 0, err
	}
	from := func(off int64, p []byte) error {
		if off > h.MemorySize-int64(len(p)) {
			return fmt.Errorf("%w: copy of %d bytes from offset %d runs past the %d-byte memory", ErrCorrupt, len(p), off, h.MemorySize)
		}
		return readOld(mem, off, p)
	}
	for start := int64(0); start < h.ToSize; start += a.size {
		a.size = min(h.SegmentSize, h.ToSize-start)
		if err := a.dataFormat(); err != nil {
			return start, err
		}
		at := start
		to := func(p []byte) error {
			if _, err := mem.WriteAt(p, at); err != nil {
				return fmt.Errorf("delta: writing memory at offset %d: %w", at, err)
			}
			at += int64(len(p))
			return nil
		}
		// Segment i reads the old image from (i+1) segments up, or from
		// where it was shifted to; the last, short segment too.
		fromPos := max(start+min(h.SegmentSize, h.MemorySize), h.ShiftSize)
		if err := a.run(fromPos, from, to); err != nil {
			return start, err
		}
	}
	return h.ToSize, s.end()
}

// shiftUp moves the first n bytes of mem up by shift, from the top down so
// that the overlapping ranges copy correctly.
func shiftUp(mem Memory, n, shift int64, buf []byte) error {
	if shift == 0 {
		return nil
	}
	for end := n; end > 0; {
		c := min(end, int64(len(buf)))
		end -= c
		if err := readOld(mem, end, buf[:c]); err != nil {
			return err
		}
		if _, err := mem.WriteAt(buf[:c], end+shift); err != nil {
			return fmt.Errorf("delta: shifting the old image to offset %d: %w", end+shift, err)
		}
	}
	return nil
}
