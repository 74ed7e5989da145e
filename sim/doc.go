// Package sim simulates a vehicle's ECUs well enough to flash them: each
// ECU runs the uds server framework over ISO-TP on a CAN bus, with an A/B
// flash bootloader in the spirit of MCUboot, realistic erase and write
// times, and fault plans that fail it the ways hardware fails (power loss
// at any byte or phase, negative responses, responsePending storms, lost
// and corrupted frames, a silent bus, security lockout, images that do not
// boot or never confirm). docs/simulator.md is the ECU's interface: the
// DIDs, routines, download formats, seed/key algorithms and the boot
// rules.
//
// NewECU builds an ECU from its vehicle description (package
// flash/vehicle), decoding the ECU's `simulation:` section strictly into
// an ECUConfig; Run boots it and serves UDS until its context ends,
// rebooting on ECUReset and on power loss; Status reports its slots.
// Firmware images are in the format of package flash/image.
//
// The model keeps one invariant above all: whatever faults strike, the
// ECU boots a valid image (its header parses and its SHA-256 matches), the
// old one or the new one, never none. The bootloader never lets UDS write
// the slot it runs from, or the slot it would fall back to while the
// running image is still on trial.
//
// All waiting takes its time from the time package, so tests run whole
// flashes in virtual time with testing/synctest.
package sim
