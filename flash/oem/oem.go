package oem

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// Adapter is everything OEM-specific the flash engine needs. Every method
// may be called from several goroutines for different ECUs.
type Adapter interface {
	// Profile returns the fixed parts of the sequence for the ECU.
	Profile(ctx context.Context) (Profile, error)
	// Key computes the key answering seed at security level (the odd
	// requestSeed sub-function).
	Key(ctx context.Context, level byte, seed []byte) ([]byte, error)
	// DecodeSlots turns the values of Profile.SlotDIDs (in that order)
	// into the ECU's slot state.
	DecodeSlots(ctx context.Context, values [][]byte) (Slots, error)
	// VerifyOption is the option record of the verify routine that checks
	// the written slot against the image's SHA-256.
	VerifyOption(ctx context.Context, digest [sha256.Size]byte) ([]byte, error)
	// CheckVerify interprets the verify routine's status record; a
	// non-nil error means the slot must not be activated.
	CheckVerify(ctx context.Context, status []byte, digest [sha256.Size]byte) error
	// PreFlashCheck refuses to flash an ECU in the state id and checks
	// describe (for example a vehicle not parked) with a *ConditionError;
	// nil allows it. checks are the values of Profile.CheckDIDs, in that
	// order, read from the ECU just before.
	PreFlashCheck(ctx context.Context, id Identity, checks [][]byte) error
}

// ConditionError is a pre-flash check that refuses to flash the ECU in
// its present state: the job is refused, nothing is written, and it may
// succeed later (once the vehicle stands still, say).
type ConditionError struct {
	Reason string
}

func (e *ConditionError) Error() string { return e.Reason }

// Routine is one RoutineControl startRoutine call.
type Routine struct {
	ID     uint16
	Option []byte
}

// Profile is the fixed, plain-data part of an OEM's flash sequence.
type Profile struct {
	SecurityLevel byte // odd requestSeed sub-function unlocking programming
	// KeyLength is the length of Key's answers in bytes; 0 for any.
	KeyLength int
	// HardwareIDDID and VersionDID hold the ECU's hardware id and the
	// running image's version as text.
	HardwareIDDID, VersionDID uint16
	// SlotDIDs are read together and given to DecodeSlots.
	SlotDIDs []uint16
	// CheckDIDs are read before a flash and given to PreFlashCheck (the
	// vehicle's speed, the battery voltage): the adapter decides from
	// their values without reaching the bus itself.
	CheckDIDs []uint16
	// Preconditions run (in order, in the programming session, unlocked)
	// before the erase.
	Preconditions                    []Routine
	Erase, Activate, Confirm, Revert Routine
	// Verify is the verify routine's id; its option comes from VerifyOption.
	Verify uint16
	// Fingerprint, if its DID is not zero, is written after unlocking.
	Fingerprint DIDWrite
	// SlotAddresses are the base addresses of slots A and B.
	SlotAddresses [2]uint64
	// FullFormat and DeltaFormat are RequestDownload's
	// dataFormatIdentifier for an image and a delta envelope; DeltaOK says
	// whether the ECU applies deltas at all.
	FullFormat, DeltaFormat byte
	DeltaOK                 bool
	// FunctionalPreProgramming says whether to send 0x10 03, 0x85 02 and
	// 0x28 03 functionally before programming (and their opposites after).
	FunctionalPreProgramming bool
}

// DIDWrite is one WriteDataByIdentifier.
type DIDWrite struct {
	DID  uint16
	Data []byte
}

// Identity is what the engine read from the ECU.
type Identity struct {
	HardwareID string
	Version    string
	Slots      Slots
}

// Slot states, as Slot.State reports them.
const (
	SlotEmpty     = "empty"
	SlotInvalid   = "invalid"
	SlotValid     = "valid"
	SlotPending   = "pending"
	SlotTrial     = "trial"
	SlotConfirmed = "confirmed"
	SlotRejected  = "rejected"
)

// Slots is the state of an A/B ECU.
type Slots struct {
	Active int  // the running slot: 0 (A), 1 (B), or -1 when none runs
	Trial  bool // the running image awaits confirmation
	Slot   [2]Slot
}

// Slot is one slot's image.
type Slot struct {
	State          string
	Confirmed      bool
	ReleaseCounter uint32
	Digest         Digest // zero without a valid image
	Version        string
}

// Digest is the SHA-256 of a whole image; as text "sha256:<hex>".
type Digest [sha256.Size]byte

func (d Digest) String() string { return "sha256:" + hex.EncodeToString(d[:]) }

// MarshalText writes the digest as String does.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Running returns the running slot, if one runs.
func (s Slots) Running() (Slot, bool) {
	if s.Active != 0 && s.Active != 1 {
		return Slot{}, false
	}
	return s.Slot[s.Active], true
}

