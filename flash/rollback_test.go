package flash

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
)

func TestRollbackActivatesTheOtherSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		// The same release counter: the bootloader's anti-rollback allows
		// going back to it.
		next := nextImage(t, base, "1.0.1", 1)
		expect(t, r.flash(0, firmware(t, next)), Done)
		checkBootsValid(t, r.ecus[0], next)
		res := r.eng.Rollback(context.Background(), r.v.ECUs[0])
		expect(t, res, Done)
		checkBootsValid(t, r.ecus[0], base)
		if res.Plan.Delta || res.Plan.Size != 0 {
			t.Errorf("plan %+v: a rollback writes nothing", res.Plan)
		}
	})
}

func TestRollbackBelowTheReleaseCounterIsRefusedByTheECU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		base := baseImage(t)
		next := nextImage(t, base, "2.0.0", 2)
		expect(t, r.flash(0, firmware(t, next)), Done)
		res := r.eng.Rollback(context.Background(), r.v.ECUs[0])
		expect(t, res, Failed)
		var ve *oem.VerifyError
		if !errors.As(res.Err, &ve) {
			t.Errorf("error %v: want the ECU's verify refusal", res.Err)
		}
		checkBootsValid(t, r.ecus[0], next)
	})
}

func TestRollbackWithoutAnotherImageIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, testVehicle(t, 1, 1, ""))
		res := r.eng.Rollback(context.Background(), r.v.ECUs[0])
		expect(t, res, Refused)
		checkBootsValid(t, r.ecus[0], baseImage(t))
	})
}
