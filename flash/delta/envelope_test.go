package delta

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

// envelopeFixture is detools' foo pair with its uncompressed patch.
func envelopeFixture(t *testing.T) (old, new, patch []byte) {
	dir := detoolsDir(t)
	return readFile(t, dir, "foo/old"), readFile(t, dir, "foo/new"), readFile(t, dir, "foo/none.patch")
}

func enveloped(t *testing.T, e Envelope, patch []byte) []byte {
	t.Helper()
	b, err := e.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != EnvelopeSize {
		t.Fatalf("envelope is %d bytes, EnvelopeSize says %d", len(b), EnvelopeSize)
	}
	return append(b, patch...)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := NewEnvelope([]byte("base"), []byte("target"), CompressionHeatshrink)
	b := enveloped(t, e, []byte("rest"))
	r := bytes.NewReader(b)
	got, err := ReadEnvelope(r)
	if err != nil || got != e {
		t.Fatalf("ReadEnvelope = %+v, %v, want %+v", got, err, e)
	}
	if r.Len() != 4 {
		t.Fatalf("ReadEnvelope left %d bytes, want the 4 of the patch", r.Len())
	}
}

func TestReadEnvelopeFaults(t *testing.T) {
	good := enveloped(t, NewEnvelope(nil, nil, CompressionLZMA), nil)
	version := bytes.Clone(good)
	version[len(EnvelopeMagic)] = 2
	compression := bytes.Clone(good)
	compression[len(EnvelopeMagic)+1] = 9
	size := bytes.Clone(good)
	size[EnvelopeSize-8] = 0x80
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotEnvelope},
		{"a bare detools patch", []byte{0x01, 0x9c, 0x2b, 0x5d}, ErrNotEnvelope},
		{"cut after the magic", good[:20], ErrEnvelope},
		{"unknown version", version, ErrEnvelope},
		{"unknown compression", compression, ErrEnvelope},
		{"impossible size", size, ErrEnvelope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadEnvelope(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestApplyEnvelope(t *testing.T) {
	old, want, patch := envelopeFixture(t)
	good := NewEnvelope(old, want, CompressionNone)
	otherTarget := good
	otherTarget.TargetSHA256 = sha256.Sum256([]byte("something else"))
	otherSize := good
	otherSize.TargetSize++
	otherCompression := good
	otherCompression.Compression = CompressionLZMA
	tests := []struct {
		name    string
		old     []byte
		env     Envelope
		want    error
		written bool
	}{
		{"applies", old, good, nil, true},
		{"wrong base", want, good, ErrWrongBase, false},
		{"target digest differs", old, otherTarget, ErrTargetDigest, true},
		{"size disagrees with the patch", old, otherSize, ErrEnvelope, false},
		{"compression disagrees with the patch", old, otherCompression, ErrEnvelope, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := ApplyEnvelope(bytes.NewReader(tt.old), int64(len(tt.old)), bytes.NewReader(enveloped(t, tt.env, patch)), &out, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if got := out.Len() > 0; got != tt.written {
				t.Fatalf("wrote %d bytes; want output %v", out.Len(), tt.written)
			}
			if tt.want == nil && !bytes.Equal(out.Bytes(), want) {
				t.Fatal("new image differs")
			}
		})
	}
}
