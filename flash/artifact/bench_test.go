package artifact

import (
	"io"
	"testing"
)

// BenchmarkResolveAndRead resolves a 1 MiB firmware artifact from the
// loopback registry and reads its image through the verifying reader: the
// cost of the pull path before any byte goes on the bus.
func BenchmarkResolveAndRead(b *testing.B) {
	img := testImage(b, "1.0.0", 1, 3, 1<<20)
	p, err := Pack(b.Context(), img, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	host := registryServer(b, nil)
	opts := &Options{PlainHTTP: true}
	ref := host + "/fw/bench:1"
	if _, err := p.Push(b.Context(), ref, opts); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		fw, err := Resolve(b.Context(), ref, opts)
		if err != nil {
			b.Fatal(err)
		}
		rc, err := fw.OpenImage(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pull")
}
