package sim

import (
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// FuzzECURequests sends an unlocked ECU any sequence of requests (each
// prefixed by its length byte in the input) followed by resets, and
// checks that it never panics and always boots a valid image.
func FuzzECURequests(f *testing.F) {
	old := testImage(f, "1.0.0", 1, 3000)
	newImg := testImage(f, "1.1.0", 2, 200)
	patch := makeDelta(f, old, newImg)
	seq := func(reqs ...[]byte) []byte {
		var b []byte
		for _, r := range reqs {
			b = append(append(b, byte(len(r))), r...)
		}
		return b
	}
	sum := image.Digest(newImg)
	full := [][]byte{{0x31, 0x01, 0xFF, 0x00}, requestDownload(FormatFullImage, 0x2000000, len(newImg))}
	for i, n := 0, byte(1); i < len(newImg); i, n = i+200, n+1 {
		full = append(full, append([]byte{0x36, n}, newImg[i:min(i+200, len(newImg))]...))
	}
	full = append(full, []byte{0x37}, append([]byte{0x31, 0x01, 0xFF, 0x01}, sum[:]...), []byte{0x31, 0x01, 0xFF, 0x02}, []byte{0x11, 0x01}, []byte{0x31, 0x01, 0xFF, 0x03})
	f.Add(seq(full...))
	if len(patch) < 250 {
		f.Add(seq([]byte{0x31, 0x01, 0xFF, 0x00}, requestDownload(FormatDelta, 0x2000000, len(patch)), append([]byte{0x36, 1}, patch...), []byte{0x37}))
	}
	f.Add(seq([]byte{0x22, 0xFD, 0x01, 0xFD, 0x02}, []byte{0x31, 0x01, 0xFF, 0x04}, []byte{0x11, 0x03}))
	f.Fuzz(func(t *testing.T, in []byte) {
		synctest.Test(t, func(t *testing.T) {
			d := newDirect(t, old, "")
			d.unlock()
			for len(in) > 0 {
				n := min(int(in[0]), len(in)-1)
				d.raw(in[1 : 1+n]...)
				in = in[1+n:]
			}
			for range DefaultConfirmWithin + 1 {
				d.raw(0x11, 0x01)
				a, _ := d.e.running()
				if a < 0 {
					t.Fatalf("no image boots: %+v", d.e.Status())
				}
				if in := d.e.boot.inspect(a); in.err != nil {
					t.Fatalf("slot %s boots an invalid image: %v", slotName(a), in.err)
				}
			}
		})
	})
}
