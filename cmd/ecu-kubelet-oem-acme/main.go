// Command ecu-kubelet-oem-acme is the example OEM adapter plugin: it
// programs the ECUs of Acme Motors, a made-up car maker (package
// flash/oem/acme), with their own seed/key, routines, fingerprint and
// pre-flash checks, and keeps the generic adapter's slot DIDs and verify
// routine records. ecu-kubelet runs it when a vehicle file names it:
//
//	oem:
//	  adapter: acme
//	  plugin: /usr/local/lib/ecu-kubelet/ecu-kubelet-oem-acme
//	  sha256: <sha256sum of the binary>
//	  settings: {minBatteryMillivolts: 12000, workshop: 0x4B42}
//
// docs/oem-adapters.md walks through it. Run by hand it only says that it
// is a plugin.
package main

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/acme"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/sdk"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

func main() { sdk.Serve(newAdapter) }

// adapter is Acme's sequence: the generic adapter with Acme's security,
// routines, fingerprint and checks.
type adapter struct {
	*oem.Generic
	minMillivolts int
	workshop      uint16
}

func newAdapter(ecu vehicle.ECU) (oem.Adapter, error) {
	g, err := oem.NewGeneric(ecu)
	if err != nil {
		return nil, err
	}
	a := &adapter{Generic: g, minMillivolts: acme.DefaultMinBatteryMillivolts, workshop: 0x4B42}
	s := ecu.OEM.Settings
	if v, ok := s["minBatteryMillivolts"].(int); ok {
		a.minMillivolts = v
	} else if _, set := s["minBatteryMillivolts"]; set {
		return nil, fmt.Errorf("oem.settings.minBatteryMillivolts: %v is not a whole number", s["minBatteryMillivolts"])
	}
	if v, ok := s["workshop"].(int); ok && v >= 0 && v <= 0xFFFF {
		a.workshop = uint16(v)
	} else if _, set := s["workshop"]; set {
		return nil, fmt.Errorf("oem.settings.workshop: %v: want a code 0 to 0xFFFF", s["workshop"])
	}
	return withFaults(a, s)
}

func (a *adapter) Profile(ctx context.Context) (oem.Profile, error) {
	p, err := a.Generic.Profile(ctx)
	p.SecurityLevel, p.KeyLength = acme.SecurityLevel, acme.KeyLength
	p.Preconditions = []oem.Routine{{ID: acme.RoutineCheckPreconditions}}
	p.Erase, p.Verify = oem.Routine{ID: acme.RoutineErase}, acme.RoutineVerify
	p.Activate, p.Confirm, p.Revert = oem.Routine{ID: acme.RoutineActivate}, oem.Routine{ID: acme.RoutineConfirm}, oem.Routine{ID: acme.RoutineRevert}
	p.Fingerprint = oem.DIDWrite{DID: acme.DIDFingerprint, Data: acme.Fingerprint(a.workshop)}
	p.CheckDIDs = []uint16{acme.DIDVehicleSpeed, acme.DIDBatteryVoltage}
	return p, err
}

func (a *adapter) Key(_ context.Context, level byte, seed []byte) ([]byte, error) {
	return acme.Key(level, seed)
}

// PreFlashCheck allows a flash only with the vehicle standing and the
// battery at or above the minimum voltage.
func (a *adapter) PreFlashCheck(_ context.Context, _ oem.Identity, checks [][]byte) error {
	if len(checks) != 2 || len(checks[0]) != 1 || len(checks[1]) != 2 {
		return fmt.Errorf("speed and voltage DIDs of unexpected lengths %d; want 1 and 2 bytes", lens(checks))
	}
	if speed := checks[0][0]; speed != 0 {
		return &oem.ConditionError{Reason: fmt.Sprintf("the vehicle moves at %d km/h; Acme ECUs are programmed standing still", speed)}
	}
	if mv := int(binary.BigEndian.Uint16(checks[1])); mv < a.minMillivolts {
		return &oem.ConditionError{Reason: fmt.Sprintf("battery at %d mV, below the %d mV programming needs; connect a charger", mv, a.minMillivolts)}
	}
	return nil
}

func lens(b [][]byte) []int {
	n := make([]int, len(b))
	for i := range b {
		n[i] = len(b[i])
	}
	return n
}
