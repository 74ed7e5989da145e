package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// testdataDir holds detools' test vectors (see its README.md).
const testdataDir = "../../../shared/testdata/detools"

// imagePair is an old and a new image from the test data, with the patches
// detools made between them.
type imagePair struct {
	name     string
	old, new string   // paths relative to testdataDir
	detools  []string // detools' sequential patches for the pair
	oldData  []byte
	newData  []byte
	detoolsN map[Compression]int // smallest detools patch size per compression
}

// realPairs returns every distinct image pair with an `ok` sequential patch
// in MANIFEST.tsv, in file order, skipping the test if the data is absent.
func realPairs(tb testing.TB) []*imagePair {
	tb.Helper()
	f, err := os.Open(filepath.Join(testdataDir, "MANIFEST.tsv"))
	if err != nil {
		tb.Skipf("detools test data not found: %v", err)
	}
	defer f.Close()
	var pairs []*imagePair
	byKey := map[string]*imagePair{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 5 || fields[0] != "sequential" || fields[4] != "ok" {
			continue
		}
		key := fields[1] + "\x00" + fields[2]
		p := byKey[key]
		if p == nil {
			p = &imagePair{name: fields[1] + " -> " + fields[2], old: fields[1], new: fields[2], detoolsN: map[Compression]int{}}
			if p.oldData, err = os.ReadFile(filepath.Join(testdataDir, p.old)); err != nil {
				tb.Fatal(err)
			}
			if p.newData, err = os.ReadFile(filepath.Join(testdataDir, p.new)); err != nil {
				tb.Fatal(err)
			}
			byKey[key] = p
			pairs = append(pairs, p)
		}
		patch, err := os.ReadFile(filepath.Join(testdataDir, fields[3]))
		if err != nil {
			tb.Fatal(err)
		}
		p.detools = append(p.detools, fields[3])
		if len(patch) > 0 {
			c := Compression(patch[0] & 0xf)
			if n, ok := p.detoolsN[c]; !ok || len(patch) < n {
				p.detoolsN[c] = len(patch)
			}
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return pairs
}

// create makes a patch or fails the test.
func create(tb testing.TB, old, new []byte, c Compression) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := Create(&b, old, new, &CreateOptions{Compression: c}); err != nil {
		tb.Fatalf("Create(%v): %v", c, err)
	}
	return b.Bytes()
}

// patchCache holds the patches of the real pairs, which several tests
// check, so that each is created once per test binary.
var patchCache sync.Map // key: pair name and compression

// pairPatch returns our patch of p with compression c.
func pairPatch(tb testing.TB, p *imagePair, c Compression) []byte {
	tb.Helper()
	key := fmt.Sprint(p.name, "/", c)
	if patch, ok := patchCache.Load(key); ok {
		return patch.([]byte)
	}
	patch := create(tb, p.oldData, p.newData, c)
	patchCache.Store(key, patch)
	return patch
}

// roundTrip applies patch to old with the package's applier and checks
// that it gives new.
func roundTrip(tb testing.TB, old, new, patch []byte) {
	tb.Helper()
	var got bytes.Buffer
	n, err := Apply(bytes.NewReader(old), bytes.NewReader(patch), &got, nil)
	if err != nil {
		tb.Fatalf("Apply: %v (%d bytes written)", err, n)
	}
	if !bytes.Equal(got.Bytes(), new) {
		tb.Fatalf("Apply gave %d bytes (sha256 %x), want %d (sha256 %x)",
			got.Len(), sha256.Sum256(got.Bytes()), len(new), sha256.Sum256(new))
	}
}

var createCompressions = []Compression{CompressionLZMA, CompressionHeatshrink, CompressionCRLE, CompressionNone}

func TestCreateRoundTripsRealPairs(t *testing.T) {
	for _, p := range realPairs(t) {
		for _, c := range createCompressions {
			if testing.Short() && len(p.newData) > 100_000 && c != CompressionLZMA {
				continue
			}
			t.Run(fmt.Sprintf("%s/%v", p.name, c), func(t *testing.T) {
				patch := pairPatch(t, p, c)
				roundTrip(t, p.oldData, p.newData, patch)
				t.Logf("%d bytes, %.2f%% of the new image", len(patch), percent(len(patch), len(p.newData)))
			})
		}
	}
}

// TestCreateBeatsDetools defends the goal of the creator: on every pair its
// lzma and heatshrink patches are smaller than detools' own.
func TestCreateBeatsDetools(t *testing.T) {
	for _, p := range realPairs(t) {
		for _, c := range []Compression{CompressionLZMA, CompressionHeatshrink} {
			theirs, ok := p.detoolsN[c]
			if !ok || len(p.newData) == 0 {
				continue
			}
			ours := len(pairPatch(t, p, c))
			if ours >= theirs {
				t.Errorf("%s %v: our patch has %d bytes, detools' %d", p.name, c, ours, theirs)
			}
		}
	}
}

// TestCreateKeepsItsRatios guards the ratios reached on the MicroPython
// pair against regressions. The targets are 10.0% (lzma) and
// 14.0% (heatshrink); detools reaches 11.7% and 15.8% (see
// docs/benchmarks-delta-draft.md for why the targets are missed).
func TestCreateKeepsItsRatios(t *testing.T) {
	for _, p := range realPairs(t) {
		if !strings.HasPrefix(p.old, "micropython/") {
			continue
		}
		for _, tc := range []struct {
			c       Compression
			percent float64
		}{{CompressionLZMA, 11.1}, {CompressionHeatshrink, 14.9}} {
			n := len(pairPatch(t, p, tc.c))
			if got := percent(n, len(p.newData)); got > tc.percent {
				t.Errorf("%v patch is %.2f%% of the new image, want at most %.1f%%", tc.c, got, tc.percent)
			}
		}
	}
}

func TestCreateRoundTripsSyntheticInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	base := random(20000)
	edited := bytes.Clone(base)
	for i := 0; i < len(edited); i += 97 {
		edited[i] += 3 // a pointer shift every 97 bytes
	}
	edited = append(edited[:5000], append(random(300), edited[5000:]...)...)
	runs := bytes.Repeat([]byte{0xff}, 10000)
	tests := []struct {
		name     string
		old, new []byte
	}{
		{"both empty", nil, nil},
		{"empty old", nil, random(1000)},
		{"empty new", random(1000), nil},
		{"one byte", []byte{1}, []byte{2}},
		{"identical", base, base},
		{"unrelated", random(5000), random(7000)},
		{"edited", base, edited},
		{"runs", runs, append(bytes.Clone(runs), 1)},
		{"new is old twice", base[:3000], append(bytes.Clone(base[:3000]), base[:3000]...)},
	}
	for _, tc := range tests {
		for _, c := range createCompressions {
			t.Run(fmt.Sprintf("%s/%v", tc.name, c), func(t *testing.T) {
				roundTrip(t, tc.old, tc.new, create(t, tc.old, tc.new, c))
			})
		}
	}
}

