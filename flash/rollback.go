package flash

import (
	"context"
	"fmt"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

// Rollback makes an ECU run the image its other slot holds: verify that
// slot against the digest the ECU reports for it, activate it, reset, and
// confirm it, as a flash does without writing anything. The ECU's own
// rules still apply: a bootloader with anti-rollback refuses an image with
// a lower release counter at the verify, and the job ends Failed with the
// ECU's reason while the running image stays.
func (e *Engine) Rollback(ctx context.Context, ecu vehicle.ECU) Result {
	res := Result{ECU: ecu.Name, Outcome: Refused}
	s, err := e.Open(ctx, ecu)
	if err != nil {
		res.Outcome, res.Err = Failed, err
		return res
	}
	id, err := s.Identity(ctx)
	s.Close()
	if err != nil {
		res.Outcome, res.Err = Failed, fmt.Errorf("flash: %s: reading its slots: %w", ecu.Name, err)
		return res
	}
	if id.Slots.Active != 0 && id.Slots.Active != 1 {
		res.Err = &RefusedError{ECU: ecu.Name, Reason: "no image runs, so there is no other slot to roll back to"}
		return res
	}
	other := id.Slots.Slot[1-id.Slots.Active]
	if other.Digest == (oem.Digest{}) || (other.State != oem.SlotValid && other.State != oem.SlotConfirmed) {
		res.Err = &RefusedError{ECU: ecu.Name, Reason: fmt.Sprintf("slot %c holds no valid image (%s)", 'A'+1-id.Slots.Active, other.State)}
		return res
	}
	fw := &artifact.Firmware{Ref: "slot " + string(rune('A'+1-id.Slots.Active)), Config: artifact.Config{
		HardwareIDs: []string{id.HardwareID}, Version: other.Version, ReleaseCounter: other.ReleaseCounter, SHA256: other.Digest.String(),
	}}
	return e.flash(ctx, Job{ECU: ecu, Firmware: fw, AllowDowngrade: true}, true)
}
