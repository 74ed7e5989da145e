package sim

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

func TestFullFlashBootsNewImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := testVehicle(t, `slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 20000}}`)
		b := newBench(t, e)
		ctx := context.Background()
		newImg := testImage(t, "2.0.0", 2, 30000)
		start := time.Now()
		if err := b.program(ctx, FormatFullImage, newImg, newImg); err != nil {
			t.Fatal(err)
		}
		b.waitRunning()
		st := b.ecu.Status()
		if st.ActiveSlot != "B" || !st.Trial || st.Slots[1].Version != "2.0.0" {
			t.Fatalf("after the flash: %+v", st)
		}
		if _, err := b.client.RoutineControl(ctx, uds.StartRoutine, RoutineConfirm, nil); err != nil {
			t.Fatal(err)
		}
		st = b.ecu.Status()
		if st.Trial || !st.Slots[1].Confirmed {
			t.Fatalf("after confirming: %+v", st)
		}
		t.Logf("flash of %d bytes took %v (virtual)", len(newImg), time.Since(start))
	})
}

func TestDeltaFlashBootsNewImage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		oldImg := testImage(t, "1.0.0", 1, 20000)
		// A new version: the same payload with a few changes.
		payload := append([]byte(nil), oldImg[128:]...)
		copy(payload[5000:], "a changed function")
		newImg := mustBuild(t, "1.1.0", 2, payload)
		e := testVehicle(t, "slots: {a: {file: "+imageFile(t, oldImg)+"}}")
		b := newBench(t, e)
		ctx := context.Background()
		patch := makeDelta(t, oldImg, newImg)
		if err := b.program(ctx, FormatDelta, patch, newImg); err != nil {
			t.Fatal(err)
		}
		b.waitRunning()
		st := b.ecu.Status()
		if st.ActiveSlot != "B" || st.Slots[1].Version != "1.1.0" {
			t.Fatalf("after the flash: %+v", st)
		}
		t.Logf("patch of %d bytes for a %d-byte image", len(patch), len(newImg))
	})
}
