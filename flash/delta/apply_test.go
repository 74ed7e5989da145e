package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestSizeEncoding(t *testing.T) {
	tests := []struct {
		v    int64
		want []byte // nil: only the round trip is checked
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{63, []byte{0x3f}},
		{64, []byte{0x80, 0x01}},
		{-1, []byte{0x41}},
		{-64, []byte{0xc0, 0x01}},
		{2780, []byte{0x9c, 0x2b}},
		{1 << 40, nil},
		{-(1 << 40), nil},
		{math.MaxInt64, nil},
		{-math.MaxInt64, nil},
	}
	for _, tt := range tests {
		b := AppendSize(nil, tt.v)
		if tt.want != nil && !bytes.Equal(b, tt.want) {
			t.Errorf("AppendSize(%d) = % x, want % x", tt.v, b, tt.want)
		}
		r := bytes.NewReader(b)
		got, err := ReadSize(r)
		if err != nil || got != tt.v || r.Len() != 0 {
			t.Errorf("ReadSize(% x) = %d, %v with %d bytes left, want %d", b, got, err, r.Len(), tt.v)
		}
	}
}

func TestReadSizeAcceptsTenByteFields(t *testing.T) {
	long := []byte{0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}
	if v, err := ReadSize(bytes.NewReader(long)); v != 1 || err != nil {
		t.Fatalf("ReadSize(% x) = %d, %v, want 1", long, v, err)
	}
}

func TestReadSizeFaults(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrSizeFirstByte},
		{"cut after first byte", []byte{0x80}, ErrSizeNextByte},
		{"cut after second byte", []byte{0x80, 0x80}, ErrSizeNextByte},
		{"beyond 63 bits", bytes.Repeat([]byte{0xff}, 11), ErrSizeOverflow},
		{"bit 63 set", AppendSize(nil, math.MinInt64), ErrSizeOverflow},
		{"eleven bytes of zero bits", append(bytes.Repeat([]byte{0x80}, 10), 0), ErrSizeOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ReadSize(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("ReadSize(% x) error %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: Sequential, Compression: CompressionHeatshrink, ToSize: 615388},
		{Type: Sequential, Compression: CompressionNone},
		{Type: InPlace, Compression: CompressionCRLE, MemorySize: 6000, SegmentSize: 1000, ShiftSize: 3000, FromSize: 2780, ToSize: 2780},
	} {
		b, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		got, err := ReadHeader(bytes.NewReader(b))
		if err != nil || got != h {
			t.Errorf("ReadHeader(% x) = %+v, %v, want %+v", b, got, err, h)
		}
	}
}

func TestReadHeaderFaults(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    error // matched with errors.Is or errors.As
		detools string
	}{
		{"empty", nil, ErrShortHeader, "Failed to read the patch header."},
		{"bad type", []byte{0x70}, &BadPatchTypeError{}, "Bad patch type 7."},
		{"top bit is padding", []byte{0xf0, 0x00}, &BadPatchTypeError{}, "Bad patch type 7."},
		{"hdiffpatch", []byte{0x21, 0x00}, &UnsupportedError{}, "Function not implemented."},
		{"bz2 id 3 is valid in the header", []byte{0x03}, ErrSizeFirstByte, "Failed to read first size byte."},
		{"bad compression", []byte{0x0f}, &BadCompressionError{}, "Expected compression none(0), lzma(1), crle(2), bz2(3), heatshrink(4), zstd(5) or lz4(6), but got 15."},
		{"no size", []byte{0x01}, ErrSizeFirstByte, "Failed to read first size byte."},
		{"cut size", []byte{0x01, 0x80}, ErrSizeNextByte, "Failed to read consecutive size byte."},
		{"negative size", []byte{0x01, 0x41}, ErrCorrupt, "Corrupt patch."},
		{"in-place missing sizes", []byte{0x11, 0x01, 0x01}, ErrSizeFirstByte, "Failed to read first size byte."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadHeader(bytes.NewReader(tt.in))
			if !matches(err, tt.want) {
				t.Fatalf("error %v, want %T %v", err, tt.want, tt.want)
			}
			if got := DetoolsMessage(err); got != tt.detools {
				t.Fatalf("detools message %q, want %q", got, tt.detools)
			}
		})
	}
}

