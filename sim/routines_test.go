package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// newDirect returns an ECU with old in slot A, booted, driven without a
// bus. Call it inside a synctest bubble.
func newDirect(t *testing.T, old []byte, extra string) *direct {
	t.Helper()
	e := testVehicle(t, "slots: {a: {file: "+imageFile(t, old)+"}}\n"+extra)
	cfg, err := DecodeConfig(e)
	if err != nil {
		t.Fatal(err)
	}
	d := bootDirect(t, cfg)
	t.Cleanup(func() {
		d.c.cancel()
		d.c.prog.abort()
	})
	return d
}

// bootDirect makes the ECU cfg describes, with no bus, and boots it.
func bootDirect(t *testing.T, cfg ECUConfig) *direct {
	t.Helper()
	ecu, err := newECU(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ecu.bus = &faultBus{plan: ecu.faults}
	d := &direct{t: t, e: ecu}
	d.boot()
	return d
}

// raw sends a request and returns the response as is.
func (d *direct) raw(req ...byte) []byte {
	c := d.c
	resp := c.server.Handle(c.ctx, req, false)
	if c.ctx.Err() != nil {
		c.prog.abort()
		d.boot()
	}
	return resp
}

// want sends req and checks that the answer is the NRC code (0 for a
// positive response), returning the response.
func (d *direct) want(code uds.NRC, req ...byte) []byte {
	d.t.Helper()
	resp := d.raw(req...)
	switch {
	case code == 0 && (len(resp) == 0 || resp[0] == uds.NegativeResponseSID):
		d.t.Fatalf("% X: answered % X, want a positive response", req, resp)
	case code != 0 && (len(resp) != 3 || resp[0] != uds.NegativeResponseSID || uds.NRC(resp[2]) != code):
		d.t.Fatalf("% X: answered % X, want %v", req[:min(len(req), 8)], resp, code)
	}
	return resp
}

func (d *direct) unlock() {
	d.t.Helper()
	d.want(0, 0x10, 0x02)
	seed := d.want(0, 0x27, d.e.level)
	key, _ := d.e.key(d.e.level, seed[2:])
	d.want(0, append([]byte{0x27, d.e.level + 1}, key...)...)
}

func requestDownload(format byte, addr uint64, size int) []byte {
	req := []byte{0x34, format, 0x44}
	req = binary.BigEndian.AppendUint32(req, uint32(addr))
	return binary.BigEndian.AppendUint32(req, uint32(size))
}

// download writes data through 34/36/37 and checks each answer.
func (d *direct) download(format byte, data []byte) {
	d.t.Helper()
	d.want(0, requestDownload(format, d.e.slotBase(d.e.writable()), len(data))...)
	for i, n := 0, byte(1); i < len(data); i, n = i+1000, n+1 {
		d.want(0, append([]byte{0x36, n}, data[i:min(i+1000, len(data))]...)...)
	}
	d.want(0, 0x37)
}

func verifyReq(img []byte) []byte {
	sum := image.Digest(img)
	return append([]byte{0x31, 0x01, 0xFF, 0x01}, sum[:]...)
}

func TestRoutinesNeedProgrammingAndSecurity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, testImage(t, "1.0.0", 1, 5000), "")
		for _, id := range []byte{0x00, 0x01, 0x02, 0x04} {
			d.want(uds.RequestOutOfRange, 0x31, 0x01, 0xFF, id) // default session: not supported there
		}
		d.want(0, 0x10, 0x02)
		for _, id := range []byte{0x00, 0x01, 0x02, 0x04} {
			d.want(uds.SecurityAccessDenied, 0x31, 0x01, 0xFF, id)
		}
		d.want(uds.SecurityAccessDenied, requestDownload(0, 0x20000, 100)...)
		// Confirm is the application's: any session, no security.
		d.want(0, 0x31, 0x01, 0xFF, 0x03)
	})
}

func TestVerifyResults(t *testing.T) {
	old := testImage(t, "1.0.0", 5, 5000)
	good := testImage(t, "1.1.0", 6, 6000)
	damaged := bytes.Clone(good)
	damaged[len(damaged)-1] ^= 1
	otherHW, _ := SyntheticImage(image.Header{Version: "1.1.0", HardwareID: "OTHER", ReleaseCounter: 6}, 6000)
	rollback := testImage(t, "0.9.0", 4, 6000)
	tests := []struct {
		name   string
		write  []byte // nil: erase only
		expect []byte // the digest asked for
		want   byte
	}{
		{"empty slot", nil, good, VerifyNoImage},
		{"good image", good, good, VerifyOK},
		{"good image, no digest given", good, nil, VerifyOK},
		{"damaged payload", damaged, damaged, VerifyDamaged},
		{"another image than expected", good, old, VerifyMismatch},
		{"other hardware", otherHW, otherHW, VerifyHardware},
		{"lower release counter", rollback, rollback, VerifyRollback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := newDirect(t, old, "")
				d.unlock()
				d.want(0, 0x31, 0x01, 0xFF, 0x00)
				if tt.write != nil {
					d.download(FormatFullImage, tt.write)
				}
				req := []byte{0x31, 0x01, 0xFF, 0x01}
				if tt.expect != nil {
					req = verifyReq(tt.expect)
				}
				resp := d.want(0, req...)
				if len(resp) != 5+32 || resp[4] != tt.want {
					t.Fatalf("verify answered % X, want result %02X", resp, tt.want)
				}
				// Only a verified image can be activated.
				code := uds.RequestSequenceError
				if tt.want == VerifyOK {
					code = 0
				}
				d.want(code, 0x31, 0x01, 0xFF, 0x02)
			})
		})
	}
}

func TestDownloadRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 1, 5000)
		d := newDirect(t, old, "")
		d.unlock()
		flash := d.e.cfg.ECU.Flash
		d.want(uds.RequestOutOfRange, requestDownload(0, flash.SlotA, 100)...)                 // the running slot
		d.want(uds.RequestOutOfRange, requestDownload(0, flash.SlotB+4096, 100)...)            // not a slot's base
		d.want(uds.RequestOutOfRange, requestDownload(0x20, flash.SlotB, 100)...)              // unknown format
		d.want(uds.RequestOutOfRange, requestDownload(0, flash.SlotB, int(flash.SlotSize))...) // larger than the slot's image area
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.download(FormatFullImage, testImage(t, "1.1.0", 2, 3000))
		d.want(uds.UploadDownloadNotAccepted, requestDownload(0, flash.SlotB, 100)...) // not erased
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.want(0, requestDownload(0, flash.SlotB, 100)...)
		d.want(uds.ConditionsNotCorrect, 0x31, 0x01, 0xFF, 0x00) // a download in progress: the Download's own 0x22 comes first for 0x34
	})
}

func TestDeltaForAnotherBaseFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 1, 5000)
		other := testImage(t, "0.5.0", 1, 5000)
		patch := makeDelta(t, other, testImage(t, "1.1.0", 2, 5000))
		d := newDirect(t, old, "")
		d.unlock()
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.want(0, requestDownload(FormatDelta, d.e.slotBase(1), len(patch))...)
		d.want(uds.GeneralProgrammingFailure, append([]byte{0x36, 1}, patch[:min(len(patch), 1000)]...)...)
		if st := d.e.Status(); st.Slots[1].State != SlotEmpty {
			t.Fatalf("slot B after a refused patch: %+v", st.Slots[1])
		}
	})
}

func TestTrialProtectsFallbackAndReverts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 1, 5000)
		newImg := testImage(t, "2.0.0", 2, 5000)
		d := newDirect(t, old, "")
		d.unlock()
		d.want(uds.ConditionsNotCorrect, 0x31, 0x01, 0xFF, 0x04) // nothing on trial
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.download(FormatFullImage, newImg)
		d.want(0, verifyReq(newImg)...)
		d.want(0, 0x31, 0x01, 0xFF, 0x02)
		d.want(uds.ConditionsNotCorrect, 0x31, 0x01, 0xFF, 0x02) // activated already
		d.want(0, 0x11, 0x01)
		st := d.e.Status()
		if st.ActiveSlot != "B" || !st.Trial || st.Slots[1].State != SlotTrial || st.Slots[1].BootAttempts != 1 {
			t.Fatalf("after the reset: %+v", st)
		}
		// The fallback, slot A, cannot be touched while B is on trial.
		d.unlock()
		d.want(uds.ConditionsNotCorrect, 0x31, 0x01, 0xFF, 0x00)
		d.want(uds.ConditionsNotCorrect, requestDownload(0, d.e.cfg.ECU.Flash.SlotA, 100)...)
		resp := d.want(0, 0x31, 0x01, 0xFF, 0x04)
		if resp[4] != 0 {
			t.Fatalf("revert answered % X, want slot A next", resp)
		}
		d.want(0, 0x11, 0x01)
		st = d.e.Status()
		if st.ActiveSlot != "A" || st.Trial || st.Slots[1].State != SlotRejected {
			t.Fatalf("after the revert: %+v", st)
		}
	})
}

func TestUnconfirmedImageRevertsAfterConfirmWithin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 1, 5000)
		newImg := testImage(t, "2.0.0", 2, 5000)
		d := newDirect(t, old, "confirmWithin: 2")
		d.unlock()
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.download(FormatFullImage, newImg)
		d.want(0, verifyReq(newImg)...)
		d.want(0, 0x31, 0x01, 0xFF, 0x02)
		for boot, want := range []string{"B", "B", "A", "A"} {
			d.want(0, 0x11, 0x01)
			if st := d.e.Status(); st.ActiveSlot != want {
				t.Fatalf("boot %d after activation runs %q, want %q: %+v", boot+1, st.ActiveSlot, want, st)
			}
		}
	})
}

