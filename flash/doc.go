// Package flash is the flash engine: from a firmware artifact to a confirmed
// image on an ECU, or a clean rollback to the other slot.
//
// It must never activate an image whose SHA-256 over the written slot does
// not match the artifact, and must never leave an ECU without a bootable,
// verified image.
//
// An Engine runs Jobs (an ECU of the vehicle and a resolved
// artifact.Firmware) over the vehicle's buses:
//
//   - Plan reads the ECU's identity and slot state over UDS through the
//     OEM adapter (flash/oem), refuses a hardware id the artifact does not
//     list or a lower release counter (unless Job.AllowDowngrade), and
//     picks the delta whose base is the running image's digest, else the
//     full image, with the reason in Plan.Reason. An image that already
//     runs confirmed is a no-op.
//   - Program: extended session, functional pre-programming (0x10 03,
//     0x85 off, 0x28 off) when the ECU has a functional address,
//     programming session, security access, the OEM's fingerprint and
//     preconditions, erase of the inactive slot, 0x34/0x36/0x37 in blocks
//     of the ECU's maxNumberOfBlockLength, verify with the SHA-256,
//     activate, reset. A failed attempt before activation is retried from
//     the plan (Engine.Attempts).
//   - Confirm: wait for the ECU to come back on the new image, confirm it;
//     if the bootloader reverted it, or it does not confirm before
//     Engine.ConfirmTimeout, revert it explicitly: the job ends RolledBack.
//
// Results are Done, RolledBack (*RollbackError), Refused (*RefusedError)
// or Failed. Progress goes to Engine.Events and every UDS message to
// Engine.Transcript. Each phase is journaled atomically in
// Engine.StateDir; a job whose process died is resumed from the ECU's
// slot state on the next run (docs/flash-engine.md).
package flash
