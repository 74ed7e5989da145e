package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// faultBench starts an ECU with old in slot A and the fault plans given
// as YAML list items, and returns it with the image to flash.
func faultBench(t *testing.T, faults string, extra string) (b *bench, old, new []byte) {
	t.Helper()
	old = testImage(t, "1.0.0", 1, 20000)
	new = testImage(t, "2.0.0", 2, 20000)
	sim := "slots: {a: {file: " + imageFile(t, old) + "}}\n" + extra + "\n"
	if faults != "" {
		sim += "faults:\n" + indent(faults, "  ")
	}
	return newBench(t, testVehicle(t, sim)), old, new
}

// wantRunning checks that the ECU runs the image img from slot.
func wantRunning(t *testing.T, b *bench, slot string, img []byte) {
	t.Helper()
	b.waitRunning()
	st := b.ecu.Status()
	sum := image.Digest(img)
	if st.ActiveSlot != slot || st.Slots[slot[0]-'A'].Digest != fmt.Sprintf("sha256:%x", sum) {
		t.Fatalf("want slot %s running %x: %+v", slot, sum[:4], st)
	}
}

func TestFaultPowerLossAtByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, "- {kind: powerLoss, atByte: 9000}", "")
		ctx := context.Background()
		if err := b.program(ctx, FormatFullImage, new, new); err == nil {
			t.Fatal("the flash went through a power loss")
		}
		wantRunning(t, b, "A", old)
		if st := b.ecu.Status(); st.BootCount != 2 || st.Slots[1].State != SlotInvalid {
			t.Fatalf("after the power loss: %+v", st)
		}
		// The slot kept exactly the bytes programmed before the loss.
		got := b.ecu.flash.read(1, 0, int64(len(new)))
		if !bytes.Equal(got[:9000], new[:9000]) || bytes.Count(got[9000:], []byte{0xFF}) != len(new)-9000 {
			t.Fatal("slot B does not hold exactly the first 9000 bytes")
		}
		// The flash engine's retry succeeds.
		if err := b.program(ctx, FormatFullImage, new, new); err != nil {
			t.Fatal(err)
		}
		wantRunning(t, b, "B", new)
	})
}

func TestFaultPowerLossInErase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, "- {kind: powerLoss, phase: erase, sector: 3}", "")
		if err := b.program(context.Background(), FormatFullImage, new, new); err == nil {
			t.Fatal("the flash went through a power loss")
		}
		wantRunning(t, b, "A", old)
	})
}

func TestFaultNRC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, "- {kind: nrc, service: 0x36, step: 3, code: 0x72}", "")
		err := b.program(context.Background(), FormatFullImage, new, new)
		if !errors.Is(err, uds.GeneralProgrammingFailure) {
			t.Fatalf("err = %v, want generalProgrammingFailure", err)
		}
		wantRunning(t, b, "A", old)
	})
}

func TestFaultPendingStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, new := faultBench(t, "- {kind: pendingStorm, service: 0x31, step: 1, duration: 40s}", "")
		start := time.Now()
		if err := b.program(context.Background(), FormatFullImage, new, new); err != nil {
			t.Fatalf("a responsePending storm within the client's timeout broke the flash: %v", err)
		}
		if d := time.Since(start); d < 40*time.Second {
			t.Fatalf("the flash took %v through a 40 s storm", d)
		}
		wantRunning(t, b, "B", new)
	})
}

func TestFaultDropFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Frame 300 is inside the download's first TransferData blocks.
		b, _, new := faultBench(t, "- {kind: dropFrames, afterFrames: 300, count: 1}", "")
		if err := b.program(context.Background(), FormatFullImage, new, new); err != nil {
			t.Fatalf("a lost frame was not recovered by the retransmission: %v", err)
		}
		wantRunning(t, b, "B", new)
	})
}

func TestFaultCorruptFramesCaughtByVerify(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, "- {kind: corruptFrames, afterFrames: 300, count: 1}", "")
		err := b.program(context.Background(), FormatFullImage, new, new)
		if err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("err = %v, want the verification to refuse the corrupted image", err)
		}
		wantRunning(t, b, "A", old)
	})
}

func TestFaultBusSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, "- {kind: busSilent, afterFrames: 300, duration: 5s}", "")
		ctx := context.Background()
		if err := b.program(ctx, FormatFullImage, new, new); err == nil {
			t.Fatal("the flash went through 5 s of silence")
		}
		time.Sleep(5 * time.Second)
		if err := b.client.TesterPresent(ctx, 0); err != nil {
			t.Fatalf("the ECU does not answer after the silence: %v", err)
		}
		wantRunning(t, b, "A", old)
	})
}

