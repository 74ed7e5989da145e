package sim

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"go.uber.org/zap"
)

// The seed/key algorithms an ECU's OEM adapter settings select with
// `seedKey` (docs/simulator.md). Both work on 4-byte seeds with the 32-bit
// `seedKeyConstant` (DefaultSeedKeyConstant when unset):
//
//	xor: key = seed XOR constant
//	add: key = seed + constant (mod 2^32)
//
// Both are big-endian. They are test algorithms with no secret worth the
// name, as the defaults of real bootloaders' development builds are.
const (
	SeedKeyXOR             = "xor"
	SeedKeyAdd             = "add"
	DefaultSeedKeyConstant = 0x5EC0DE42
	// DefaultSecurityLevel is the requestSeed value that unlocks
	// programming unless `securityLevel` says otherwise.
	DefaultSecurityLevel = 0x01
)

// SecurityAlgorithm returns the key function and the security level an
// OEM adapter's settings select (seedKey, seedKeyConstant,
// securityLevel); a tester with the same settings computes the keys the
// simulated ECU expects.
func SecurityAlgorithm(settings map[string]any) (uds.KeyFunc, byte, error) {
	alg := SeedKeyXOR
	if v, ok := settings["seedKey"]; ok {
		s, isStr := v.(string)
		if !isStr || (s != SeedKeyXOR && s != SeedKeyAdd) {
			return nil, 0, fmt.Errorf("seedKey: %v: want xor or add", v)
		}
		alg = s
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

// settingUint reads a YAML number (or a numeric string such as "0x12")
// of at most bits bits.
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

func zapSID(sid byte) zap.Field             { return zap.Stringer("service", uds.SID(sid)) }
func zapNRC(code byte) zap.Field            { return zap.String("nrc", uds.NRC(code).Error()) }
func zapDuration(d time.Duration) zap.Field { return zap.Duration("duration", d) }
