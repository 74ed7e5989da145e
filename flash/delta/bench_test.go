package delta

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkCreate creates lzma and heatshrink patches for every real pair
// and reports their size as a percentage of the new image (%new, and
// detools' own patch as %new-detools where the test data has one), with
// the create time per patch as ns/op and the memory allocated as B/op.
func BenchmarkCreate(b *testing.B) {
	for _, p := range realPairs(b) {
		for _, c := range []Compression{CompressionLZMA, CompressionHeatshrink} {
			b.Run(benchName(p)+"/"+c.String(), func(b *testing.B) {
				var patch []byte
				b.ReportAllocs()
				for b.Loop() {
					patch = create(b, p.oldData, p.newData, c)
				}
				b.ReportMetric(percent(len(patch), len(p.newData)), "%new")
				b.ReportMetric(float64(len(patch)), "bytes")
				if n, ok := p.detoolsN[c]; ok {
					b.ReportMetric(percent(n, len(p.newData)), "%new-detools")
				}
			})
		}
	}
}

// BenchmarkPeers measures the patch sizes of the peers the issue names, on
// every real pair, as a percentage of the new image: Debian's bsdiff,
// xdelta3 -9 and zstd --patch-from --ultra -22 --long=27. A tool that is
// not installed is skipped with a message.
func BenchmarkPeers(b *testing.B) {
	peers := []struct {
		name string
		tool string
		args func(old, new, patch string) []string
	}{
		{"bsdiff", "bsdiff", func(old, new, patch string) []string { return []string{old, new, patch} }},
		{"xdelta3", "xdelta3", func(old, new, patch string) []string {
			return []string{"-9", "-e", "-f", "-s", old, new, patch}
		}},
		{"zstd", "zstd", func(old, new, patch string) []string {
			return []string{"-q", "-f", "--ultra", "-22", "--long=27", "--patch-from=" + old, new, "-o", patch}
		}},
	}
	pairs := realPairs(b)
	for _, peer := range peers {
		if _, err := exec.LookPath(peer.tool); err != nil {
			b.Logf("%s not installed (apt-get install %s): skipped", peer.tool, peer.tool)
			continue
		}
		for _, p := range pairs {
			if len(p.newData) == 0 {
				continue
			}
			b.Run(benchName(p)+"/"+peer.name, func(b *testing.B) {
				dir := b.TempDir()
				old, new := filepath.Join(testdataDir, p.old), filepath.Join(testdataDir, p.new)
				patch := filepath.Join(dir, "patch")
				for b.Loop() {
					if out, err := exec.Command(peer.tool, peer.args(old, new, patch)...).CombinedOutput(); err != nil {
						b.Fatalf("%s: %v: %s", peer.tool, err, out)
					}
				}
				st, err := os.Stat(patch)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(percent(int(st.Size()), len(p.newData)), "%new")
			})
		}
	}
}

// BenchmarkSuffixArray measures SA-IS on the largest old image.
func BenchmarkSuffixArray(b *testing.B) {
	var old []byte
	for _, p := range realPairs(b) {
		if len(p.oldData) > len(old) {
			old = p.oldData
		}
	}
	b.SetBytes(int64(len(old)))
	for b.Loop() {
		suffixArray(old)
	}
}

func benchName(p *imagePair) string {
	r := strings.NewReplacer("/", "_", " -> ", "--", " ", "")
	return r.Replace(p.old) + "--" + filepath.Base(p.new)
}

func percent(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}
