package pluginpb

import (
	"crypto/sha256"
	"reflect"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"google.golang.org/protobuf/proto"
)

// TestProfileRoundTrip: a profile survives the wire unchanged.
func TestProfileRoundTrip(t *testing.T) {
	g, err := oem.NewGeneric(vehicle.ECU{Flash: vehicle.Flash{SlotA: 0x1000, SlotB: 0x2000}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := g.Profile(t.Context())
	p.Preconditions = []oem.Routine{{ID: 0x0203, Option: []byte{1}}}
	p.CheckDIDs = []uint16{0xF40D}
	p.Fingerprint = oem.DIDWrite{DID: 0xF15A, Data: []byte("fp")}
	got, err := FromProfile(p).ToProfile()
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Errorf("round trip: %+v, %v\nwant %+v", got, err, p)
	}
}

// TestToProfileRefusesWideValues: numbers wider than their fields are
// refused, not truncated into another DID or routine.
func TestToProfileRefusesWideValues(t *testing.T) {
	for _, m := range []*ProfileResponse{
		{SecurityLevel: 0x111},
		{VersionDid: 0x1F195},
		{Erase: &Routine{Id: 0x1FF00}},
		{SlotDids: []uint32{0x10000}},
		{FullFormat: 0x100},
	} {
		if _, err := m.ToProfile(); err == nil {
			t.Errorf("%v accepted", m)
		}
	}
}

func TestSlotsRoundTrip(t *testing.T) {
	s := oem.Slots{Active: 1, Trial: true, Slot: [2]oem.Slot{
		{State: oem.SlotConfirmed, Confirmed: true, ReleaseCounter: 3, Digest: sha256.Sum256([]byte("a")), Version: "1.0"},
		{State: oem.SlotTrial, ReleaseCounter: 4, Digest: sha256.Sum256([]byte("b")), Version: "2.0"},
	}}
	got, err := FromSlots(s).ToSlots()
	if err != nil || got != s {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	if _, err := (&DecodeSlotsResponse{A: &Slot{Digest: []byte{1, 2}}}).ToSlots(); err == nil {
		t.Error("a 2-byte digest accepted")
	}
}

// TestECURoundTrip: a plugin sees the settings as the host read them from
// YAML (whole numbers as int), so the generic adapter reads them alike.
func TestECURoundTrip(t *testing.T) {
	e := vehicle.ECU{Name: "brake", HardwareID: "HW", OEM: vehicle.OEM{Adapter: "acme", Settings: map[string]any{
		"seedKeyConstant": 0x1234, "nested": map[string]any{"n": 7, "f": 1.5}, "list": []any{1, "x"},
	}}, Flash: vehicle.Flash{SlotA: 1, SlotB: 2, SlotSize: 3, SectorSize: 4}}
	e.Addressing.FunctionalID = 0x7DF
	m, err := FromECU(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.ToECU()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.OEM, e.OEM) || got.Flash != e.Flash || got.Name != e.Name || got.Addressing.FunctionalID == 0 {
		t.Errorf("round trip: %+v\nwant %+v", got, e)
	}
}

// FuzzAnswers: whatever bytes a plugin sends as its answers, decoding and
// checking them returns an error or a valid value, never a panic.
func FuzzAnswers(f *testing.F) {
	g, _ := oem.NewGeneric(vehicle.ECU{Flash: vehicle.Flash{SlotA: 0x1000, SlotB: 0x2000}})
	p, _ := g.Profile(f.Context())
	pb, _ := proto.Marshal(FromProfile(p))
	sb, _ := proto.Marshal(FromSlots(oem.Slots{Active: 0, Slot: [2]oem.Slot{{State: oem.SlotConfirmed}, {State: oem.SlotEmpty}}}))
	eb, _ := proto.Marshal(&ECU{SettingsJson: []byte(`{"a":[1,{"b":2.5}]}`)})
	f.Add(pb, sb, eb)
	f.Fuzz(func(t *testing.T, profile, slots, ecu []byte) {
		var pr ProfileResponse
		if proto.Unmarshal(profile, &pr) == nil {
			if p, err := pr.ToProfile(); err == nil && p.Validate() == nil {
				if p.SecurityLevel%2 == 0 || len(p.SlotDIDs) == 0 {
					t.Errorf("invalid profile validated: %+v", p)
				}
			}
		}
		var sr DecodeSlotsResponse
		if proto.Unmarshal(slots, &sr) == nil {
			if s, err := sr.ToSlots(); err == nil && s.Validate() == nil && (s.Active < -1 || s.Active > 1) {
				t.Errorf("invalid slots validated: %+v", s)
			}
		}
		var em ECU
		if proto.Unmarshal(ecu, &em) == nil {
			em.ToECU()
		}
	})
}
