package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// EnvelopeMagic starts every patch envelope.
const EnvelopeMagic = "ECUDELTA"

// envelopeVersion is the one layout defined so far.
const envelopeVersion = 1

// EnvelopeSize is the size of an encoded envelope: magic, version byte,
// compression byte, base and target SHA-256, big-endian 64-bit target size.
const EnvelopeSize = len(EnvelopeMagic) + 2 + 2*sha256.Size + 8

// Envelope is what the flash engine needs to know about a patch before and
// after applying it: which image it applies to, what it must produce, and
// how it is compressed (so that an ECU without that decompressor is given
// the full image instead). On the wire it precedes the detools patch.
type Envelope struct {
	BaseSHA256   [sha256.Size]byte
	TargetSHA256 [sha256.Size]byte
	TargetSize   int64
	Compression  Compression
}

// NewEnvelope describes a patch from base to target compressed with c.
func NewEnvelope(base, target []byte, c Compression) Envelope {
	return Envelope{
		BaseSHA256:   sha256.Sum256(base),
		TargetSHA256: sha256.Sum256(target),
		TargetSize:   int64(len(target)),
		Compression:  c,
	}
}

// The ways an envelope can be wrong. Test them with errors.Is.
var (
	ErrNotEnvelope   = errors.New("delta: not a patch envelope (no ECUDELTA magic)")
	ErrEnvelope      = errors.New("delta: malformed patch envelope")
	ErrWrongBase     = errors.New("delta: patch is for another base image")
	ErrTargetDigest  = errors.New("delta: patched image does not match the envelope")
	errEnvelopeShort = fmt.Errorf("%w: shorter than its %d bytes", ErrEnvelope, EnvelopeSize)
)

// DigestError is a base image or patched image whose SHA-256 differs from
// the envelope's. It matches ErrWrongBase or ErrTargetDigest.
type DigestError struct {
	Target    bool // the patched image, not the base
	Want, Got [sha256.Size]byte
}

func (e *DigestError) Error() string {
	if e.Target {
		return fmt.Sprintf("delta: patched image has SHA-256 %s, the envelope says %s: do not activate it",
			hex.EncodeToString(e.Got[:]), hex.EncodeToString(e.Want[:]))
	}
	return fmt.Sprintf("delta: base image has SHA-256 %s, the patch is for %s: send the full image or the patch for this base",
		hex.EncodeToString(e.Got[:]), hex.EncodeToString(e.Want[:]))
}

// Is makes a DigestError match ErrWrongBase or ErrTargetDigest.
func (e *DigestError) Is(target error) bool {
	return target == ErrTargetDigest && e.Target || target == ErrWrongBase && !e.Target
}

// AppendBinary appends the envelope's encoding to b.
func (e Envelope) AppendBinary(b []byte) ([]byte, error) {
	if e.TargetSize < 0 || int(e.Compression) >= len(compressionNames) {
		return b, fmt.Errorf("delta: envelope with target size %d and compression %d cannot be encoded", e.TargetSize, e.Compression)
	}
	b = append(b, EnvelopeMagic...)
	b = append(b, envelopeVersion, byte(e.Compression))
	b = append(b, e.BaseSHA256[:]...)
	b = append(b, e.TargetSHA256[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(e.TargetSize)), nil
}

// ReadEnvelope reads an envelope from r, leaving r at the detools patch.
func ReadEnvelope(r io.Reader) (Envelope, error) {
	var b [EnvelopeSize]byte
	n, err := io.ReadFull(r, b[:])
	switch {
	case err == nil:
		return parseEnvelope(b[:])
	case err == io.ErrUnexpectedEOF && n >= len(EnvelopeMagic) && string(b[:len(EnvelopeMagic)]) == EnvelopeMagic:
		return Envelope{}, errEnvelopeShort
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return Envelope{}, ErrNotEnvelope
	}
	return Envelope{}, err
}

func parseEnvelope(b []byte) (Envelope, error) {
	if string(b[:len(EnvelopeMagic)]) != EnvelopeMagic {
		return Envelope{}, ErrNotEnvelope
	}
	b = b[len(EnvelopeMagic):]
	if b[0] != envelopeVersion {
		return Envelope{}, fmt.Errorf("%w: version %d, this build reads version %d", ErrEnvelope, b[0], envelopeVersion)
	}
	var e Envelope
	e.Compression = Compression(b[1])
	if int(e.Compression) >= len(compressionNames) {
		return Envelope{}, fmt.Errorf("%w: %w", ErrEnvelope, &BadCompressionError{ID: b[1]})
	}
	b = b[2:]
	copy(e.BaseSHA256[:], b)
	copy(e.TargetSHA256[:], b[sha256.Size:])
	size := binary.BigEndian.Uint64(b[2*sha256.Size:])
	if size > 1<<62 {
		return Envelope{}, fmt.Errorf("%w: target size %d", ErrEnvelope, size)
	}
	e.TargetSize = int64(size)
	return e, nil
}

// ApplyEnvelope applies an enveloped sequential patch: it checks that the
// base image old, of oldSize bytes, has the envelope's SHA-256 before
// writing anything, that the patch header agrees with the envelope, and
// after applying that what it wrote to w has the envelope's size and
// SHA-256. On a *DigestError for the target, w holds bytes that must not be
// activated.
func ApplyEnvelope(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *Options) (Envelope, error) {
	env, err := ReadEnvelope(patch)
	if err != nil {
		return env, err
	}
	got, err := digest(io.NewSectionReader(old, 0, oldSize))
	if err != nil {
		return env, fmt.Errorf("delta: reading the base image: %w", err)
	}
	if got != env.BaseSHA256 {
		return env, &DigestError{Want: env.BaseSHA256, Got: got}
	}
	pr := bufio.NewReaderSize(patch, chunkSize)
	// A header is at most a type byte and five 10-byte sizes.
	peek, _ := pr.Peek(51)
	h, err := ReadHeader(bytes.NewReader(peek))
	if err != nil {
		return env, err
	}
	if h.Type != Sequential || h.ToSize != env.TargetSize || h.Compression != env.Compression {
		return env, fmt.Errorf("%w: it says %d bytes %v, the patch is %v %d bytes %v",
			ErrEnvelope, env.TargetSize, env.Compression, h.Type, h.ToSize, h.Compression)
	}
	sum := sha256.New()
	n, err := Apply(old, pr, io.MultiWriter(w, sum), opts)
	if err != nil {
		return env, err
	}
	if n != env.TargetSize {
		return env, fmt.Errorf("%w: wrote %d bytes, want %d", ErrTargetDigest, n, env.TargetSize)
	}
	if got := [sha256.Size]byte(sum.Sum(nil)); got != env.TargetSHA256 {
		return env, &DigestError{Target: true, Want: env.TargetSHA256, Got: got}
	}
	return env, nil
}

// digest hashes r through a chunk-sized buffer rather than io.Copy's 32 KiB.
func digest(r io.Reader) ([sha256.Size]byte, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, chunkSize)); err != nil {
		return [sha256.Size]byte{}, err
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}
