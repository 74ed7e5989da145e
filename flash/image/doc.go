// Package image is the project's firmware image format: a fixed 128-byte
// header followed by the payload the ECU runs. The simulator's bootloader
// boots it, the flash engine checks it before activating a slot, and
// `ecu-kubelet firmware pack` will write it; all of them use Build and
// Parse here, so there is one definition of a valid image.
//
// The header (big-endian) is:
//
//	offset size
//	0      4    magic "EKFW"
//	4      1    layout version (1)
//	5      3    zero
//	8      32   version string, NUL-padded (printable ASCII)
//	40     32   hardware id, NUL-padded (printable ASCII)
//	72     4    release counter (anti-rollback: never decreases)
//	76     4    payload length in bytes
//	80     32   SHA-256 of the payload
//	112    16   zero (reserved)
//
// An image's digest, the one ECUs report and artifacts name, is the SHA-256
// of the whole image, header included (Digest).
//
// It is a package of its own rather than part of package sim because the
// flash engine and the artifact tooling must not depend on the simulator.
// Parse must never panic or allocate according to lengths in its input.
package image
