package flash

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// Functional pre- and post-programming requests, positive responses
// suppressed: every ECU on the bus stops its normal traffic and DTC
// setting while one is programmed.
var (
	preProgramming = [][]byte{
		{byte(uds.DiagnosticSessionControl), 0x80 | byte(uds.ExtendedSession)},
		{byte(uds.ControlDTCSetting), 0x82},       // DTC setting off
		{byte(uds.CommunicationControl), 0x83, 1}, // disable rx and tx, normal messages
	}
	postProgramming = [][]byte{
		{byte(uds.CommunicationControl), 0x80, 1}, // enable rx and tx
		{byte(uds.ControlDTCSetting), 0x81},       // DTC setting on
		{byte(uds.DiagnosticSessionControl), 0x80 | byte(uds.DefaultSession)},
	}
)

// functional sends reqs functionally; other ECUs' silence or refusals do
// not stop the job, so only a failure to send counts.
func (jb *job) functional(ctx context.Context, reqs [][]byte) error {
	if !jb.prof.FunctionalPreProgramming {
		return nil
	}
	for _, r := range reqs {
		if _, err := jb.c.Functional(ctx, r); err != nil {
			return fmt.Errorf("functional %v: %w", uds.SID(r[0]), err)
		}
	}
	return nil
}

// unlock enters the programming session and unlocks security, waiting
// out a lockout.
func (jb *job) unlock(ctx context.Context) error {
	if err := jb.phase(ctx, PhaseUnlock, ""); err != nil {
		return err
	}
	// The extended session first also ends a download an interrupted run
	// left open (a session change aborts it).
	if _, err := jb.c.DiagnosticSessionControl(ctx, uds.ExtendedSession); err != nil {
		return err
	}
	if err := jb.functional(ctx, preProgramming); err != nil {
		return err
	}
	key := func(level byte, seed []byte) ([]byte, error) { return jb.ad.Key(ctx, level, seed) }
	const tries = 4
	for i := 1; ; i++ {
		if _, err := jb.c.DiagnosticSessionControl(ctx, uds.ProgrammingSession); err != nil {
			return err
		}
		err := jb.c.SecurityAccess(ctx, jb.prof.SecurityLevel, key)
		if err == nil {
			break
		}
		if i == tries || !(errors.Is(err, uds.InvalidKey) || errors.Is(err, uds.ExceededNumberOfAttempts) || errors.Is(err, uds.RequiredTimeDelayNotExpired)) {
			return err
		}
		jb.event(ctx, Event{Phase: PhaseUnlock, Note: "security access refused, waiting out the lockout: " + err.Error()})
		if err := sleep(ctx, orDefault(jb.e.SecurityDelay, DefaultSecurityDelay)); err != nil {
			return err
		}
	}
	if fp := jb.prof.Fingerprint; fp.DID != 0 {
		if err := jb.c.WriteDataByIdentifier(ctx, fp.DID, fp.Data); err != nil {
			return fmt.Errorf("writing the fingerprint: %w", err)
		}
	}
	for _, r := range jb.prof.Preconditions {
		if _, err := jb.c.RoutineControl(ctx, uds.StartRoutine, r.ID, r.Option); err != nil {
			return fmt.Errorf("precondition routine 0x%04X: %w", r.ID, err)
		}
	}
	return nil
}

// program writes the planned data into the inactive slot, verifies and
// activates it, and resets the ECU into it.
func (jb *job) program(ctx context.Context) error {
	if err := jb.unlock(ctx); err != nil {
		return err
	}
	ident, err := jb.identity(ctx)
	if err != nil {
		return err
	}
	slot := 0
	if ident.Slots.Active >= 0 {
		slot = 1 - ident.Slots.Active
	}
	if !jb.rollback {
		if err := jb.transfer(ctx, slot); err != nil {
			return err
		}
	}
	if err := jb.phase(ctx, PhaseVerify, ""); err != nil {
		return err
	}
	opt, err := jb.ad.VerifyOption(ctx, jb.target)
	if err != nil {
		return err
	}
	st, err := jb.c.RoutineControl(ctx, uds.StartRoutine, jb.prof.Verify, opt)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := jb.ad.CheckVerify(ctx, st, jb.target); err != nil {
		return err
	}
	if jb.j.BeforeActivate != nil {
		if err := jb.j.BeforeActivate(); err != nil {
			return fmt.Errorf("flash: %s: not activated: %w", jb.name, err)
		}
	}
	if err := jb.phase(ctx, PhaseActivate, ""); err != nil {
		return err
	}
	if _, err := jb.c.RoutineControl(ctx, uds.StartRoutine, jb.prof.Activate.ID, jb.prof.Activate.Option); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	return jb.reset(ctx)
}