// TestCreateRoundTripsRandomEdits is a property test: any new image made
// from an old one by random insertions, deletions, moves and byte changes
// round-trips under every compression.
func TestCreateRoundTripsRandomEdits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 60 {
		old := make([]byte, r.IntN(3000))
		for j := range old {
			old[j] = byte(r.IntN(1 + r.IntN(256))) // from uniform to skewed alphabets
		}
		new := bytes.Clone(old)
		for range r.IntN(20) {
			at := r.IntN(len(new) + 1)
			switch r.IntN(4) {
			case 0:
				ins := make([]byte, r.IntN(50))
				for j := range ins {
					ins[j] = byte(r.Uint32())
				}
				new = append(new[:at], append(ins, new[at:]...)...)
			case 1:
				new = append(new[:at], new[min(at+r.IntN(50), len(new)):]...)
			case 2:
				if at < len(new) {
					new[at] += byte(1 + r.IntN(255))
				}
			case 3:
				from := r.IntN(len(new) + 1)
				new = append(new[:at:at], append(bytes.Clone(new[from:min(from+r.IntN(100), len(new))]), new[at:]...)...)
			}
		}
		c := createCompressions[i%len(createCompressions)]
		roundTrip(t, old, new, create(t, old, new, c))
	}
}

func TestCreateIsDeterministic(t *testing.T) {
	pairs := realPairs(t)
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].newData) < len(pairs[j].newData) })
	for _, p := range pairs[:min(3, len(pairs))] {
		for _, c := range createCompressions {
			a := create(t, p.oldData, p.newData, c)
			b := create(t, p.oldData, p.newData, c)
			if !bytes.Equal(a, b) {
				t.Errorf("%s %v: two patches of the same images differ", p.name, c)
			}
		}
	}
}