func TestAutoConfirm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 1, 5000)
		newImg := testImage(t, "2.0.0", 2, 5000)
		d := newDirect(t, old, "autoConfirm: 1s")
		d.unlock()
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.download(FormatFullImage, newImg)
		d.want(0, verifyReq(newImg)...)
		d.want(0, 0x31, 0x01, 0xFF, 0x02)
		d.want(0, 0x11, 0x01)
		synctest.Wait()
		if st := d.e.Status(); !st.Trial {
			t.Fatalf("confirmed before its time: %+v", st)
		}
		sleep(context.Background(), 1500*1e6)
		if st := d.e.Status(); st.Trial || !st.Slots[1].Confirmed {
			t.Fatalf("not confirmed after autoConfirm: %+v", st)
		}
	})
}

func TestSlotDIDs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := testImage(t, "1.0.0", 3, 5000)
		d := newDirect(t, old, "")
		if resp := d.want(0, 0x22, 0xF1, 0x89); string(resp[3:]) != "1.0.0" {
			t.Errorf("F189 = %q", resp[3:])
		}
		if resp := d.want(0, 0x22, 0xF1, 0x91); string(resp[3:]) != testHW {
			t.Errorf("F191 = %q", resp[3:])
		}
		if resp := d.want(0, 0x22, 0xFD, 0x00); !bytes.Equal(resp[3:], []byte{0, 0}) {
			t.Errorf("FD00 = % X", resp[3:])
		}
		rec := d.want(0, 0x22, 0xFD, 0x01)[3:]
		sum := image.Digest(old)
		if len(rec) != SlotRecordLength || rec[0] != slotStateCodes[SlotConfirmed] || rec[1] != 1 ||
			binary.BigEndian.Uint32(rec[2:]) != 3 || !bytes.Equal(rec[6:38], sum[:]) || string(bytes.TrimRight(rec[38:70], "\x00")) != "1.0.0" {
			t.Errorf("FD01 = % X", rec)
		}
		if rec := d.want(0, 0x22, 0xFD, 0x02)[3:]; len(rec) != SlotRecordLength || rec[0] != slotStateCodes[SlotEmpty] {
			t.Errorf("FD02 = % X", rec)
		}
		if rec := d.want(0, 0x22, 0xFD, 0x03)[3:]; binary.BigEndian.Uint32(rec) != 1 || rec[4] != DefaultConfirmWithin {
			t.Errorf("FD03 = % X", rec)
		}
	})
}

func TestNoImageBootsIntoBootloader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, testImage(t, "1.0.0", 1, 5000), "")
		// Destroy slot A's image behind the bootloader's back, as a fault
		// outside the model would.
		d.e.flash.mu.Lock()
		d.e.flash.slots[0][200] ^= 0xFF
		d.e.flash.gen[0]++
		d.e.flash.mu.Unlock()
		d.want(0, 0x11, 0x01)
		if st := d.e.Status(); st.State != StateBootloader || st.ActiveSlot != "" {
			t.Fatalf("without a valid image: %+v", st)
		}
		// The bootloader takes a full image into slot A, but no delta.
		d.unlock()
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		d.want(uds.ConditionsNotCorrect, requestDownload(FormatDelta, d.e.slotBase(0), 100)...)
		d.want(0, 0x31, 0x01, 0xFF, 0x00) // a refused download leaves nothing in progress
		img := testImage(t, "1.0.1", 1, 5000)
		d.download(FormatFullImage, img)
		d.want(0, verifyReq(img)...)
		d.want(0, 0x31, 0x01, 0xFF, 0x02)
		d.want(0, 0x11, 0x01)
		d.want(0, 0x31, 0x01, 0xFF, 0x03)
		if st := d.e.Status(); st.State != StateRunning || st.ActiveSlot != "A" || st.Slots[0].Version != "1.0.1" {
			t.Fatalf("after flashing from the bootloader: %+v", st)
		}
	})
}

// TestDeltaDownloadMemoryBounded applies a delta to a 512 KiB image and
// checks that the download allocates no more than the applier's memory
// limit and some buffers, less than the image: the patch streams through
// the applier into flash.
func TestDeltaDownloadMemoryBounded(t *testing.T) {
	old := testImage(t, "1.0.0", 1, 512<<10)
	payload := bytes.Clone(old[image.HeaderSize:])
	copy(payload[100000:], "a changed function")
	newImg := mustBuild(t, "1.1.0", 2, payload)
	patch := makeDelta(t, old, newImg)
	synctest.Test(t, func(t *testing.T) {
		e := testVehicleSized(t, 1<<20, "slots: {a: {file: "+imageFile(t, old)+"}}")
		cfg, err := DecodeConfig(e)
		if err != nil {
			t.Fatal(err)
		}
		d := bootDirect(t, cfg)
		t.Cleanup(func() { d.c.cancel(); d.c.prog.abort() })
		d.unlock()
		d.want(0, 0x31, 0x01, 0xFF, 0x00)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		d.download(FormatDelta, patch)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("a %d-byte patch made a %d-byte image with %d bytes allocated", len(patch), len(newImg), alloc)
		if alloc > DefaultDeltaMemory+64<<10 || alloc > uint64(len(newImg)) {
			t.Errorf("the delta download allocated %d bytes for a %d-byte image", alloc, len(newImg))
		}
		if r := d.want(0, verifyReq(newImg)...); r[4] != VerifyOK {
			t.Fatalf("verify: % X", r)
		}
	})
}
