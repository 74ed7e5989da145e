package sim

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

// ECUConfig is a simulated ECU: its vehicle description and what its
// `simulation:` section says.
type ECUConfig struct {
	// ECU is the ECU's vehicle description.
	ECU vehicle.ECU `yaml:"-"`
	// Slots are the images the slots hold at power-up. The active slot's
	// image counts as confirmed.
	Slots struct {
		A *SlotImage `yaml:"a"`
		B *SlotImage `yaml:"b"`
	} `yaml:"slots"`
	// Active is the slot that runs at power-up, "a" (the default) or "b".
	Active string `yaml:"active"`
	// BootTime is how long the ECU is silent after a reset or power-up
	// before it answers; zero means DefaultBootTime.
	BootTime time.Duration `yaml:"bootTime"`
	// ConfirmWithin is how many boots a new image may take to be
	// confirmed before the bootloader reverts; zero means
	// DefaultConfirmWithin.
	ConfirmWithin int `yaml:"confirmWithin"`
	// AutoConfirm, when set, makes the application confirm its own image
	// this long after a healthy boot; otherwise the tester confirms it
	// with routine 0xFF03.
	AutoConfirm *time.Duration `yaml:"autoConfirm"`
	// DeltaMemory bounds the delta applier's decompressor memory in bytes;
	// zero means DefaultDeltaMemory.
	DeltaMemory int64 `yaml:"deltaMemory"`
	// TxDL is the ISO-TP data length of the ECU's frames: 8 (the
	// default) for classic CAN, up to 64 for CAN FD.
	TxDL int `yaml:"txDL"`
	// Faults are the fault plans, each fired when its trigger comes.
	Faults []Fault `yaml:"faults"`
	// Maker makes the ECU demand a car maker's own sequence instead of
	// the generic one: "acme" for Acme Motors (package flash/oem/acme,
	// sim/maker.go). Empty or "generic" is docs/simulator.md's.
	Maker string `yaml:"maker"`
	// Vehicle is the vehicle state a maker's ECU reports (Acme: speed
	// and battery voltage DIDs).
	Vehicle VehicleState `yaml:"vehicle"`
}

// Defaults of ECUConfig.
const (
	DefaultBootTime      = 200 * time.Millisecond
	DefaultConfirmWithin = 3
	DefaultDeltaMemory   = 256 << 10
	// MaxConfirmWithin is the most boots a trailer can count.
	MaxConfirmWithin = 64
)

// SlotImage is an image a slot holds at power-up: a built image file, or
// a synthetic image made from a version, a release counter and a payload
// size (pseudo-random bytes, the same for the same version).
type SlotImage struct {
	File           string `yaml:"file"`
	Version        string `yaml:"version"`
	ReleaseCounter uint32 `yaml:"releaseCounter"`
	PayloadSize    int    `yaml:"payloadSize"`

	data []byte // the built image, filled by decodeConfig or tests
}

// DecodeConfig decodes e's simulation section strictly (unknown keys are
// errors) and checks it: the images fit the slots and are for the ECU's
// hardware.
func DecodeConfig(e vehicle.ECU) (ECUConfig, error) {
	cfg := ECUConfig{ECU: e}
	if err := e.Simulation.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("sim: %s.simulation (line %d): %w", e.Path(), e.Simulation.Line(), err)
	}
	p := e.Path() + ".simulation"
	for i, s := range []*SlotImage{cfg.Slots.A, cfg.Slots.B} {
		if s == nil || s.data != nil {
			continue
		}
		field := fmt.Sprintf("%s.slots.%c", p, "ab"[i])
		if err := s.build(e.HardwareID); err != nil {
			return cfg, &vehicle.FieldError{Path: field, Reason: err.Error()}
		}
	}
	if err := cfg.check(p); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Image returns the image the slot holds at power-up, as DecodeConfig
// built it: for building firmware against what a simulated ECU runs (a
// delta from it).
func (s *SlotImage) Image() []byte { return s.data }