// VerifyError is a verify routine that rejected the written slot.
type VerifyError struct {
	Result byte
	Reason string
	// Retry is true when writing the slot again may help (a damaged or
	// mismatching image); false when the ECU refuses the image itself.
	Retry bool
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("oem: the ECU's verify routine rejected the written slot: %s (0x%02X)", e.Reason, e.Result)
}

// New returns the adapter the ECU's oem section names: "" and "generic"
// are Generic. Any other adapter is a plugin, which only a plugin host
// runs (package flash/oem/plugin: Host.New).
func New(ecu vehicle.ECU) (Adapter, error) {
	switch ecu.OEM.Adapter {
	case "", "generic":
		return NewGeneric(ecu)
	}
	return nil, fmt.Errorf("oem: %s.oem.adapter %q: a plugin adapter, and this caller runs no plugins; give the flash engine a plugin host's New (flash/oem/plugin) as its NewAdapter", ecu.Path(), ecu.OEM.Adapter)
}

// The generic seed/key algorithms that oem.settings select with `seedKey`
// (docs/simulator.md), on 4-byte seeds with the 32-bit `seedKeyConstant`,
// big-endian:
//
//	xor: key = seed XOR constant
//	add: key = seed + constant (mod 2^32)
//
// They are test algorithms with no secret worth the name, as the defaults
// of real bootloaders' development builds are; the simulated ECUs check
// keys with the same function.
const (
	SeedKeyXOR             = "xor"
	SeedKeyAdd             = "add"
	DefaultSeedKeyConstant = 0x5EC0DE42
	// DefaultSecurityLevel is the requestSeed value that unlocks
	// programming unless `securityLevel` says otherwise.
	DefaultSecurityLevel = 0x01
)

// SecurityAlgorithm returns the key function and the security level that
// an ECU's oem settings select (seedKey, seedKeyConstant, securityLevel).
// The Generic adapter answers seeds with it and the simulator checks keys
// with it, so the two always agree.
func SecurityAlgorithm(settings map[string]any) (uds.KeyFunc, byte, error) {
	alg := SeedKeyXOR
	if v, ok := settings["seedKey"]; ok {
		str, isStr := v.(string)
		if !isStr || (str != SeedKeyXOR && str != SeedKeyAdd) {
			return nil, 0, fmt.Errorf("seedKey: %v: want xor or add", v)
		}
		alg = str
	}
	constant := uint64(DefaultSeedKeyConstant)
	if v, ok := settings["seedKeyConstant"]; ok {
		n, err := settingUint(v, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("seedKeyConstant: %w", err)
		}
		constant = n
	}
	level := uint64(DefaultSecurityLevel)
	if v, ok := settings["securityLevel"]; ok {
		n, err := settingUint(v, 8)
		if err != nil || n%2 == 0 || n > 0x7D {
			return nil, 0, fmt.Errorf("securityLevel: %v: want an odd requestSeed value 0x01-0x7D", v)
		}
		level = n
	}
	c := uint32(constant)
	key := func(_ byte, seed []byte) ([]byte, error) {
		if len(seed) != 4 {
			return nil, fmt.Errorf("seed of %d bytes; the %s algorithm takes 4", len(seed), alg)
		}
		s := binary.BigEndian.Uint32(seed)
		if alg == SeedKeyAdd {
			return binary.BigEndian.AppendUint32(nil, s+c), nil
		}
		return binary.BigEndian.AppendUint32(nil, s^c), nil
	}
	return key, byte(level), nil
}

// Generic is the ISO 14229 adapter of docs/simulator.md: routines 0xFF00
// erase, 0xFF01 verify (with the image's SHA-256), 0xFF02 activate, 0xFF03
// confirm, 0xFF04 revert; slot DIDs 0xFD00-0xFD02; formats 0x00 (image)
// and 0x10 (delta); the seed/key of SecurityAlgorithm.
type Generic struct {
	profile Profile
	key     uds.KeyFunc
}

// NewGeneric configures a Generic adapter from the ECU's oem settings
// (seedKey, seedKeyConstant, securityLevel) and flash geometry.
func NewGeneric(ecu vehicle.ECU) (*Generic, error) {
	key, level, err := SecurityAlgorithm(ecu.OEM.Settings)
	if err != nil {
		return nil, fmt.Errorf("oem: %s.oem.settings.%w", ecu.Path(), err)
	}
	g := &Generic{key: key}
	a := ecu.Addressing
	g.profile = Profile{
		SecurityLevel: byte(level),
		KeyLength:     4,
		HardwareIDDID: 0xF191,
		VersionDID:    0xF195,
		SlotDIDs:      []uint16{0xFD00, 0xFD01, 0xFD02},
		Erase:         Routine{ID: 0xFF00},
		Verify:        0xFF01,
		Activate:      Routine{ID: 0xFF02},
		Confirm:       Routine{ID: 0xFF03},
		Revert:        Routine{ID: 0xFF04},
		SlotAddresses: [2]uint64{ecu.Flash.SlotA, ecu.Flash.SlotB},
		FullFormat:    0x00,
		DeltaFormat:   0x10,
		DeltaOK:       true,
		FunctionalPreProgramming: (a.Mode == vehicle.NormalFixed && a.FunctionalAddress != nil) ||
			(a.Mode != vehicle.NormalFixed && a.FunctionalID != 0),
	}
	return g, nil
}

