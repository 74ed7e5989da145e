package delta

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vector is one row of shared/testdata/detools/MANIFEST.tsv.
type vector struct {
	kind, old, new, patch, expect string
}

// detoolsDir returns shared/testdata/detools, which sits beside the module
// root (../shared from a checkout). Without it the test skips, except under
// CI=true where a missing oracle is a failure.
func detoolsDir(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "testdata", "detools")
			if _, err := os.Stat(filepath.Join(d, "MANIFEST.tsv")); err != nil {
				if os.Getenv("CI") == "true" {
					tb.Fatalf("detools test vectors missing at %s: check out shared/ beside the module", d)
				}
				tb.Skipf("detools test vectors not found at %s (shared/ beside the module root); skipping", d)
			}
			return d
		}
		if filepath.Dir(dir) == dir {
			tb.Fatalf("no go.mod above %s", wd)
		}
	}
}

func readManifest(tb testing.TB, dir string) []vector {
	tb.Helper()
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 5 {
			tb.Fatalf("MANIFEST.tsv: %q: want 5 tab-separated fields", line)
		}
		vs = append(vs, vector{fields[0], fields[1], fields[2], fields[3], fields[4]})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return vs
}

func readFile(tb testing.TB, dir, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestDetoolsVectors applies every patch detools made in the test data: ok
// rows must give the new image byte for byte, the others the fault detools
// reports, in detools' own words.
func TestDetoolsVectors(t *testing.T) {
	dir := detoolsDir(t)
	for _, v := range readManifest(t, dir) {
		if v.kind == "bsdiff40" {
			continue // a size reference for the benchmarks, not a detools patch
		}
		t.Run(v.patch, func(t *testing.T) {
			old := readFile(t, dir, v.old)
			want := readFile(t, dir, v.new)
			patch := readFile(t, dir, v.patch)
			var got []byte
			var err error
			switch v.kind {
			case "sequential":
				var out bytes.Buffer
				_, err = Apply(bytes.NewReader(old), bytes.NewReader(patch), &out, nil)
				got = out.Bytes()
			case "in-place":
				got, err = applyInPlaceBytes(old, patch)
			default:
				t.Fatalf("unknown kind %q", v.kind)
			}
			if v.expect != "ok" {
				if err == nil {
					t.Fatalf("applied without error, want %q", v.expect)
				}
				if msg := DetoolsMessage(err); msg != v.expect {
					t.Fatalf("error %q, detools message %q, want %q", err, msg, v.expect)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("new image differs: got %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

// applyInPlaceBytes applies an in-place patch to a memory holding old, as
// large as the patch's header asks, and returns the new image.
func applyInPlaceBytes(old, patch []byte) ([]byte, error) {
	h, err := ReadHeader(bufio.NewReader(bytes.NewReader(patch)))
	if err != nil {
		return nil, err
	}
	mem := make([]byte, max(h.MemorySize, int64(len(old))))
	copy(mem, old)
	m := memory(mem)
	n, err := ApplyInPlace(m, int64(len(mem)), bytes.NewReader(patch), nil)
	if err != nil {
		return nil, err
	}
	return mem[:n], nil
}

// memory is a flash region in RAM for the in-place applier.
type memory []byte

func (m memory) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m).ReadAt(p, off)
}

func (m memory) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, os.ErrInvalid
	}
	return copy(m[off:], p), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
