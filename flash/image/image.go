package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic starts every image.
const Magic = "EKFW"

// HeaderSize is the size of the header in front of the payload.
const HeaderSize = 128

// layoutVersion is the one header layout defined so far.
const layoutVersion = 1

// MaxFieldLen is the longest version string or hardware id.
const MaxFieldLen = 32

// MaxPayload is the largest payload the 32-bit length field holds.
const MaxPayload = 1<<32 - 1

// Header describes an image.
type Header struct {
	Version        string // software version, "1.4.2"
	HardwareID     string // the hardware the image runs on
	ReleaseCounter uint32 // anti-rollback counter; never lower than the running image's
	PayloadLen     uint32
	PayloadSHA256  [sha256.Size]byte
}

// ErrNotImage is returned by Parse for bytes without the magic; other
// problems are *FormatError.
var ErrNotImage = errors.New("image: not a firmware image (no EKFW magic)")

// FormatError is an image whose header or payload is wrong.
type FormatError struct {
	Field  string // the header field, or "payload"
	Reason string
}

func (e *FormatError) Error() string { return fmt.Sprintf("image: %s: %s", e.Field, e.Reason) }

func validField(name, v string) error {
	if len(v) > MaxFieldLen {
		return &FormatError{name, fmt.Sprintf("%d bytes, at most %d", len(v), MaxFieldLen)}
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7E {
			return &FormatError{name, fmt.Sprintf("byte %d (0x%02X) is not printable ASCII", i, v[i])}
		}
	}
	return nil
}

// Build returns an image of payload whose header carries hdr's version,
// hardware id and release counter; Build fills in the payload's length and
// SHA-256.
func Build(hdr Header, payload []byte) ([]byte, error) {
	if err := validField("version", hdr.Version); err != nil {
		return nil, err
	}
	if hdr.Version == "" {
		return nil, &FormatError{"version", "empty"}
	}
	if err := validField("hardware id", hdr.HardwareID); err != nil {
		return nil, err
	}
	if uint64(len(payload)) > MaxPayload {
		return nil, &FormatError{"payload", fmt.Sprintf("%d bytes, at most %d", len(payload), uint64(MaxPayload))}
	}
	b := make([]byte, HeaderSize, HeaderSize+len(payload))
	copy(b, Magic)
	b[4] = layoutVersion
	copy(b[8:40], hdr.Version)
	copy(b[40:72], hdr.HardwareID)
	binary.BigEndian.PutUint32(b[72:], hdr.ReleaseCounter)
	binary.BigEndian.PutUint32(b[76:], uint32(len(payload)))
	sum := sha256.Sum256(payload)
	copy(b[80:112], sum[:])
	return append(b, payload...), nil
}

// ParseHeader decodes the header at the start of b, which may be followed
// by anything (a flash slot holds the image and then erased bytes). It
// checks the header's own fields, not the payload.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return Header{}, ErrNotImage
	}
	if len(b) < HeaderSize {
		return Header{}, &FormatError{"header", fmt.Sprintf("%d bytes, want %d", len(b), HeaderSize)}
	}
	if b[4] != layoutVersion {
		return Header{}, &FormatError{"layout version", fmt.Sprintf("%d, this build reads %d", b[4], layoutVersion)}
	}
	if !allZero(b[5:8]) || !allZero(b[112:128]) {
		return Header{}, &FormatError{"reserved", "not zero"}
	}
	var h Header
	var err error
	if h.Version, err = field("version", b[8:40]); err != nil {
		return Header{}, err
	}
	if h.Version == "" {
		return Header{}, &FormatError{"version", "empty"}
	}
	if h.HardwareID, err = field("hardware id", b[40:72]); err != nil {
		return Header{}, err
	}
	h.ReleaseCounter = binary.BigEndian.Uint32(b[72:])
	h.PayloadLen = binary.BigEndian.Uint32(b[76:])
	copy(h.PayloadSHA256[:], b[80:112])
	return h, nil
}

// Size returns the size of the whole image the header describes.
func (h Header) Size() int64 { return HeaderSize + int64(h.PayloadLen) }

// Parse decodes an image at the start of b and checks its payload's
// SHA-256. It returns the header and the image's bytes (b cut to the
// image's size). Bytes after the image are ignored.
func Parse(b []byte) (Header, []byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Header{}, nil, err
	}
	if int64(len(b)) < h.Size() {
		return Header{}, nil, &FormatError{"payload", fmt.Sprintf("header says %d bytes, only %d follow", h.PayloadLen, len(b)-HeaderSize)}
	}
	img := b[:h.Size()]
	if sha256.Sum256(img[HeaderSize:]) != h.PayloadSHA256 {
		return Header{}, nil, &FormatError{"payload", "SHA-256 does not match the header: the image is damaged or incomplete"}
	}
	return h, img, nil
}

// Digest returns the image's digest: the SHA-256 of all of img.
func Digest(img []byte) [sha256.Size]byte { return sha256.Sum256(img) }

func field(name string, b []byte) (string, error) {
	b = bytes.TrimRight(b, "\x00")
	if bytes.IndexByte(b, 0) >= 0 {
		return "", &FormatError{name, "NUL inside the text"}
	}
	if err := validField(name, string(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
