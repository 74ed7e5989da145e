package delta

import (
	"encoding/binary"
	"fmt"
	"io"
)

// crleReader decodes detools' conditional run-length encoding: segments of
// a kind byte and an unsigned LEB128 length, followed by that many bytes
// (scattered) or by one byte to repeat that many times (repeated). It
// needs no memory beyond its state: a repeated run is produced as it is
// read, however long it claims to be.
type crleReader struct {
	in io.ByteReader

	scattered uint64 // bytes of a scattered segment still to copy
	repeated  uint64 // repetitions of rep still to produce
	rep       byte
	err       error
}

func newCRLEReader(in io.ByteReader) *crleReader { return &crleReader{in: in} }

func (c *crleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case c.scattered > 0:
			b, err := c.in.ReadByte()
			if err != nil {
				c.err = unexpected(err)
				return n, c.errIfNone(n)
			}
			p[n] = b
			n++
			c.scattered--
			continue
		case c.repeated > 0:
			k := int(min(c.repeated, uint64(len(p)-n)))
			for i := range k {
				p[n+i] = c.rep
			}
			n += k
			c.repeated -= uint64(k)
			continue
		case c.err != nil:
			return n, c.errIfNone(n)
		}
		c.err = c.segment()
	}
	return n, nil
}

// segment reads the next segment's header. Between segments the stream may
// end (io.EOF); inside one it may not.
func (c *crleReader) segment() error {
	kind, err := c.in.ReadByte()
	if err != nil {
		return err
	}
	length, err := binary.ReadUvarint(c.in)
	if err != nil {
		return unexpected(err)
	}
	switch kind {
	case crleScattered:
		c.scattered = length
	case crleRepeated:
		if c.rep, err = c.in.ReadByte(); err != nil {
			return unexpected(err)
		}
		c.repeated = length
	default:
		return fmt.Errorf("crle: segment kind %d, want scattered (0) or repeated (1)", kind)
	}
	return nil
}

// errIfNone returns the pending error only once the bytes read before it
// have been delivered.
func (c *crleReader) errIfNone(n int) error {
	if n > 0 {
		return nil
	}
	return c.err
}

// unexpected turns an end of input inside a structure into a truncation.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (*crleReader) Close() {}