// matches reports whether err is want (a sentinel) or of want's type.
func matches(err, want error) bool {
	switch want.(type) {
	case *BadPatchTypeError:
		var e *BadPatchTypeError
		return errors.As(err, &e)
	case *BadCompressionError:
		var e *BadCompressionError
		return errors.As(err, &e)
	case *UnsupportedError:
		var e *UnsupportedError
		return errors.As(err, &e)
	case *MemoryLimitError:
		var e *MemoryLimitError
		return errors.As(err, &e)
	case *MemorySizeError:
		var e *MemorySizeError
		return errors.As(err, &e)
	case *PatchTypeError:
		var e *PatchTypeError
		return errors.As(err, &e)
	}
	return errors.Is(err, want)
}

func TestCompressionNames(t *testing.T) {
	for c := CompressionNone; c <= CompressionLZ4; c++ {
		got, err := ParseCompression(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCompression(%q) = %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseCompression("gzip"); err == nil {
		t.Error("ParseCompression(gzip) succeeded")
	}
}

func TestHeatshrinkParams(t *testing.T) {
	for _, p := range []HeatshrinkParams{DefaultHeatshrinkParams, {4, 3}, {15, 14}, {10, 5}} {
		b, err := p.Byte()
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if got, err := ParseHeatshrinkParams(b); err != nil || got != p {
			t.Errorf("ParseHeatshrinkParams(%#x) = %+v, %v, want %+v", b, got, err, p)
		}
	}
	if b, _ := DefaultHeatshrinkParams.Byte(); b != 0x44 {
		t.Errorf("default parameter byte %#x, want 0x44 (detools' -w 8 -l 7)", b)
	}
	for _, b := range []byte{0xc0, 0x4f, 0x45, 0x00 | 0x01} {
		if _, err := ParseHeatshrinkParams(b); !errors.Is(err, ErrHeatshrinkHeader) {
			t.Errorf("ParseHeatshrinkParams(%#x) error %v, want ErrHeatshrinkHeader", b, err)
		}
	}
}

// testBitWriter writes a heatshrink bit stream, most significant bit first.
type testBitWriter struct {
	out  []byte
	cur  byte
	used uint
}

func (w *testBitWriter) put(v int, bits uint) {
	for i := int(bits) - 1; i >= 0; i-- {
		w.cur = w.cur<<1 | byte(v>>i&1)
		if w.used++; w.used == 8 {
			w.out = append(w.out, w.cur)
			w.cur, w.used = 0, 0
		}
	}
}

func (w *testBitWriter) bytes() []byte {
	if w.used > 0 {
		return append(w.out, w.cur<<(8-w.used))
	}
	return w.out
}

func TestHeatshrinkDecode(t *testing.T) {
	p := HeatshrinkParams{WindowBits: 8, LookaheadBits: 4}
	var w testBitWriter
	w.put(1, 1)
	w.put('a', 8)
	w.put(1, 1)
	w.put('b', 8)
	w.put(0, 1) // back-reference: distance 2, length 5, overlapping itself
	w.put(2-1, 8)
	w.put(5-1, 4)
	w.put(0, 1) // back-reference before the start: the window starts zeroed
	w.put(100-1, 8)
	w.put(2-1, 4)
	pb, _ := p.Byte()
	in := append([]byte{pb}, w.bytes()...)
	dec, err := newHeatshrinkReader(bufio.NewReader(bytes.NewReader(in)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAllSmall(dec)
	if err != nil {
		t.Fatal(err)
	}
	if want := "abababa\x00\x00"; string(got) != want {
		t.Fatalf("decoded %q, want %q", got, want)
	}
}

// readAllSmall reads r three bytes at a time, so that back-references and
// runs are split across reads.
func readAllSmall(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 3)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestCRLEDecode(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
		err  error
	}{
		{"scattered and repeated", []byte{0, 3, 'a', 'b', 'c', 1, 7, 'x', 0, 1, 'd'}, "abcxxxxxxxd", nil},
		{"empty segment", []byte{0, 0}, "", nil},
		{"long length", append([]byte{1, 0x80, 0x01}, 'z'), string(bytes.Repeat([]byte{'z'}, 128)), nil},
		{"cut inside scattered", []byte{0, 3, 'a'}, "a", io.ErrUnexpectedEOF},
		{"cut before repeated byte", []byte{1, 3}, "", io.ErrUnexpectedEOF},
		{"cut inside length", []byte{0, 0x80}, "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAllSmall(newCRLEReader(bytes.NewReader(tt.in)))
			if string(got) != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("decoded %q, %v, want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := readAllSmall(newCRLEReader(bytes.NewReader([]byte{2, 0}))); err == nil {
		t.Fatal("kind 2 decoded without error")
	}
}

// nonePatch builds an uncompressed sequential patch declaring size bytes,
// with body after the (empty) data-format block.
func nonePatch(size int64, body ...[]byte) []byte {
	b, _ := Header{Type: Sequential, Compression: CompressionNone, ToSize: size}.AppendBinary(nil)
	b = AppendSize(b, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

func sz(v int64) []byte { return AppendSize(nil, v) }

// limitWriter fails the test if more than limit bytes are written.
type limitWriter struct {
	t     *testing.T
	limit int64
	n     int64
}

func (w *limitWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.n > w.limit {
		w.t.Fatalf("wrote %d bytes, more than the declared %d", w.n, w.limit)
	}
	return len(p), nil
}

func TestApplyFaults(t *testing.T) {
	old := []byte("0123456789")
	tests := []struct {
		name    string
		patch   []byte
		want    error
		written int64
	}{
		{"diff longer than the image", nonePatch(5, sz(6)), ErrDiffTooLong, 0},
		{"extra longer than what is left", nonePatch(5, sz(3), []byte{0, 0, 0}, sz(3)), ErrExtraTooLong, 3},
		{"negative diff", nonePatch(5, sz(-1)), ErrCorrupt, 0},
		{"diff before the old image", nonePatch(5, sz(0), sz(0), sz(-1), sz(1), []byte{0}), ErrCorrupt, 0},
		{"diff past the old image", nonePatch(5, sz(0), sz(0), sz(8), sz(5), make([]byte, 5)), ErrCorrupt, 0},
		{"data after the image", nonePatch(2, sz(0), sz(2), []byte("ab"), sz(0), []byte{0}), ErrEndNotFound, 2},
		{"ends inside a block", nonePatch(4, sz(0), sz(4), []byte("ab")), ErrEarlyEnd, 0},
		{"ends before a size", nonePatch(4, sz(0), sz(2), []byte("ab")), ErrEarlyEnd, 2},
		{"data format block", append(nonePatch(4)[:2], sz(3)...), &UnsupportedError{}, 0},
		{"huge image, no data", nonePatch(1<<62, sz(1<<61)), ErrEarlyEnd, 0},
		{"in-place patch", []byte{0x10, 0x00, 0x00, 0x00, 0x00, 0x00}, &PatchTypeError{}, 0},
		{"bz2", []byte{0x03, 0x01, 0x00}, &UnsupportedError{}, 0},
		{"heatshrink without its parameter byte", []byte{0x04, 0x01}, ErrOutOfData, 0},
		{"heatshrink bad parameters", []byte{0x04, 0x01, 0xf0}, ErrHeatshrinkHeader, 0},
		{"lzma cut in its header", []byte{0x01, 0x01, 0x5d, 0, 0}, ErrOutOfData, 0},
		{"lz4 without magic", []byte{0x06, 0x01, 1, 2, 3, 4, 5, 6}, ErrDecompression, 0},
		{"zstd garbage", []byte{0x05, 0x01, 1, 2, 3, 4, 5, 6}, ErrDecompression, 0},
		{"crle bad kind", []byte{0x02, 0x01, 0x07, 0x00}, ErrDecompression, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := ReadHeader(bytes.NewReader(tt.patch))
			w := &limitWriter{t: t, limit: h.ToSize}
			n, err := Apply(bytes.NewReader(old), bytes.NewReader(tt.patch), w, nil)
			if !matches(err, tt.want) {
				t.Fatalf("error %v, want %T %v", err, tt.want, tt.want)
			}
			if DetoolsMessage(err) == "" {
				t.Errorf("error %v has no detools message", err)
			}
			if n != tt.written || w.n != tt.written {
				t.Errorf("reported %d bytes, wrote %d, want %d", n, w.n, tt.written)
			}
		})
	}
}

// failingReader gives data and then a read error that is not the patch's fault.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestApplyReportsPatchReadErrorsAsSuch(t *testing.T) {
	dir := detoolsDir(t)
	old := readFile(t, dir, "foo/old")
	broken := errors.New("link down")
	for _, name := range []string{"foo/none.patch", "foo/patch", "foo/heatshrink.patch", "foo/crle.patch"} {
		patch := readFile(t, dir, name)
		_, err := Apply(bytes.NewReader(old), &failingReader{patch[:len(patch)/2], broken}, io.Discard, nil)
		if !errors.Is(err, broken) || DetoolsMessage(err) != "" {
			t.Errorf("%s: error %v (detools %q), want the read error and no patch fault", name, err, DetoolsMessage(err))
		}
	}
}

func TestApplyIdleTriplesEnd(t *testing.T) {
	// One CRLE segment repeating zero bytes "forever": endless empty triples.
	patch := []byte{0x02, 0x01, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}
	_, err := Apply(bytes.NewReader(nil), bytes.NewReader(patch), io.Discard, nil)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want ErrCorrupt", err)
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	dir := detoolsDir(t)
	old := readFile(t, dir, "foo/old")
	want := readFile(t, dir, "foo/new")
	tests := []struct {
		patch string
		max   int64
		err   error
	}{
		{"foo/heatshrink.patch", 255, &MemoryLimitError{}},
		{"foo/heatshrink.patch", 256, nil},
		{"foo/lz4.patch", 64 << 10, &MemoryLimitError{}},
		// The LZMA dictionary is limited rather than refused: a stream
		// that stays within the limit still applies.
		{"foo/patch", 4096, nil},
		{"foo/zstd.patch", 64 << 10, nil},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		_, err := Apply(bytes.NewReader(old), bytes.NewReader(readFile(t, dir, tt.patch)), &out, &Options{MaxMemory: tt.max})
		if tt.err == nil {
			if err != nil || !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s with %d bytes: %v", tt.patch, tt.max, err)
			}
			continue
		}
		if !matches(err, tt.err) || DetoolsMessage(err) != "Out of memory." {
			t.Errorf("%s with %d bytes: error %v, want %T", tt.patch, tt.max, err, tt.err)
		}
	}
}

// TestApplyTruncatedPatches cuts every detools vector at every length up
// to 2 KiB: each must fail with a patch fault, never panic, never write
// more than the declared size.
func TestApplyTruncatedPatches(t *testing.T) {
	dir := detoolsDir(t)
	for _, name := range []string{"foo/patch", "foo/none.patch", "foo/crle.patch", "foo/heatshrink.patch",
		"foo/heatshrink-10-5.patch", "foo/zstd.patch", "foo/lz4.patch", "shell/patch"} {
		patch := readFile(t, dir, name)
		old := readFile(t, dir, filepath.Dir(name)+"/old")
		for n := range min(len(patch), 2048) {
			h, _ := ReadHeader(bytes.NewReader(patch[:n]))
			w := &limitWriter{t: t, limit: max(h.ToSize, 0)}
			_, err := Apply(bytes.NewReader(old), bytes.NewReader(patch[:n]), w, nil)
			if err == nil {
				t.Fatalf("%s cut to %d bytes applied without error", name, n)
			}
			if DetoolsMessage(err) == "" {
				t.Fatalf("%s cut to %d bytes: %v is not a patch fault", name, n, err)
			}
		}
	}
}

func TestApplyInPlaceFaults(t *testing.T) {
	dir := detoolsDir(t)
	patch := readFile(t, dir, "foo/in-place-3000-500.patch")
	mem := make(memory, 2999)
	_, err := ApplyInPlace(mem, int64(len(mem)), bytes.NewReader(patch), nil)
	if !matches(err, &MemorySizeError{}) || DetoolsMessage(err) != "Expected memory size of at least 3000 bytes, but got 2999." {
		t.Fatalf("error %v (%q), want MemorySizeError", err, DetoolsMessage(err))
	}
	seq := readFile(t, dir, "foo/none.patch")
	if _, err := ApplyInPlace(mem, int64(len(mem)), bytes.NewReader(seq), nil); !matches(err, &PatchTypeError{}) {
		t.Fatalf("sequential patch: error %v, want PatchTypeError", err)
	}
	bad, _ := Header{Type: InPlace, MemorySize: 100, SegmentSize: 0, ToSize: 10}.AppendBinary(nil)
	if _, err := ApplyInPlace(make(memory, 100), 100, bytes.NewReader(bad), nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("zero segment size: error %v, want ErrCorrupt", err)
	}
}

// TestApplyMemoryIndependentOfImageSize applies uncompressed, CRLE and
// heatshrink patches for a 64 KiB and an 8 MiB image and requires the
// applier's allocations to stay under 64 KiB for both.
func TestApplyMemoryIndependentOfImageSize(t *testing.T) {
	const limit = 64 << 10
	for _, size := range []int64{64 << 10, 8 << 20} {
		old := make([]byte, size)
		patches := map[string][]byte{
			// The whole image as one diff block against old.
			"none": nonePatch(size, sz(size), make([]byte, size), sz(0), sz(0)),
			// The same, CRLE: the diff block as a run of zeros.
			"crle": append(append([]byte{0x02}, sz(size)...),
				slices.Concat(crleScatter(slices.Concat(sz(0), sz(size))), crleRun(uint64(size), 0), crleScatter(slices.Concat(sz(0), sz(0))))...),
			"heatshrink": heatshrinkZerosPatch(size),
		}
		for name, patch := range patches {
			alloc := allocated(func() {
				if _, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), io.Discard, nil); err != nil {
					t.Fatalf("%s %d: %v", name, size, err)
				}
			})
			t.Logf("%s, %d-byte image: %d bytes allocated", name, size, alloc)
			if alloc > limit {
				t.Errorf("%s, %d-byte image: applier allocated %d bytes, want at most %d", name, size, alloc, limit)
			}
		}
	}
}

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// peakHeap runs f with a writer for its output and returns how far the live
// heap rose above where it started: at every Write a full collection, then
// the heap in use. Garbage does not count; memory held only between two
// Writes is not seen. It is slow (a collection per Write) and meant for one
// measuring run.
func peakHeap(f func(w io.Writer)) uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	f(writerFunc(func(p []byte) (int, error) {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
		return len(p), nil
	}))
	return peak - base
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// BenchmarkApply applies patches of the MicroPython ESP8266 pair (v1.9.4 ->
// v1.10) for each compression: detools' own, and ours made with default
// options (ours-lzma: a 32 KiB dictionary). It reports throughput in MB/s of
// new image, the heap allocated per apply (garbage included), and the peak
// rise of the live heap while applying (peak-heap-B, see peakHeap) beside
// the old and new images, which are the I/O buffers here.
func BenchmarkApply(b *testing.B) {
	dir := detoolsDir(b)
	const base = "micropython/esp8266-20180511-v1.9.4"
	old := readFile(b, dir, base+".bin")
	newImage := readFile(b, dir, "micropython/esp8266-20190125-v1.10.bin")
	var ours bytes.Buffer
	if err := Create(&ours, old, newImage, nil); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		patch []byte
	}{
		{"lzma", readFile(b, dir, base+"--20190125-v1.10.patch")},
		{"ours-lzma", ours.Bytes()},
		{"none", readFile(b, dir, base+"--20190125-v1.10-none.patch")},
		{"crle", readFile(b, dir, base+"--20190125-v1.10-crle.patch")},
		{"heatshrink", readFile(b, dir, base+"--20190125-v1.10-heatshrink.patch")},
		{"zstd", readFile(b, dir, base+"--20190125-v1.10-zstd.patch")},
		{"lz4", readFile(b, dir, base+"--20190125-v1.10-lz4.patch")},
	} {
		b.Run(c.name, func(b *testing.B) {
			apply := func(w io.Writer) {
				if _, err := Apply(bytes.NewReader(old), bytes.NewReader(c.patch), w, nil); err != nil {
					b.Fatal(err)
				}
			}
			heap := allocated(func() { apply(io.Discard) })
			peak := peakHeap(apply)
			b.SetBytes(int64(len(newImage)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				apply(io.Discard)
			}
			b.ReportMetric(float64(heap), "heap-B/apply")
			b.ReportMetric(float64(peak), "peak-heap-B")
			b.ReportMetric(float64(len(c.patch))*100/float64(len(newImage)), "patch-%")
		})
	}
}

// heatshrinkZerosPatch is a heatshrink patch whose diff block is size
// bytes of back-references 256 bytes back: cheap to build at any size.
func heatshrinkZerosPatch(size int64) []byte {
	p := DefaultHeatshrinkParams
	pb, _ := p.Byte()
	var w testBitWriter
	literals := func(b []byte) {
		for _, c := range b {
			w.put(1, 1)
			w.put(int(c), 8)
		}
	}
	literals(slices.Concat(sz(0), sz(size)))
	run := int64(1) << p.LookaheadBits
	for left := size; left > 0; left -= run {
		w.put(0, 1)
		w.put(255, uint(p.WindowBits)) // distance 256
		w.put(int(min(left, run))-1, uint(p.LookaheadBits))
	}
	literals(slices.Concat(sz(0), sz(0)))
	return slices.Concat([]byte{byte(CompressionHeatshrink)}, sz(size), []byte{pb}, w.bytes())
}

func crleScatter(p []byte) []byte {
	return append(binary.AppendUvarint([]byte{crleScattered}, uint64(len(p))), p...)
}

func crleRun(n uint64, b byte) []byte {
	return append(binary.AppendUvarint([]byte{crleRepeated}, n), b)
}
