package delta

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addDetoolsSeeds adds every patch of the detools test data to f's corpus,
// when the test data is there.
func addDetoolsSeeds(f *testing.F, add func(patch []byte)) {
	dir := detoolsDir(f)
	paths, _ := filepath.Glob(filepath.Join(dir, "*", "*.patch"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) <= 64<<10 {
			add(b)
		}
	}
}

// errSlotFull is a flash slot's end: a small patch can declare and produce
// an exabyte image, which the fuzzer must not wait for.
var errSlotFull = errors.New("slot full")

// slotWriter is a 1 MiB flash slot that fails the test when the applier
// writes past the size the patch declared.
type slotWriter struct {
	t           *testing.T
	declared, n int64
}

func (w *slotWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.declared {
		w.t.Fatalf("wrote %d bytes, more than the declared %d", w.n, w.declared)
	}
	if w.n > 1<<20 {
		return 0, errSlotFull
	}
	return len(p), nil
}

// FuzzApply applies arbitrary patches to detools' foo image, sequential and
// in-place: never a panic, never more output than declared, and every
// failure a patch fault (DetoolsMessage) or the slot's end.
func FuzzApply(f *testing.F) {
	addDetoolsSeeds(f, func(p []byte) { f.Add(p) })
	old := readFile(f, detoolsDir(f), "foo/old")
	opts := &Options{MaxMemory: 1 << 20}
	f.Fuzz(func(t *testing.T, patch []byte) {
		h, _ := ReadHeader(bytes.NewReader(patch))
		w := &slotWriter{t: t, declared: max(h.ToSize, 0)}
		n, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), w, opts)
		if err != nil && DetoolsMessage(err) == "" && !errors.Is(err, errSlotFull) {
			t.Fatalf("%v is not a patch fault", err)
		}
		if err == nil && n != h.ToSize {
			t.Fatalf("applied %d bytes, header says %d", n, h.ToSize)
		}
		mem := make(memory, 4096)
		copy(mem, old)
		if _, err := ApplyInPlace(mem, int64(len(mem)), bytes.NewReader(patch), opts); err != nil && DetoolsMessage(err) == "" {
			t.Fatalf("in-place: %v is not a patch fault", err)
		}
	})
}

// FuzzReadEnvelope decodes arbitrary envelopes: no panic, and whatever
// decodes encodes back to the same bytes.
func FuzzReadEnvelope(f *testing.F) {
	good, _ := NewEnvelope([]byte("a"), []byte("b"), CompressionLZMA).AppendBinary(nil)
	f.Add(good)
	f.Add([]byte(EnvelopeMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := ReadEnvelope(bytes.NewReader(in))
		if err != nil {
			return
		}
		b, err := e.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", e, err)
		}
		if !bytes.Equal(b, in[:EnvelopeSize]) {
			t.Fatalf("re-encoded % x, read % x", b, in[:EnvelopeSize])
		}
	})
}