// settingUint reads a YAML number, or a numeric string such as "0x12", of
// at most bits bits.
func settingUint(v any, bits int) (uint64, error) {
	var n uint64
	switch x := v.(type) {
	case int:
		if x < 0 {
			return 0, fmt.Errorf("%d is negative", x)
		}
		n = uint64(x)
	case uint64:
		n = x
	case string:
		var err error
		if n, err = strconv.ParseUint(x, 0, 64); err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
	default:
		return 0, fmt.Errorf("%v is not a number", v)
	}
	if bits < 64 && n>>bits != 0 {
		return 0, fmt.Errorf("%#x does not fit %d bits", n, bits)
	}
	return n, nil
}

// Profile returns the generic sequence.
func (g *Generic) Profile(context.Context) (Profile, error) { return g.profile, nil }

// Key answers a 4-byte seed with SecurityAlgorithm's key.
func (g *Generic) Key(_ context.Context, level byte, seed []byte) ([]byte, error) {
	key, err := g.key(level, seed)
	if err != nil {
		return nil, fmt.Errorf("oem: %w", err)
	}
	return key, nil
}

const slotRecordLen = 71

var slotStates = []string{SlotEmpty, SlotInvalid, SlotValid, SlotPending, SlotTrial, SlotConfirmed, SlotRejected}

// DecodeSlots decodes 0xFD00 (running slot, trial) and the slot records
// 0xFD01 and 0xFD02.
func (g *Generic) DecodeSlots(_ context.Context, v [][]byte) (Slots, error) {
	if len(v) != 3 || len(v[0]) != 2 || len(v[1]) != slotRecordLen || len(v[2]) != slotRecordLen {
		return Slots{}, errors.New("oem: slot DIDs 0xFD00-0xFD02 of unexpected lengths; want 2, 71 and 71 bytes")
	}
	s := Slots{Active: int(v[0][0]), Trial: v[0][1] == 1}
	if v[0][0] == 0xFF {
		s.Active = -1
	} else if s.Active > 1 {
		return Slots{}, fmt.Errorf("oem: running slot %d; want 0, 1 or 0xFF", s.Active)
	}
	for i, r := range v[1:] {
		if int(r[0]) >= len(slotStates) {
			return Slots{}, fmt.Errorf("oem: slot %d state %d is unknown", i, r[0])
		}
		s.Slot[i] = Slot{
			State:          slotStates[r[0]],
			Confirmed:      r[1] == 1,
			ReleaseCounter: binary.BigEndian.Uint32(r[2:6]),
			Digest:         Digest(r[6:38]),
			Version:        strings.TrimRight(string(r[38:70]), "\x00"),
		}
	}
	return s, nil
}

// VerifyOption is the image's SHA-256 itself.
func (g *Generic) VerifyOption(_ context.Context, d [sha256.Size]byte) ([]byte, error) {
	return d[:], nil
}

var verifyReasons = map[byte]string{
	1: "no image in the slot",
	2: "the image is damaged (header or payload SHA-256)",
	3: "the image's digest differs from the artifact's",
	4: "the image is for other hardware",
	5: "the release counter is below the running image's (anti-rollback)",
}

// CheckVerify wants result 0x00 and the expected digest.
func (g *Generic) CheckVerify(_ context.Context, status []byte, d [sha256.Size]byte) error {
	if len(status) != 1+sha256.Size {
		return &VerifyError{Result: 0xFF, Reason: fmt.Sprintf("a status record of %d bytes; want 33", len(status))}
	}
	if status[0] != 0 {
		r, ok := verifyReasons[status[0]]
		if !ok {
			r = "unknown result"
		}
		return &VerifyError{Result: status[0], Reason: r, Retry: status[0] <= 3}
	}
	if [sha256.Size]byte(status[1:]) != d {
		return &VerifyError{Result: 3, Reason: "the slot's digest differs from the artifact's", Retry: true}
	}
	return nil
}

// PreFlashCheck allows any ECU: the generic sequence has no vehicle
// conditions beyond the ECU's own routines.
func (g *Generic) PreFlashCheck(context.Context, Identity, [][]byte) error { return nil }