func TestCreateWritesDetoolsHeader(t *testing.T) {
	for _, tc := range []struct {
		c    Compression
		want []byte // header and, for an empty image, the whole patch
	}{
		{CompressionNone, []byte{0x00, 0x00}},
		{CompressionLZMA, []byte{0x01, 0x00}},
		{CompressionCRLE, []byte{0x02, 0x00}},
		{CompressionHeatshrink, []byte{0x04, 0x00}},
	} {
		if got := create(t, []byte("old"), nil, tc.c); !bytes.Equal(got, tc.want) {
			t.Errorf("%v patch of an empty image = % x, want % x", tc.c, got, tc.want)
		}
	}
	// A 100-byte image: type and compression nibbles, then 100 as a size.
	got := create(t, nil, make([]byte, 100), CompressionHeatshrink)
	if want := []byte{0x04, 0xa4, 0x01, 0x44}; !bytes.HasPrefix(got, want) {
		t.Errorf("heatshrink patch starts % x, want % x (header, then the 8/7 parameter byte)", got[:4], want)
	}
}

func TestCreateRefusesBadOptions(t *testing.T) {
	for _, opts := range []*CreateOptions{
		{Compression: CompressionZstd},
		{Compression: CompressionBZ2},
		{Compression: Compression(15)},
		{Compression: CompressionHeatshrink, Heatshrink: HeatshrinkParams{WindowBits: 8, LookaheadBits: 8}},
		{Compression: CompressionHeatshrink, Heatshrink: HeatshrinkParams{WindowBits: 16, LookaheadBits: 4}},
	} {
		for _, new := range [][]byte{[]byte("b"), nil} {
			if err := Create(&bytes.Buffer{}, []byte("a"), new, opts); err == nil {
				t.Errorf("Create with %+v and a %d-byte new image succeeded, want an error", *opts, len(new))
			}
		}
	}
}

// TestCreateLZMADictCapApplies checks that a capped dictionary gives a
// patch that an applier limited to that memory accepts.
func TestCreateLZMADictCapApplies(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	block := make([]byte, 5000)
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	// The new image repeats a block 40 KiB back, which only a large
	// dictionary can reach.
	old := make([]byte, 100)
	new := append(append(bytes.Clone(block), make([]byte, 40<<10)...), block...)
	for i := 5000; i < 5000+40<<10; i++ {
		new[i] = byte(r.Uint32())
	}
	var b bytes.Buffer
	// 10,000 is not a size liblzma accepts: the header must say the
	// largest one below it.
	if err := Create(&b, old, new, &CreateOptions{Compression: CompressionLZMA, LZMADictCap: 10000}); err != nil {
		t.Fatal(err)
	}
	pr := bytes.NewReader(b.Bytes())
	if _, err := ReadHeader(pr); err != nil {
		t.Fatal(err)
	}
	var props [5]byte
	pr.Read(props[:])
	if dict := binary.LittleEndian.Uint32(props[1:]); dict != 8192 {
		t.Errorf("LZMA header dictionary %d, want 8192", dict)
	}
	var got bytes.Buffer
	if _, err := Apply(bytes.NewReader(old), bytes.NewReader(b.Bytes()), &got, &Options{MaxMemory: 10000}); err != nil {
		t.Fatalf("Apply with a 10,000-byte limit: %v", err)
	}
	if !bytes.Equal(got.Bytes(), new) {
		t.Fatal("Apply gave the wrong image")
	}
}

