package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// direct drives an ECU's power cycles and UDS server without a bus, the
// way Run does, so that thousands of faulty flashes run in seconds.
type direct struct {
	t *testing.T
	e *ECU
	c *cycle
}

// boot powers the ECU up until a power cycle serves UDS.
func (d *direct) boot() {
	d.t.Helper()
	for range 100 {
		c, err := d.e.powerUp(context.Background())
		if err != nil {
			d.t.Fatalf("booting: %v", err)
		}
		if c != nil {
			d.c = c
			return
		}
	}
	d.t.Fatal("the ECU never came up")
}

// do sends one request; nil when the ECU did not answer (the power
// failed) or the answer is negative. A reset reboots the ECU.
func (d *direct) do(req ...byte) []byte {
	c := d.c
	resp := c.server.Handle(c.ctx, req, false)
	if c.ctx.Err() != nil { // reset or power loss: RAM is gone
		c.prog.abort()
		d.boot()
		if c.lost {
			return nil
		}
	}
	if len(resp) == 0 || resp[0] == uds.NegativeResponseSID {
		return nil
	}
	return resp
}

// flash runs the programming sequence for data and returns whether it
// got through the reset into the new image's confirmation.
func (d *direct) flash(format byte, data, target []byte, block int) bool {
	if d.do(0x10, 0x03) == nil || d.do(0x10, 0x02) == nil {
		return false
	}
	seed := d.do(0x27, d.e.level)
	if seed == nil {
		return false
	}
	key, _ := d.e.key(d.e.level, seed[2:])
	if d.do(append([]byte{0x27, d.e.level + 1}, key...)...) == nil {
		return false
	}
	if d.do(0x31, 0x01, 0xFF, 0x00) == nil {
		return false
	}
	slot := d.e.writable()
	req := []byte{0x34, format, 0x44}
	req = binary.BigEndian.AppendUint32(req, uint32(d.e.slotBase(slot)))
	req = binary.BigEndian.AppendUint32(req, uint32(len(data)))
	if d.do(req...) == nil {
		return false
	}
	for i, n := 0, byte(1); i < len(data); i, n = i+block, n+1 {
		if d.do(append([]byte{0x36, n}, data[i:min(i+block, len(data))]...)...) == nil {
			return false
		}
	}
	if d.do(0x37) == nil {
		return false
	}
	sum := image.Digest(target)
	if r := d.do(append([]byte{0x31, 0x01, 0xFF, 0x01}, sum[:]...)...); r == nil || r[4] != VerifyOK {
		return false
	}
	if d.do(0x31, 0x01, 0xFF, 0x02) == nil || d.do(0x11, 0x01) == nil {
		return false
	}
	return d.do(0x31, 0x01, 0xFF, 0x03) != nil
}

// checkBootsValid asserts the invariant: the running slot holds a valid
// image, and it is old or new.
func (d *direct) checkBootsValid(old, new []byte, what string) {
	d.t.Helper()
	a, _ := d.e.running()
	if a < 0 {
		d.t.Fatalf("%s: the ECU boots no image: %+v", what, d.e.Status())
	}
	in := d.e.boot.inspect(a)
	if in.err != nil {
		d.t.Fatalf("%s: slot %s boots an invalid image: %v", what, slotName(a), in.err)
	}
	if in.digest != sha256.Sum256(old) && in.digest != sha256.Sum256(new) {
		d.t.Fatalf("%s: slot %s boots an image that is neither the old nor the new one (version %s)", what, slotName(a), in.hdr.Version)
	}
}

// invariantPair returns an old and a new image: the programmer firmware
// pair of detools' tests, wrapped in image headers, or synthetic images
// when the test data is missing.
func invariantPair(t testing.TB) (old, new []byte) {
	o, ok1 := detoolsFile(t, "programmer/0.8.0.bin")
	n, ok2 := detoolsFile(t, "programmer/0.9.0.bin")
	if !ok1 || !ok2 {
		o = testImage(t, "0.8.0", 1, 23504)[image.HeaderSize:]
		n = bytes.Clone(o)
		copy(n[1000:], "version 0.9.0 of the programmer")
	}
	return mustBuild(t, "0.8.0", 8, o), mustBuild(t, "0.9.0", 9, n)
}

// TestInvariantFaultsDuringFlash drives full and delta flashes into
// thousands of seeded random faults (power loss at a byte of the download
// or at a phase, images that crash at their test boot or never confirm)
// and checks after every fault, and through the following boots, that the
// ECU boots a valid image, the old or the new one.
func TestInvariantFaultsDuringFlash(t *testing.T) {
	old, new := invariantPair(t)
	patch := makeDelta(t, old, new)
	older := testImage(t, "0.7.0", 7, 9000)
	runs := 2400
	if testing.Short() {
		runs = 200
	}
	const seed = 20261121
	r := rand.New(rand.NewPCG(seed, 1))
	phases := []string{PhaseErase, PhaseTransferExit, PhaseVerify, PhaseActivate, PhaseConfirm, PhaseBoot}
	fired := map[string]int{}
	// Slot B holds an older image that must never boot again.
	base, err := DecodeConfig(testVehicle(t, "slots: {a: {file: "+imageFile(t, old)+"}, b: {file: "+imageFile(t, older)+"}}"))
	if err != nil {
		t.Fatal(err)
	}
	for run := range runs {
		format, data := FormatFullImage, new
		if run%2 == 1 {
			format, data = FormatDelta, patch
		}
		var f Fault
		switch k := r.IntN(10); {
		case k < 6:
			at := r.Int64N(int64(len(new)) + 1)
			f = Fault{Kind: FaultPowerLoss, AtByte: &at}
		case k < 8:
			f = Fault{Kind: FaultPowerLoss, Phase: phases[r.IntN(len(phases))], Sector: r.IntN(16)}
		case k < 9:
			f = Fault{Kind: FaultBootFailure, Version: "0.9.0"}
		default:
			f = Fault{Kind: FaultNeverConfirm, Version: "0.9.0"}
		}
		block := 64 + r.IntN(2000)
		what := fmt.Sprintf("run %d (seed %d): format %#x, block %d, fault %+v", run, seed, format, block, f)
		if f.AtByte != nil {
			what += fmt.Sprintf(" at byte %d", *f.AtByte)
		}
		synctest.Test(t, func(t *testing.T) {
			cfg := base
			cfg.Faults = []Fault{f}
			d := bootDirect(t, cfg)
			ecu := d.e
			d.flash(format, data, new, block)
			d.checkBootsValid(old, new, what+", after the flash")
			// The following ignition cycles: a trial image has its boots
			// and then reverts, and the ECU keeps a valid image through
			// all of them.
			for i := range cfg.ConfirmWithin + 1 {
				d.c.cancel()
				d.c.prog.abort()
				d.boot()
				d.checkBootsValid(old, new, fmt.Sprintf("%s, boot %d after", what, i+1))
			}
			ecu.faults.mu.Lock()
			if ecu.faults.fired[0] || f.Kind == FaultBootFailure || f.Kind == FaultNeverConfirm {
				fired[f.Kind+f.Phase]++
			}
			ecu.faults.mu.Unlock()
		})
		if t.Failed() {
			return
		}
	}
	t.Logf("%d flashes; faults that struck: %v", runs, fired)
}