func TestFaultSecurityLockout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, _ := faultBench(t, "- {kind: securityLockout}", "")
		ctx := context.Background()
		if _, err := b.client.DiagnosticSessionControl(ctx, uds.ProgrammingSession); err != nil {
			t.Fatal(err)
		}
		for _, want := range []uds.NRC{uds.InvalidKey, uds.InvalidKey, uds.ExceededNumberOfAttempts, uds.RequiredTimeDelayNotExpired} {
			if err := b.client.SecurityAccess(ctx, b.ecu.level, b.key()); !errors.Is(err, want) {
				t.Fatalf("SecurityAccess: %v, want %v", err, want)
			}
		}
		time.Sleep(uds.DefaultLockoutDelay)
		// S3 ended the programming session meanwhile.
		if _, err := b.client.DiagnosticSessionControl(ctx, uds.ProgrammingSession); err != nil {
			t.Fatal(err)
		}
		if err := b.client.SecurityAccess(ctx, b.ecu.level, b.key()); err != nil {
			t.Fatalf("after the lockout: %v", err)
		}
	})
}

func TestFaultBootFailureReverts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, `- {kind: bootFailure, version: "2.0.0"}`, "confirmWithin: 3")
		if err := b.program(context.Background(), FormatFullImage, new, new); err != nil {
			t.Fatal(err)
		}
		wantRunning(t, b, "A", old)
		st := b.ecu.Status()
		if st.Slots[1].State != SlotRejected || st.Slots[1].BootAttempts != 3 || st.BootCount != 5 {
			t.Fatalf("after the failed test boots: %+v", st)
		}
	})
}

func TestFaultNeverConfirmReverts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, old, new := faultBench(t, `- {kind: neverConfirm, version: "2.0.0"}`, "confirmWithin: 2\nautoConfirm: 1s")
		ctx := context.Background()
		if err := b.program(ctx, FormatFullImage, new, new); err != nil {
			t.Fatal(err)
		}
		wantRunning(t, b, "B", new)
		time.Sleep(2 * time.Second)
		if _, err := b.client.RoutineControl(ctx, uds.StartRoutine, RoutineConfirm, nil); !errors.Is(err, uds.ConditionsNotCorrect) {
			t.Fatalf("confirm: %v, want conditionsNotCorrect", err)
		}
		for range 2 {
			if _, err := b.client.ECUReset(ctx, uds.HardReset); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		wantRunning(t, b, "A", old)
	})
}

func TestFaultPlansRejected(t *testing.T) {
	for _, f := range []string{
		"- {kind: powerLoss}",
		"- {kind: powerLoss, atByte: 1, phase: verify}",
		"- {kind: powerLoss, phase: lunch}",
		"- {kind: nrc, service: 0x36, step: 0, code: 0x72}",
		"- {kind: nrc, service: 0x36, step: 1, code: 0x78}",
		"- {kind: pendingStorm, service: 0x31, step: 1}",
		"- {kind: busSilent, afterFrames: 3}",
		"- {kind: bootFailure}",
		"- {kind: meteor}",
		"- {kind: nrc, colour: red}",
	} {
		e := testVehicle(t, "slots: {a: {version: \"1.0.0\", payloadSize: 100}}\nfaults:\n"+indent(f, "  "))
		if _, err := DecodeConfig(e); err == nil || !strings.Contains(err.Error(), "faults") && !strings.Contains(err.Error(), "colour") {
			t.Errorf("%s: err = %v, want one naming the fault", f, err)
		}
	}
}

func TestInjectAtRunTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, _ := faultBench(t, "", "")
		ctx := context.Background()
		if err := b.ecu.Inject(Fault{Kind: FaultNRC, Service: 0x3E, Step: 1, Code: byte(uds.BusyRepeatRequest)}); err != nil {
			t.Fatal(err)
		}
		if err := b.client.TesterPresent(ctx, 0); !errors.Is(err, uds.BusyRepeatRequest) {
			t.Fatalf("TesterPresent: %v, want the injected busyRepeatRequest", err)
		}
		if err := b.client.TesterPresent(ctx, 0); err != nil {
			t.Fatalf("the fault fired twice: %v", err)
		}
		if err := b.ecu.Inject(Fault{Kind: "meteor"}); err == nil {
			t.Fatal("Inject took an unknown fault kind")
		}
	})
}
