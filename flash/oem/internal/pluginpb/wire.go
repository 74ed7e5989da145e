// Package pluginpb is the wire protocol of OEM adapter plugins: the gRPC
// service generated from adapter.proto, the go-plugin handshake, and the
// conversions between its messages and package oem's types, which the
// host (flash/oem/plugin) and the SDK (flash/oem/sdk) share.
//
// Conversions from messages check every value that a Go type would
// otherwise truncate, so that nonsense from the other process is an error,
// never a quietly different number.
package pluginpb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ProtocolVersion is the version of this protocol. A host runs only
// plugins built for the same version; change it when a message or a
// call changes meaning.
const ProtocolVersion = 1

// Handshake is what host and plugin check before they talk: the protocol
// version and a magic cookie, which only tells a person who runs a plugin
// binary by hand that it is not a program of its own (it is no secret).
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "ECU_KUBELET_OEM_PLUGIN",
	MagicCookieValue: "8c1f0d9e-oem-adapter",
}

// PluginName is the name the adapter service is dispensed under.
const PluginName = "adapter"

// GRPCPlugin is the go-plugin glue: a plugin sets Impl, the host gets an
// AdapterClient.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl AdapterServer
}

// GRPCServer registers the adapter service.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	RegisterAdapterServer(s, p.Impl)
	return nil
}

// GRPCClient returns an AdapterClient.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewAdapterClient(c), nil
}

// FromECU is what a plugin may see of an ECU.
func FromECU(e vehicle.ECU) (*ECU, error) {
	settings, err := json.Marshal(e.OEM.Settings)
	if err != nil {
		return nil, fmt.Errorf("%s.oem.settings: %w", e.Path(), err)
	}
	a := e.Addressing
	return &ECU{
		Name: e.Name, Path: e.Path(), HardwareId: e.HardwareID, Adapter: e.OEM.Adapter,
		SettingsJson: settings,
		SlotA:        e.Flash.SlotA, SlotB: e.Flash.SlotB, SlotSize: e.Flash.SlotSize, SectorSize: e.Flash.SectorSize,
		Functional: (a.Mode == vehicle.NormalFixed && a.FunctionalAddress != nil) ||
			(a.Mode != vehicle.NormalFixed && a.FunctionalID != 0),
	}, nil
}

// ToECU rebuilds the vehicle description a plugin's adapter is made from.
// Its addressing says only whether the ECU has a functional address; its
// Path is empty (the host names the ECU's path in its errors).
func (m *ECU) ToECU() (vehicle.ECU, error) {
	e := vehicle.ECU{
		Name: m.GetName(), HardwareID: m.GetHardwareId(),
		OEM:   vehicle.OEM{Adapter: m.GetAdapter()},
		Flash: vehicle.Flash{SlotA: m.GetSlotA(), SlotB: m.GetSlotB(), SlotSize: m.GetSlotSize(), SectorSize: m.GetSectorSize()},
	}
	e.Addressing.Mode = vehicle.Normal
	if m.GetFunctional() {
		e.Addressing.FunctionalID = 0x7DF
	}
	if s := m.GetSettingsJson(); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(s))
		dec.UseNumber()
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			return e, fmt.Errorf("settings: %w", err)
		}
		e.OEM.Settings = yamlNumbers(v).(map[string]any)
	}
	return e, nil
}

// yamlNumbers turns JSON numbers back into the types YAML decoding gives
// (int for whole numbers, float64 otherwise), so that settings read the
// same in a plugin as in the host.
func yamlNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && i >= math.MinInt && i <= math.MaxInt {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = yamlNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = yamlNumbers(e)
		}
	}
	return v
}

func routine(r oem.Routine) *Routine { return &Routine{Id: uint32(r.ID), Option: r.Option} }

// FromProfile is p as a message.
func FromProfile(p oem.Profile) *ProfileResponse {
	m := &ProfileResponse{
		SecurityLevel: uint32(p.SecurityLevel), KeyLength: uint32(p.KeyLength),
		HardwareIdDid: uint32(p.HardwareIDDID), VersionDid: uint32(p.VersionDID),
		Erase: routine(p.Erase), Verify: uint32(p.Verify), Activate: routine(p.Activate),
		Confirm: routine(p.Confirm), Revert: routine(p.Revert),
		FingerprintDid: uint32(p.Fingerprint.DID), Fingerprint: p.Fingerprint.Data,
		SlotA: p.SlotAddresses[0], SlotB: p.SlotAddresses[1],
		FullFormat: uint32(p.FullFormat), DeltaFormat: uint32(p.DeltaFormat), DeltaOk: p.DeltaOK,
		FunctionalPreProgramming: p.FunctionalPreProgramming,
	}
	for _, d := range p.SlotDIDs {
		m.SlotDids = append(m.SlotDids, uint32(d))
	}
	for _, d := range p.CheckDIDs {
		m.CheckDids = append(m.CheckDids, uint32(d))
	}
	for _, r := range p.Preconditions {
		m.Preconditions = append(m.Preconditions, routine(r))
	}
	return m
}

