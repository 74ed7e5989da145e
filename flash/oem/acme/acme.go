// Package acme is Acme Motors, a made-up car maker: its seed/key
// algorithm, routine identifiers and DIDs. The example adapter plugin
// (cmd/ecu-kubelet-oem-acme) programs Acme ECUs with them and the
// simulator plays one (`simulation: {maker: acme}`), so that the plugin
// path is tested end to end against an ECU that demands it.
//
// An Acme ECU differs from the generic one of docs/simulator.md in what
// an OEM adapter exists for: security access at level 0x11 with 8-byte
// seeds and keys (HMAC-SHA256 under a secret), routines 0x0301-0x0305
// instead of 0xFF00-0xFF04, a fingerprint (DID 0xF15A) that must be
// written and a preconditions routine (0x0203) that must pass before the
// erase, and the vehicle's speed and battery voltage in DIDs 0xF40D and
// 0xF442. Its slot DIDs and download formats are the generic ones.
//
// The package must never do I/O: it is arithmetic and constants.
package acme

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// SecurityLevel is the requestSeed value that unlocks programming.
const SecurityLevel = 0x11

// SeedLength and KeyLength are the lengths of Acme's seeds and keys.
const (
	SeedLength = 8
	KeyLength  = 8
)

// Acme's routines.
const (
	RoutineCheckPreconditions uint16 = 0x0203 // status 0x00: ready to program
	RoutineErase              uint16 = 0x0301
	RoutineVerify             uint16 = 0x0302
	RoutineActivate           uint16 = 0x0303
	RoutineConfirm            uint16 = 0x0304
	RoutineRevert             uint16 = 0x0305
)

// Acme's DIDs.
const (
	// DIDFingerprint takes the tester's fingerprint (FingerprintLength
	// bytes) in the programming session, unlocked, before the erase.
	DIDFingerprint uint16 = 0xF15A
	// DIDVehicleSpeed is the vehicle's speed in km/h, one byte.
	DIDVehicleSpeed uint16 = 0xF40D
	// DIDBatteryVoltage is the supply voltage in millivolts, two bytes
	// big-endian.
	DIDBatteryVoltage uint16 = 0xF442
)

// FingerprintLength is the length of a fingerprint record: a 2-byte
// workshop code, then the tester's name padded with NULs to 16 bytes.
const FingerprintLength = 18

// DefaultMinBatteryMillivolts is the lowest supply voltage at which Acme
// allows programming: a flash must not brown out halfway.
const DefaultMinBatteryMillivolts = 12000

// secret is the key of Acme's development ECUs. A real maker keeps its
// production secret in a hardware security module behind its plugin; the
// plugin is where it would call one.
var secret = []byte("acme-motors development unlock 2026")

// Key answers an Acme seed: the first 8 bytes of HMAC-SHA256(secret,
// level || seed).
func Key(level byte, seed []byte) ([]byte, error) {
	if len(seed) != SeedLength {
		return nil, fmt.Errorf("acme: a seed of %d bytes; Acme seeds are %d", len(seed), SeedLength)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte{level})
	m.Write(seed)
	return m.Sum(nil)[:KeyLength], nil
}

// Fingerprint is the fingerprint record of a workshop.
func Fingerprint(workshop uint16) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, FingerprintLength), workshop)
	var name [16]byte
	copy(name[:], "ecu-kubelet")
	return append(b, name[:]...)
}
