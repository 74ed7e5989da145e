package oem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

func TestGenericKeyFollowsSettings(t *testing.T) {
	seed := []byte{0x12, 0x34, 0x56, 0x78}
	tests := []struct {
		name     string
		settings map[string]any
		want     uint32
		level    byte
	}{
		{"defaults: xor", nil, 0x12345678 ^ DefaultSeedKeyConstant, DefaultSecurityLevel},
		{"add with a constant", map[string]any{"seedKey": "add", "seedKeyConstant": 1, "securityLevel": 0x11}, 0x12345679, 0x11},
		{"constant as hex text", map[string]any{"seedKeyConstant": "0xFF"}, 0x12345678 ^ 0xFF, DefaultSecurityLevel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGeneric(vehicle.ECU{OEM: vehicle.OEM{Settings: tt.settings}})
			if err != nil {
				t.Fatal(err)
			}
			k, err := g.Key(context.Background(), tt.level, seed)
			if err != nil || binary.BigEndian.Uint32(k) != tt.want {
				t.Errorf("key %X, %v; want %08X", k, err, tt.want)
			}
			if g.profile.SecurityLevel != tt.level {
				t.Errorf("level 0x%02X, want 0x%02X", g.profile.SecurityLevel, tt.level)
			}
		})
	}
}

func TestGenericRejectsBadSettings(t *testing.T) {
	for _, s := range []map[string]any{
		{"seedKey": "rot13"},
		{"seedKeyConstant": -1},
		{"seedKeyConstant": "0x1FFFFFFFF"},
		{"securityLevel": 2},
	} {
		if _, err := NewGeneric(vehicle.ECU{OEM: vehicle.OEM{Settings: s}}); err == nil {
			t.Errorf("settings %v accepted", s)
		}
	}
	if _, err := New(vehicle.ECU{OEM: vehicle.OEM{Adapter: "acme"}}); err == nil {
		t.Error("an unknown adapter accepted")
	}
}

func slotRecord(state byte, rc uint32, d [32]byte, version string) []byte {
	b := []byte{state, 0}
	if state == 5 {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint32(b, rc)
	b = append(b, d[:]...)
	var v [32]byte
	copy(v[:], version)
	return append(append(b, v[:]...), 0)
}

func TestGenericDecodeSlots(t *testing.T) {
	g, _ := NewGeneric(vehicle.ECU{})
	d := sha256.Sum256([]byte("image"))
	s, err := g.DecodeSlots(context.Background(), [][]byte{{1, 1}, slotRecord(5, 1, [32]byte{}, "1.0.0"), slotRecord(4, 2, d, "2.0.0")})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.Running()
	if !ok || s.Active != 1 || !s.Trial || r.State != SlotTrial || r.Digest != d || r.Version != "2.0.0" || r.ReleaseCounter != 2 || !s.Slot[0].Confirmed {
		t.Errorf("decoded %+v", s)
	}
	for _, bad := range [][][]byte{
		{{1, 1}},
		{{2, 0}, slotRecord(5, 1, d, ""), slotRecord(5, 1, d, "")},
		{{0, 0}, slotRecord(9, 1, d, ""), slotRecord(5, 1, d, "")},
	} {
		if _, err := g.DecodeSlots(context.Background(), bad); err == nil {
			t.Errorf("%X decoded", bad)
		}
	}
}

func TestGenericCheckVerify(t *testing.T) {
	g, _ := NewGeneric(vehicle.ECU{})
	d := sha256.Sum256([]byte("image"))
	ctx := context.Background()
	if err := g.CheckVerify(ctx, append([]byte{0}, d[:]...), d); err != nil {
		t.Errorf("a good slot: %v", err)
	}
	for _, tc := range []struct {
		status []byte
		retry  bool
	}{
		{append([]byte{2}, d[:]...), true},
		{append([]byte{0}, bytes.Repeat([]byte{1}, 32)...), true},
		{append([]byte{4}, d[:]...), false},
		{append([]byte{5}, d[:]...), false},
		{[]byte{0}, false},
	} {
		var ve *VerifyError
		if err := g.CheckVerify(ctx, tc.status, d); !errors.As(err, &ve) || ve.Retry != tc.retry {
			t.Errorf("status %X: %v (retry %v), want a VerifyError with retry %v", tc.status, err, ve != nil && ve.Retry, tc.retry)
		}
	}
}

// FuzzGenericDecodeSlots: slot DIDs come from the ECU; no value panics.
func FuzzGenericDecodeSlots(f *testing.F) {
	g, _ := NewGeneric(vehicle.ECU{})
	f.Add([]byte{0, 0}, slotRecord(5, 1, [32]byte{}, "1"), slotRecord(0, 0, [32]byte{}, ""))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		g.DecodeSlots(context.Background(), [][]byte{a, b, c})
		g.CheckVerify(context.Background(), a, [32]byte{})
	})
}

// TestSecurityAlgorithm checks the generic algorithms against keys worked
// out by hand, and the settings they refuse.
func TestSecurityAlgorithm(t *testing.T) {
	seed := []byte{0x01, 0x02, 0x03, 0x04}
	tests := []struct {
		settings map[string]any
		key      []byte
		level    byte
	}{
		{nil, []byte{0x5F, 0xC2, 0xDD, 0x46}, 1},
		{map[string]any{"seedKey": "add", "seedKeyConstant": 0xFFFFFFFF}, []byte{0x01, 0x02, 0x03, 0x03}, 1},
		{map[string]any{"seedKey": "xor", "seedKeyConstant": "0x01010101", "securityLevel": 0x11}, []byte{0x00, 0x03, 0x02, 0x05}, 0x11},
	}
	for _, tt := range tests {
		k, level, err := SecurityAlgorithm(tt.settings)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k(level, seed)
		if err != nil || string(got) != string(tt.key) || level != tt.level {
			t.Errorf("%v: key % X level %#x (%v), want % X level %#x", tt.settings, got, level, err, tt.key, tt.level)
		}
	}
	for _, bad := range []map[string]any{
		{"seedKey": "rot13"},
		{"seedKeyConstant": 1 << 33},
		{"seedKeyConstant": -1},
		{"securityLevel": 2},
		{"securityLevel": "high"},
	} {
		if _, _, err := SecurityAlgorithm(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