// ToProfile is the profile m describes; it refuses values that do not fit
// their fields (a DID above 0xFFFF, a format above 0xFF). The result still
// needs Profile.Validate.
func (m *ProfileResponse) ToProfile() (oem.Profile, error) {
	var err error
	u16 := func(what string, v uint32) uint16 {
		if v > math.MaxUint16 && err == nil {
			err = fmt.Errorf("%s %#x does not fit 16 bits", what, v)
		}
		return uint16(v)
	}
	u8 := func(what string, v uint32) byte {
		if v > math.MaxUint8 && err == nil {
			err = fmt.Errorf("%s %#x does not fit 8 bits", what, v)
		}
		return byte(v)
	}
	rt := func(what string, r *Routine) oem.Routine {
		return oem.Routine{ID: u16(what+" routine", r.GetId()), Option: r.GetOption()}
	}
	p := oem.Profile{
		SecurityLevel: u8("security level", m.GetSecurityLevel()),
		KeyLength:     int(min(m.GetKeyLength(), math.MaxInt32)),
		HardwareIDDID: u16("hardware id DID", m.GetHardwareIdDid()),
		VersionDID:    u16("version DID", m.GetVersionDid()),
		Erase:         rt("erase", m.GetErase()),
		Verify:        u16("verify routine", m.GetVerify()),
		Activate:      rt("activate", m.GetActivate()),
		Confirm:       rt("confirm", m.GetConfirm()),
		Revert:        rt("revert", m.GetRevert()),
		Fingerprint:   oem.DIDWrite{DID: u16("fingerprint DID", m.GetFingerprintDid()), Data: m.GetFingerprint()},
		SlotAddresses: [2]uint64{m.GetSlotA(), m.GetSlotB()},
		FullFormat:    u8("full image format", m.GetFullFormat()),
		DeltaFormat:   u8("delta format", m.GetDeltaFormat()),
		DeltaOK:       m.GetDeltaOk(),

		FunctionalPreProgramming: m.GetFunctionalPreProgramming(),
	}
	for _, d := range m.GetSlotDids() {
		p.SlotDIDs = append(p.SlotDIDs, u16("slot DID", d))
	}
	for _, d := range m.GetCheckDids() {
		p.CheckDIDs = append(p.CheckDIDs, u16("check DID", d))
	}
	for _, r := range m.GetPreconditions() {
		p.Preconditions = append(p.Preconditions, rt("precondition", r))
	}
	return p, err
}

func fromSlot(s oem.Slot) *Slot {
	m := &Slot{State: s.State, Confirmed: s.Confirmed, ReleaseCounter: s.ReleaseCounter, Version: s.Version}
	if s.Digest != (oem.Digest{}) {
		m.Digest = s.Digest[:]
	}
	return m
}

// FromSlots is s as a message.
func FromSlots(s oem.Slots) *DecodeSlotsResponse {
	return &DecodeSlotsResponse{Active: int32(s.Active), Trial: s.Trial, A: fromSlot(s.Slot[0]), B: fromSlot(s.Slot[1])}
}

// ToSlots is the slot state m describes; it refuses a digest that is not
// 32 bytes. The result still needs Slots.Validate.
func (m *DecodeSlotsResponse) ToSlots() (oem.Slots, error) {
	s := oem.Slots{Active: int(m.GetActive()), Trial: m.GetTrial()}
	for i, sl := range []*Slot{m.GetA(), m.GetB()} {
		s.Slot[i] = oem.Slot{State: sl.GetState(), Confirmed: sl.GetConfirmed(), ReleaseCounter: sl.GetReleaseCounter(), Version: sl.GetVersion()}
		switch d := sl.GetDigest(); len(d) {
		case 0:
		case sha256.Size:
			s.Slot[i].Digest = oem.Digest(d)
		default:
			return s, fmt.Errorf("slot %c digest of %d bytes; want 32 or none", 'A'+i, len(d))
		}
	}
	return s, nil
}

// FromIdentity is id as a message.
func FromIdentity(id oem.Identity) *Identity {
	return &Identity{HardwareId: id.HardwareID, Version: id.Version, Slots: FromSlots(id.Slots)}
}

// ToIdentity is the identity m describes.
func (m *Identity) ToIdentity() (oem.Identity, error) {
	s, err := m.GetSlots().ToSlots()
	return oem.Identity{HardwareID: m.GetHardwareId(), Version: m.GetVersion(), Slots: s}, err
}

// Digest reads a 32-byte digest.
func Digest(b []byte) ([sha256.Size]byte, error) {
	if len(b) != sha256.Size {
		return [sha256.Size]byte{}, fmt.Errorf("a digest of %d bytes; want 32", len(b))
	}
	return [sha256.Size]byte(b), nil
}
