package oem

import (
	"strings"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

func genericProfile(t *testing.T) Profile {
	t.Helper()
	g, err := NewGeneric(vehicle.ECU{Flash: vehicle.Flash{SlotA: 0x1000, SlotB: 0x2000}})
	if err != nil {
		t.Fatal(err)
	}
	return g.profile
}

// TestProfileValidate: a profile from another process is refused when
// the engine could not run it or would send nonsense routines.
func TestProfileValidate(t *testing.T) {
	if err := genericProfile(t).Validate(); err != nil {
		t.Fatalf("the generic profile: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Profile)
		want   string
	}{
		{"even level", func(p *Profile) { p.SecurityLevel = 2 }, "security level 0x02"},
		{"level too high", func(p *Profile) { p.SecurityLevel = 0x7F }, "security level 0x7F"},
		{"negative key length", func(p *Profile) { p.KeyLength = -1 }, "key length -1"},
		{"no version DID", func(p *Profile) { p.VersionDID = 0 }, "version DID 0x0000"},
		{"no slot DIDs", func(p *Profile) { p.SlotDIDs = nil }, "no slot DIDs"},
		{"one slot address", func(p *Profile) { p.SlotAddresses[1] = p.SlotAddresses[0] }, "both at 0x1000"},
		{"no erase routine", func(p *Profile) { p.Erase.ID = 0 }, "erase routine 0x0000"},
		{"confirm is activate", func(p *Profile) { p.Confirm.ID = p.Activate.ID }, "confirm routine 0xFF02 is also the activate routine"},
		{"precondition is erase", func(p *Profile) { p.Preconditions = []Routine{{ID: p.Erase.ID}} }, "is also the erase routine"},
		{"zero precondition", func(p *Profile) { p.Preconditions = []Routine{{ID: 0}} }, "precondition routine 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := genericProfile(t)
			tt.change(&p)
			if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestProfileCheckKey(t *testing.T) {
	p := Profile{KeyLength: 4}
	for _, tc := range []struct {
		key []byte
		ok  bool
	}{
		{[]byte{1, 2, 3, 4}, true},
		{nil, false},
		{[]byte{1, 2, 3}, false},
		{make([]byte, maxKeyLength+1), false},
	} {
		if err := p.CheckKey(tc.key); (err == nil) != tc.ok {
			t.Errorf("key of %d bytes: %v", len(tc.key), err)
		}
	}
	if err := (Profile{}).CheckKey(make([]byte, 100)); err != nil {
		t.Errorf("any length: %v", err)
	}
}

func TestSlotsValidate(t *testing.T) {
	ok := Slots{Active: 0, Slot: [2]Slot{{State: SlotConfirmed}, {State: SlotEmpty}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Slots{
		{Active: 2, Slot: ok.Slot},
		{Active: -2, Slot: ok.Slot},
		{Active: 0, Slot: [2]Slot{{State: "haunted"}, {State: SlotEmpty}}},
		{Active: 1, Slot: ok.Slot}, // runs from an empty slot
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

func TestPluginErrorSaysWhatToDo(t *testing.T) {
	for _, tc := range []struct {
		f    PluginFailure
		want string
	}{
		{PluginCrashed, "crashed during Key: boom; it will be restarted for the next job"},
		{PluginHung, "Key did not answer: boom; the plugin was stopped and will be restarted"},
		{PluginInvalid, "Key answered nonsense: boom; the plugin is broken"},
		{PluginNotStarted, "not started: boom"},
		{PluginRefused, "Key: boom"},
	} {
		err := &PluginError{Plugin: "acme", Path: "/p", Call: "Key", Failure: tc.f, Err: errString("boom")}
		if got := err.Error(); !strings.HasPrefix(got, "oem plugin acme (/p): ") || !strings.Contains(got, tc.want) {
			t.Errorf("%q, want it to say %q", got, tc.want)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