func TestLZMADictAtMost(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{0, 4096}, {4096, 4096}, {6143, 4096}, {6144, 6144}, {8191, 6144},
		{10000, 8192}, {12288, 12288}, {1 << 20, 1 << 20}, {3 << 19, 3 << 19},
	} {
		if got := lzmaDictAtMost(tc.limit); got != tc.want {
			t.Errorf("lzmaDictAtMost(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// TestCreateLZMADecodesWithLiblzma checks the LZMA encoder against
// liblzma, the decoder detools' C and Python appliers use, through
// Python's lzma module (whose .lzma reader is the strict one).
func TestCreateLZMADecodesWithLiblzma(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: liblzma cross-check skipped")
	}
	pairs := realPairs(t)
	sort.Slice(pairs, func(i, j int) bool { return len(pairs[i].newData) < len(pairs[j].newData) })
	dir := t.TempDir()
	for i, p := range pairs {
		// The small pairs keep the test fast; the round trips through
		// ulikunitz's decoder cover the large ones.
		if len(p.newData) == 0 || len(p.newData) > 200_000 {
			continue
		}
		data := sequentialData(p.oldData, p.newData)
		for _, dictCap := range []int{0, 10000} {
			stream, err := compressLZMA(data, dictCap)
			if err != nil {
				t.Fatal(err)
			}
			in, out := filepath.Join(dir, fmt.Sprint(i, "-", dictCap, ".lzma")), filepath.Join(dir, "out")
			if err := os.WriteFile(in, stream, 0o644); err != nil {
				t.Fatal(err)
			}
			script := "import lzma,sys; open(sys.argv[2],'wb').write(lzma.LZMADecompressor().decompress(open(sys.argv[1],'rb').read()))"
			if msg, err := exec.Command(python, "-c", script, in, out).CombinedOutput(); err != nil {
				t.Fatalf("%s (dictionary cap %d): liblzma refused our stream: %v: %s", p.name, dictCap, err, msg)
			}
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, data) {
				t.Fatalf("%s (dictionary cap %d): liblzma decoded %d bytes, want the %d bytes encoded", p.name, dictCap, len(got), len(data))
			}
		}
	}
}

// TestCreateAppliesWithDetools applies our patches with detools' own
// applier when one is on PATH as `detools` (its C command line, built from
// the c/ directory of github.com/eerimoq/detools, or its Python one; both
// take `apply_patch OLD PATCH NEW`).
func TestCreateAppliesWithDetools(t *testing.T) {
	detools, err := exec.LookPath("detools")
	if err != nil {
		t.Skip("detools not on PATH (build c/ of github.com/eerimoq/detools): cross-check skipped")
	}
	dir := t.TempDir()
	for i, p := range realPairs(t) {
		for _, c := range createCompressions {
			patch := filepath.Join(dir, fmt.Sprint(i, c))
			out := filepath.Join(dir, fmt.Sprint(i, c, ".new"))
			oldPath := filepath.Join(testdataDir, p.old)
			if err := os.WriteFile(patch, pairPatch(t, p, c), 0o644); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command(detools, "apply_patch", oldPath, patch, out).CombinedOutput(); err != nil {
				t.Fatalf("%s %v: detools refused our patch: %v: %s", p.name, c, err, msg)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, p.newData) {
				t.Errorf("%s %v: detools applied our patch to a different image", p.name, c)
			}
		}
	}
}

func TestSuffixArrayIsSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	inputs := [][]byte{nil, {0}, {1, 1, 1, 1}, []byte("mississippi"), []byte("abracadabra"), bytes.Repeat([]byte("ab"), 100)}
	for range 300 {
		b := make([]byte, r.IntN(300))
		k := 1 + r.IntN(4)
		for i := range b {
			b[i] = byte(r.IntN(k))
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		sa := suffixArray(in)
		want := make([]int32, len(in))
		for i := range want {
			want[i] = int32(i)
		}
		sort.Slice(want, func(a, b int) bool { return bytes.Compare(in[want[a]:], in[want[b]:]) < 0 })
		if fmt.Sprint(sa) != fmt.Sprint(want) {
			t.Fatalf("suffixArray(%q) = %v, want %v", in, sa, want)
		}
	}
}

func TestMatcherFindsLongestMatch(t *testing.T) {
	old := []byte("the quick brown fox jumps over the lazy dog; the quick brown cat")
	m := newMatcher(old)
	for _, tc := range []struct {
		pattern string
		n       int
	}{
		{"the quick brown cat sleeps", 19},
		{"lazy dogs", 8},
		{"zebra", 1},
		{"!", 0},
		{"", 0},
	} {
		pos, n := m.longest([]byte(tc.pattern), 0)
		if n != tc.n || (n > 0 && !bytes.HasPrefix(old[pos:], []byte(tc.pattern[:n]))) {
			t.Errorf("longest(%q) = %d bytes at %d, want %d bytes", tc.pattern, n, pos, tc.n)
		}
	}
}

// FuzzCreateRoundTrip checks that any pair of images gives a patch, under
// every compression, that applies back to the new image.
func FuzzCreateRoundTrip(f *testing.F) {
	f.Add([]byte("the old image"), []byte("the new image"), uint8(0))
	f.Add([]byte{}, []byte{0, 0, 0, 0, 0, 0, 0, 1}, uint8(1))
	f.Add(bytes.Repeat([]byte{7}, 300), bytes.Repeat([]byte{7}, 301), uint8(2))
	f.Fuzz(func(t *testing.T, old, new []byte, which uint8) {
		c := createCompressions[int(which)%len(createCompressions)]
		roundTrip(t, old, new, create(t, old, new, c))
	})
}
