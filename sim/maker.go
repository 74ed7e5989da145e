package sim

import (
	"context"
	"fmt"
	"sync"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/acme"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// The makers a simulated ECU can play (ECUConfig.Maker).
const (
	MakerGeneric = "generic"
	MakerAcme    = "acme"
)

// VehicleState is the vehicle around a simulated ECU, as a maker's ECU
// reports it in its DIDs.
type VehicleState struct {
	// SpeedKmh is the vehicle's speed (0 to 255 km/h).
	SpeedKmh int `yaml:"speedKmh"`
	// BatteryMillivolts is the supply voltage; zero means
	// DefaultBatteryMillivolts.
	BatteryMillivolts int `yaml:"batteryMillivolts"`
}

// DefaultBatteryMillivolts is a healthy 12 V battery under charge.
const DefaultBatteryMillivolts = 12600

func (c *ECUConfig) checkMaker(p string) error {
	switch c.Maker {
	case "", MakerGeneric:
		c.Maker = MakerGeneric
	case MakerAcme:
	default:
		return &vehicle.FieldError{Path: p + ".maker", Reason: fmt.Sprintf("%q: want generic or acme", c.Maker)}
	}
	v := &c.Vehicle
	if v.SpeedKmh < 0 || v.SpeedKmh > 255 {
		return &vehicle.FieldError{Path: p + ".vehicle.speedKmh", Reason: fmt.Sprintf("%d: must be 0 to 255", v.SpeedKmh)}
	}
	if v.BatteryMillivolts < 0 || v.BatteryMillivolts > 0xFFFF {
		return &vehicle.FieldError{Path: p + ".vehicle.batteryMillivolts", Reason: fmt.Sprintf("%d: must be 0 to 65535", v.BatteryMillivolts)}
	}
	if v.BatteryMillivolts == 0 {
		v.BatteryMillivolts = DefaultBatteryMillivolts
	}
	return nil
}

// security is the key function and level the ECU checks keys with: its
// maker's, or the generic ones its oem settings select.
func (c *ECUConfig) security() (uds.KeyFunc, byte, error) {
	if c.Maker == MakerAcme {
		return acme.Key, acme.SecurityLevel, nil
	}
	key, level, err := oem.SecurityAlgorithm(c.ECU.OEM.Settings)
	if err != nil {
		return nil, 0, fmt.Errorf("sim: %s.oem.settings: %w", c.ECU.Path(), err)
	}
	return key, level, nil
}

// seedLen is the length of the ECU's seeds; 0 for the uds server's
// default.
func (c *ECUConfig) seedLen() int {
	if c.Maker == MakerAcme {
		return acme.SeedLength
	}
	return 0
}

// routineIDs are the identifiers of the flash routines.
type routineIDs struct{ erase, verify, activate, confirm, revert uint16 }

// registerMaker registers what the ECU's maker adds to the generic
// server, and returns its routine identifiers and the erase routine,
// wrapped in the maker's conditions. An Acme ECU erases only after the
// tester wrote its fingerprint and ran the preconditions routine in this
// programming session (routine 0x0203 passes with the vehicle standing
// and the battery at acme.DefaultMinBatteryMillivolts or more), and
// reports speed and voltage in its DIDs.
func (e *ECU) registerMaker(s *uds.Server, sec uds.Access, erase uds.HandlerFunc) (routineIDs, uds.HandlerFunc) {
	if e.cfg.Maker != MakerAcme {
		return routineIDs{RoutineEraseInactive, RoutineVerify, RoutineActivate, RoutineConfirm, RoutineRevert}, erase
	}
	v := e.cfg.Vehicle
	var mu sync.Mutex
	var fingerprint, ready bool // since the last erase, in this power cycle
	s.RegisterDID(acme.DIDVehicleSpeed, uds.DataIdentifier{Read: func() ([]byte, error) { return []byte{byte(v.SpeedKmh)}, nil }})
	s.RegisterDID(acme.DIDBatteryVoltage, uds.DataIdentifier{Read: func() ([]byte, error) {
		return []byte{byte(v.BatteryMillivolts >> 8), byte(v.BatteryMillivolts)}, nil
	}})
	s.RegisterDID(acme.DIDFingerprint, uds.DataIdentifier{WriteAccess: sec, Len: acme.FingerprintLength, Write: func([]byte) error {
		mu.Lock()
		fingerprint = true
		mu.Unlock()
		return nil
	}})
	s.RegisterRoutine(acme.RoutineCheckPreconditions, uds.Routine{Access: sec, Start: func(context.Context, *uds.Request) ([]byte, error) {
		if v.SpeedKmh != 0 || v.BatteryMillivolts < acme.DefaultMinBatteryMillivolts {
			return nil, uds.ConditionsNotCorrect
		}
		mu.Lock()
		ready = true
		mu.Unlock()
		return []byte{0x00}, nil
	}})
	gated := func(ctx context.Context, r *uds.Request) ([]byte, error) {
		mu.Lock()
		ok := fingerprint && ready
		fingerprint, ready = false, false
		mu.Unlock()
		if !ok {
			// Acme's bootloader: no erase without a fingerprint and
			// passed preconditions.
			return nil, uds.RequestSequenceError
		}
		return erase(ctx, r)
	}
	return routineIDs{acme.RoutineErase, acme.RoutineVerify, acme.RoutineActivate, acme.RoutineConfirm, acme.RoutineRevert}, gated
}
