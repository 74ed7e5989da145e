package sim

import (
	"testing"
	"testing/synctest"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/acme"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

func be16(v uint16) (byte, byte) { return byte(v >> 8), byte(v) }

// TestAcmeECUDemandsAcmeSequence: an ECU playing Acme answers on Acme's
// level with 8-byte seeds checked by acme.Key, has no generic routines,
// and erases only after a fingerprint and passed preconditions.
func TestAcmeECUDemandsAcmeSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, testImage(t, "1.0.0", 1, 5000), "maker: acme\n")
		eraseHi, eraseLo := be16(acme.RoutineErase)
		fpHi, fpLo := be16(acme.DIDFingerprint)
		preHi, preLo := be16(acme.RoutineCheckPreconditions)
		d.want(0, 0x10, 0x02)
		d.want(uds.SubFunctionNotSupported, 0x27, 0x01) // no generic level
		seed := d.want(0, 0x27, acme.SecurityLevel)
		if len(seed) != 2+acme.SeedLength {
			t.Fatalf("seed % X, want %d bytes", seed, acme.SeedLength)
		}
		key, err := acme.Key(acme.SecurityLevel, seed[2:])
		if err != nil {
			t.Fatal(err)
		}
		d.want(0, append([]byte{0x27, acme.SecurityLevel + 1}, key...)...)
		d.want(uds.RequestOutOfRange, 0x31, 0x01, 0xFF, 0x00) // the generic erase
		d.want(uds.RequestSequenceError, 0x31, 0x01, eraseHi, eraseLo)
		d.want(0, append([]byte{0x2E, fpHi, fpLo}, acme.Fingerprint(1)...)...)
		d.want(uds.RequestSequenceError, 0x31, 0x01, eraseHi, eraseLo) // no preconditions yet
		d.want(0, append([]byte{0x2E, fpHi, fpLo}, acme.Fingerprint(1)...)...)
		d.want(0, 0x31, 0x01, preHi, preLo)
		d.want(0, 0x31, 0x01, eraseHi, eraseLo)
	})
}

// TestAcmeECUReportsVehicleState: speed and voltage DIDs, and the
// preconditions routine refusing a moving vehicle.
func TestAcmeECUReportsVehicleState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirect(t, testImage(t, "1.0.0", 1, 5000), "maker: acme\nvehicle: {speedKmh: 12, batteryMillivolts: 11800}\n")
		spHi, spLo := be16(acme.DIDVehicleSpeed)
		vHi, vLo := be16(acme.DIDBatteryVoltage)
		if r := d.want(0, 0x22, spHi, spLo); len(r) != 4 || r[3] != 12 {
			t.Errorf("speed % X", r)
		}
		if r := d.want(0, 0x22, vHi, vLo); len(r) != 5 || int(r[3])<<8|int(r[4]) != 11800 {
			t.Errorf("voltage % X", r)
		}
		d.unlock()
		preHi, preLo := be16(acme.RoutineCheckPreconditions)
		d.want(uds.ConditionsNotCorrect, 0x31, 0x01, preHi, preLo)
	})
}

func TestMakerConfigChecks(t *testing.T) {
	for _, extra := range []string{"maker: bmw\n", "vehicle: {speedKmh: 300}\n", "vehicle: {batteryMillivolts: -1}\n"} {
		e := testVehicle(t, "slots: {a: {version: \"1\", payloadSize: 10}}\n"+extra)
		if _, err := DecodeConfig(e); err == nil {
			t.Errorf("%q accepted", extra)
		}
	}
}