// transfer erases the inactive slot and downloads the planned data into it.
func (jb *job) transfer(ctx context.Context, slot int) error {
	if err := jb.phase(ctx, PhaseErase, ""); err != nil {
		return err
	}
	if _, err := jb.c.RoutineControl(ctx, uds.StartRoutine, jb.prof.Erase.ID, jb.prof.Erase.Option); err != nil {
		return fmt.Errorf("erasing slot %d: %w", slot, err)
	}
	if err := jb.phase(ctx, PhaseTransfer, ""); err != nil {
		return err
	}
	format := jb.prof.FullFormat
	if jb.delta {
		format = jb.prof.DeltaFormat
	}
	total := int64(len(jb.data))
	start := time.Now()
	_, err := jb.c.Download(ctx, uds.DownloadRequest{DataFormat: format, Address: jb.prof.SlotAddresses[slot]}, jb.data, func(sent int) {
		ev := Event{Phase: PhaseTransfer, Bytes: int64(sent), Total: total}
		if el := time.Since(start).Seconds(); el > 0 {
			ev.Rate = float64(sent) / el
			ev.ETA = time.Duration(float64(total-int64(sent)) / ev.Rate * float64(time.Second))
		}
		jb.event(ctx, ev)
	})
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	return nil
}

// reset resets the ECU; a lost answer is no failure, the reset may have
// happened before it was sent.
func (jb *job) reset(ctx context.Context) error {
	if err := jb.phase(ctx, PhaseReset, ""); err != nil {
		return err
	}
	_, err := jb.c.ECUReset(ctx, uds.HardReset)
	var nr *uds.NegativeResponse
	if ctx.Err() != nil || errors.As(err, &nr) {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

// confirm waits for the new image to come back, confirms it, and reverts
// it when it does not come back healthy before ConfirmTimeout.
func (jb *job) confirm(ctx context.Context) error {
	if err := jb.phase(ctx, PhaseConfirm, ""); err != nil {
		return err
	}
	deadline := time.Now().Add(orDefault(jb.e.ConfirmTimeout, DefaultConfirmTimeout))
	reason := "it did not confirm before the deadline"
	for time.Now().Before(deadline) {
		id, err := jb.waitUp(ctx, time.Until(deadline))
		var pe *oem.PluginError
		if errors.As(err, &pe) {
			// Reverting needs the adapter too (security access): leave the
			// image on trial, which the bootloader reverts unless a job
			// confirms it.
			return fmt.Errorf("flash: %s: the new image was activated but cannot be confirmed: %w; it runs on trial: the next job confirms it, else the bootloader reverts it after its test boots", jb.name, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			reason = err.Error()
			break
		}
		running, _ := id.Slots.Running()
		switch {
		case running.Digest != jb.target:
			return &RollbackError{ECU: jb.name, Reason: fmt.Sprintf("the ECU booted %q again: the bootloader reverted the new image (%s)", running.Version, slotOf(id.Slots, jb.target))}
		case !id.Slots.Trial:
			_ = jb.functional(ctx, postProgramming)
			return jb.phase(ctx, PhaseDone, "confirmed")
		}
		_, err = jb.c.RoutineControl(ctx, uds.StartRoutine, jb.prof.Confirm.ID, jb.prof.Confirm.Option)
		if errors.Is(err, uds.ConditionsNotCorrect) {
			reason = "the new image refused to confirm: " + err.Error()
			break
		}
		if err != nil {
			jb.event(ctx, Event{Phase: PhaseConfirm, Note: "confirm failed, trying again: " + err.Error()})
			continue
		}
	}
	return jb.revert(ctx, reason)
}

func slotOf(s oem.Slots, d [32]byte) string {
	for i, sl := range s.Slot {
		if sl.Digest == d {
			return fmt.Sprintf("slot %c is %s", 'A'+i, sl.State)
		}
	}
	return "the new image is in no slot"
}

// revert rejects the image on trial with the explicit revert routine and
// resets into the previous one.
func (jb *job) revert(ctx context.Context, reason string) error {
	if err := jb.phase(ctx, PhaseRevert, reason); err != nil {
		return err
	}
	fail := func(err error) error {
		return fmt.Errorf("flash: %s: reverting the new image (because %s): %w; the bootloader reverts it after its test boots", jb.name, reason, err)
	}
	if err := jb.unlock(ctx); err != nil {
		return fail(err)
	}
	if _, err := jb.c.RoutineControl(ctx, uds.StartRoutine, jb.prof.Revert.ID, jb.prof.Revert.Option); err != nil {
		return fail(err)
	}
	if err := jb.reset(ctx); err != nil {
		return fail(err)
	}
	id, err := jb.waitUp(ctx, orDefault(jb.e.UpTimeout, DefaultUpTimeout))
	if err != nil {
		return fail(err)
	}
	if r, _ := id.Slots.Running(); r.Digest == jb.target {
		return fail(errors.New("the ECU still runs the new image"))
	}
	return &RollbackError{ECU: jb.name, Reason: reason}
}
