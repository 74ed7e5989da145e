// Package flash is the flash engine: from a firmware artifact to a confirmed
// image on an ECU, or a clean rollback to the other slot.
//
// It must never activate an image whose SHA-256 over the written slot does
// not match the artifact, and must never leave an ECU without a bootable,
// verified image.
package flash