func (s *SlotImage) build(hardwareID string) error {
	if s.File != "" {
		if s.Version != "" || s.PayloadSize != 0 || s.ReleaseCounter != 0 {
			return fmt.Errorf("give either file or version, releaseCounter and payloadSize")
		}
		b, err := os.ReadFile(s.File)
		if err != nil {
			return err
		}
		s.data = b
		return nil
	}
	if s.PayloadSize < 0 || s.PayloadSize > 1<<30 {
		return fmt.Errorf("payloadSize %d: must be 0 to 1 GiB", s.PayloadSize)
	}
	img, err := SyntheticImage(image.Header{Version: s.Version, HardwareID: hardwareID, ReleaseCounter: s.ReleaseCounter}, s.PayloadSize)
	if err != nil {
		return err
	}
	s.data = img
	return nil
}

// SyntheticImage builds an image with a payload of size pseudo-random
// bytes seeded by the version, so that two versions differ everywhere
// and the same version is always the same image.
func SyntheticImage(hdr image.Header, size int) ([]byte, error) {
	var seed [32]byte
	copy(seed[:], hdr.Version)
	r := rand.NewChaCha8(seed)
	payload := make([]byte, size)
	_, _ = r.Read(payload)
	return image.Build(hdr, payload)
}

func (c *ECUConfig) check(p string) error {
	switch c.Active {
	case "", "a", "A":
		c.Active = "a"
	case "b", "B":
		c.Active = "b"
	default:
		return &vehicle.FieldError{Path: p + ".active", Reason: fmt.Sprintf("%q: want a or b", c.Active)}
	}
	if c.BootTime < 0 {
		return &vehicle.FieldError{Path: p + ".bootTime", Reason: "must not be negative"}
	}
	if c.BootTime == 0 {
		c.BootTime = DefaultBootTime
	}
	if c.ConfirmWithin < 0 || c.ConfirmWithin > MaxConfirmWithin {
		return &vehicle.FieldError{Path: p + ".confirmWithin", Reason: fmt.Sprintf("%d: must be 1 to %d boots", c.ConfirmWithin, MaxConfirmWithin)}
	}
	if c.ConfirmWithin == 0 {
		c.ConfirmWithin = DefaultConfirmWithin
	}
	if c.AutoConfirm != nil && *c.AutoConfirm < 0 {
		return &vehicle.FieldError{Path: p + ".autoConfirm", Reason: "must not be negative"}
	}
	if !slices.Contains([]int{0, 8, 12, 16, 20, 24, 32, 48, 64}, c.TxDL) {
		return &vehicle.FieldError{Path: p + ".txDL", Reason: fmt.Sprintf("%d: want 8 for classic CAN or a CAN FD length 12, 16, 20, 24, 32, 48 or 64", c.TxDL)}
	}
	if c.DeltaMemory < 0 {
		return &vehicle.FieldError{Path: p + ".deltaMemory", Reason: "must not be negative"}
	}
	if c.DeltaMemory == 0 {
		c.DeltaMemory = DefaultDeltaMemory
	}
	if trailerSize(c.ConfirmWithin) > c.ECU.Flash.SectorSize {
		return &vehicle.FieldError{Path: p + ".confirmWithin", Reason: fmt.Sprintf("%d boots do not fit the %d-byte trailer sector", c.ConfirmWithin, c.ECU.Flash.SectorSize)}
	}
	active := c.Slots.A
	if c.Active == "b" {
		active = c.Slots.B
	}
	if active == nil {
		return &vehicle.FieldError{Path: p + ".slots." + c.Active, Reason: "the active slot needs an image"}
	}
	for i, s := range []*SlotImage{c.Slots.A, c.Slots.B} {
		if s == nil {
			continue
		}
		field := fmt.Sprintf("simulation.slots.%c", "ab"[i])
		if err := c.ECU.CheckImage(field, len(s.data)); err != nil {
			return err
		}
		h, _, err := image.Parse(s.data)
		if err != nil {
			return &vehicle.FieldError{Path: p + field[len("simulation"):], Reason: err.Error()}
		}
		if h.HardwareID != c.ECU.HardwareID {
			return &vehicle.FieldError{Path: p + field[len("simulation"):], Reason: fmt.Sprintf("image is for hardware %q, the ECU is %q", h.HardwareID, c.ECU.HardwareID)}
		}
	}
	if err := c.checkMaker(p); err != nil {
		return err
	}
	for i := range c.Faults {
		if err := c.Faults[i].check(fmt.Sprintf("%s.faults[%d]", p, i)); err != nil {
			return err
		}
	}
	return nil
}
