package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
)

// withFaults makes the adapter misbehave as the setting `testFault` says,
// for the host's tests (flash/oem/plugin): "crash:<Call>" exits with
// status 2 in that call, "crash:<Call>:<n>" in its n-th call (counted
// per process), "hang:<Call>" never answers it, "wrong-key"
// answers keys the ECU refuses, "short-key" keys of the wrong length,
// "bad-slots" a slot state that does not exist. Without it the adapter is
// as it is.
func withFaults(a *adapter, settings map[string]any) (oem.Adapter, error) {
	v, ok := settings["testFault"]
	if !ok {
		return a, nil
	}
	f, _ := v.(string)
	kind, call, _ := strings.Cut(f, ":")
	call, nth, counted := strings.Cut(call, ":")
	n := 1
	if counted {
		var err error
		if n, err = strconv.Atoi(nth); err != nil || n < 1 {
			return nil, fmt.Errorf("oem.settings.testFault %q: the call count must be 1 or more", v)
		}
	}
	switch {
	case (kind == "crash" || kind == "hang") && call != "":
	case f == "wrong-key" || f == "short-key" || f == "bad-slots":
	default:
		return nil, fmt.Errorf("oem.settings.testFault %q: want crash:<Call>, hang:<Call>, wrong-key, short-key or bad-slots", v)
	}
	return &faulty{adapter: a, kind: kind, call: call, nth: n}, nil
}

type faulty struct {
	*adapter
	kind, call string
	nth        int

	mu    sync.Mutex
	calls int
}

func (f *faulty) at(call string) {
	if call != f.call {
		return
	}
	f.mu.Lock()
	f.calls++
	now := f.calls == f.nth
	f.mu.Unlock()
	if !now {
		return
	}
	switch f.kind {
	case "crash":
		fmt.Fprintf(os.Stderr, "testFault: crashing in %s\n", call)
		os.Exit(2)
	case "hang":
		select {}
	}
}

func (f *faulty) Profile(ctx context.Context) (oem.Profile, error) {
	f.at("Profile")
	return f.adapter.Profile(ctx)
}

func (f *faulty) Key(ctx context.Context, level byte, seed []byte) ([]byte, error) {
	f.at("Key")
	k, err := f.adapter.Key(ctx, level, seed)
	switch {
	case err != nil:
		return nil, err
	case f.kind == "wrong-key":
		k[0] ^= 0xFF
	case f.kind == "short-key":
		k = k[:4]
	}
	return k, nil
}

func (f *faulty) DecodeSlots(ctx context.Context, v [][]byte) (oem.Slots, error) {
	f.at("DecodeSlots")
	s, err := f.adapter.DecodeSlots(ctx, v)
	if f.kind == "bad-slots" {
		s.Slot[1].State = "haunted"
	}
	return s, err
}

func (f *faulty) VerifyOption(ctx context.Context, d [sha256.Size]byte) ([]byte, error) {
	f.at("VerifyOption")
	return f.adapter.VerifyOption(ctx, d)
}

func (f *faulty) CheckVerify(ctx context.Context, st []byte, d [sha256.Size]byte) error {
	f.at("CheckVerify")
	return f.adapter.CheckVerify(ctx, st, d)
}

func (f *faulty) PreFlashCheck(ctx context.Context, id oem.Identity, checks [][]byte) error {
	f.at("PreFlashCheck")
	return f.adapter.PreFlashCheck(ctx, id, checks)
}
