package oem

import (
	"errors"
	"fmt"
	"slices"
)

// Validate checks that a profile describes a sequence the engine can run:
// an odd security level, nonzero and distinct routine identifiers, the
// identity and slot DIDs, two different slot addresses. An adapter in
// another process is checked with it before its profile is used.
func (p Profile) Validate() error {
	switch {
	case p.SecurityLevel%2 == 0 || p.SecurityLevel > 0x7D:
		return fmt.Errorf("security level 0x%02X: want an odd requestSeed value 0x01-0x7D", p.SecurityLevel)
	case p.KeyLength < 0 || p.KeyLength > maxKeyLength:
		return fmt.Errorf("key length %d: want 0 (any) to %d bytes", p.KeyLength, maxKeyLength)
	case p.HardwareIDDID == 0 || p.VersionDID == 0:
		return fmt.Errorf("hardware id DID 0x%04X, version DID 0x%04X: both must be set", p.HardwareIDDID, p.VersionDID)
	case len(p.SlotDIDs) == 0:
		return errors.New("no slot DIDs: the engine cannot read the slot state")
	case p.SlotAddresses[0] == p.SlotAddresses[1]:
		return fmt.Errorf("slots A and B both at %#x", p.SlotAddresses[0])
	}
	ids := map[uint16]string{}
	for _, r := range []struct {
		name string
		id   uint16
	}{{"erase", p.Erase.ID}, {"verify", p.Verify}, {"activate", p.Activate.ID}, {"confirm", p.Confirm.ID}, {"revert", p.Revert.ID}} {
		if r.id == 0 {
			return fmt.Errorf("%s routine 0x0000: every routine needs an identifier", r.name)
		}
		if other, dup := ids[r.id]; dup {
			return fmt.Errorf("%s routine 0x%04X is also the %s routine", r.name, r.id, other)
		}
		ids[r.id] = r.name
	}
	for i, r := range p.Preconditions {
		if r.ID == 0 {
			return fmt.Errorf("precondition routine %d: identifier 0x0000", i)
		}
		if other, dup := ids[r.ID]; dup {
			return fmt.Errorf("precondition routine %d (0x%04X) is also the %s routine", i, r.ID, other)
		}
	}
	return nil
}

// maxKeyLength bounds keys: a SecurityAccess sendKey carries at most what
// one ISO-TP message on classic CAN does, less its two header bytes.
const maxKeyLength = 4093

// CheckKey checks a key an adapter computed against the profile's length.
func (p Profile) CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return errors.New("an empty key")
	case len(key) > maxKeyLength:
		return fmt.Errorf("a key of %d bytes; a sendKey carries at most %d", len(key), maxKeyLength)
	case p.KeyLength != 0 && len(key) != p.KeyLength:
		return fmt.Errorf("a key of %d bytes; the profile says %d", len(key), p.KeyLength)
	}
	return nil
}

// Validate checks a decoded slot state: a running slot of 0, 1 or -1,
// known slot states, and a running slot that holds an image.
func (s Slots) Validate() error {
	if s.Active < -1 || s.Active > 1 {
		return fmt.Errorf("running slot %d; want 0, 1 or -1 (none)", s.Active)
	}
	for i, sl := range s.Slot {
		if !slices.Contains(slotStates, sl.State) {
			return fmt.Errorf("slot %c state %q; want one of %v", 'A'+i, sl.State, slotStates)
		}
	}
	if r, ok := s.Running(); ok && (r.State == SlotEmpty || r.State == SlotInvalid) {
		return fmt.Errorf("slot %c runs but is %s", 'A'+s.Active, r.State)
	}
	return nil
}

// PluginFailure is how an adapter plugin failed.
type PluginFailure int

// The failures of a plugin.
const (
	PluginNotStarted PluginFailure = iota // it could not be started (checksum, handshake, exec)
	PluginCrashed                         // its process ended or its connection broke
	PluginHung                            // a call did not answer in time; the host stopped it
	PluginInvalid                         // it answered nonsense
	PluginRefused                         // it answered with an error of its own
)

// PluginError is an adapter plugin that failed, not the ECU: retrying the
// job with the same plugin process does not help. Its message names the
// plugin, what happened and what to do; the host starts a new process for
// the next job after a crash or a hang.
type PluginError struct {
	Plugin  string // the adapter's name in the vehicle file
	Path    string // the plugin binary
	Call    string // the Adapter method, "start", or "" between calls
	Failure PluginFailure
	Err     error
}

func (e *PluginError) Error() string {
	head := fmt.Sprintf("oem plugin %s (%s): ", e.Plugin, e.Path)
	switch e.Failure {
	case PluginNotStarted:
		return head + "not started: " + e.Err.Error()
	case PluginCrashed:
		during := "between calls"
		if e.Call != "" {
			during = "during " + e.Call
		}
		return head + fmt.Sprintf("crashed %s: %v; it will be restarted for the next job", during, e.Err)
	case PluginHung:
		return head + fmt.Sprintf("%s did not answer: %v; the plugin was stopped and will be restarted for the next job", e.Call, e.Err)
	case PluginInvalid:
		return head + fmt.Sprintf("%s answered nonsense: %v; the plugin is broken: fix it or pin the last good build in the vehicle file", e.Call, e.Err)
	}
	return head + fmt.Sprintf("%s: %v", e.Call, e.Err)
}

func (e *PluginError) Unwrap() error { return e.Err }
