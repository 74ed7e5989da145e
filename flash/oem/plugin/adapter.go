package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/internal/pluginpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// adapter is one ECU's adapter in a plugin process. It checks every
// answer, so that nonsense from the plugin stops the job with a
// *oem.PluginError rather than reaching the ECU.
type adapter struct {
	h   *Host
	p   *proc
	ecu *pluginpb.ECU

	mu   sync.Mutex
	prof *oem.Profile // the validated profile, once asked for
}

// errHung marks the error of a call that had not answered by its
// deadline.
var errHung = errors.New("no answer by the call's deadline")

// call runs f against the plugin with the host's call timeout. The
// timeout runs on even when ctx ends first: the caller gets ctx's error
// at once, and a plugin that then still does not answer is stopped all
// the same.
//
// The deadline is timed twice: by the host's context and, since gRPC
// sends it along, by the plugin's server, which resets the stream
// (RST_STREAM CANCEL) when it passes. On a loaded machine the plugin's
// reset can reach f before the host's own timer has run, so whether a
// call hung is decided from the clock when f returns, never from which
// of the two timers happened to fire first.
func (a *adapter) call(ctx context.Context, name string, f func(context.Context) error) error {
	if pe := a.p.failure(); pe != nil {
		return pe
	}
	timeout := orDefault(a.h.CallTimeout, DefaultCallTimeout)
	deadline := time.Now().Add(timeout)
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	done := make(chan error, 1)
	go func() {
		err := f(cctx)
		if err != nil && !time.Now().Before(deadline) {
			// Whatever the stream says happened to it, it happened
			// after the plugin had its time.
			err = fmt.Errorf("%w: %w", errHung, err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		cancel()
		return a.outcome(name, timeout, err)
	case <-ctx.Done():
		go func() {
			a.outcome(name, timeout, <-done)
			cancel()
		}()
		return fmt.Errorf("oem plugin %s: %s: %w", a.p.name, name, ctx.Err())
	}
}

// outcome classifies a call's error: nil, the adapter's own error, a hang
// or a crash; a hung or crashed process is stopped.
func (a *adapter) outcome(name string, timeout time.Duration, err error) error {
	if err == nil {
		return nil
	}
	pe := &oem.PluginError{Plugin: a.p.name, Path: a.p.path, Call: name}
	st, isStatus := status.FromError(err)
	switch {
	case errors.Is(err, errHung):
		pe.Failure, pe.Err = oem.PluginHung, fmt.Errorf("the call timeout of %v passed", timeout)
	case isStatus && (st.Code() == codes.Unknown || st.Code() == codes.InvalidArgument):
		// The adapter's own error, passed on by the SDK: the process is
		// fine.
		pe.Failure, pe.Err = oem.PluginRefused, errors.New(st.Message())
		return pe
	default:
		// The connection broke: most likely the process is ending. Give
		// it a moment to, for its exit status.
		t := time.NewTimer(exitGrace)
		select {
		case <-a.p.exited:
		case <-t.C:
		}
		t.Stop()
		a.p.mu.Lock()
		pe.Failure, pe.Err = oem.PluginCrashed, a.p.exitReason()
		a.p.mu.Unlock()
		if pe.Err == nil {
			pe.Err = fmt.Errorf("the connection failed: %s", st.Message())
		}
	}
	pe = a.p.fail(pe)
	go a.p.client.Kill()
	return pe
}

// invalid stops the job on a nonsense answer. The process stays: it
// answered, and a later job may not ask the same.
func (a *adapter) invalid(name string, err error) error {
	return &oem.PluginError{Plugin: a.p.name, Path: a.p.path, Call: name, Failure: oem.PluginInvalid, Err: err}
}

func (a *adapter) Profile(ctx context.Context) (oem.Profile, error) {
	var r *pluginpb.ProfileResponse
	err := a.call(ctx, "Profile", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.Profile(ctx, &pluginpb.ProfileRequest{Ecu: a.ecu})
		return err
	})
	if err != nil {
		return oem.Profile{}, err
	}
	p, err := r.ToProfile()
	if err == nil {
		err = p.Validate()
	}
	if err != nil {
		return oem.Profile{}, a.invalid("Profile", fmt.Errorf("%s: %w", a.ecu.GetPath(), err))
	}
	a.mu.Lock()
	a.prof = &p
	a.mu.Unlock()
	return p, nil
}

// profile returns the validated profile, asking for it the first time.
func (a *adapter) profile(ctx context.Context) (oem.Profile, error) {
	a.mu.Lock()
	p := a.prof
	a.mu.Unlock()
	if p != nil {
		return *p, nil
	}
	return a.Profile(ctx)
}

func (a *adapter) Key(ctx context.Context, level byte, seed []byte) ([]byte, error) {
	p, err := a.profile(ctx)
	if err != nil {
		return nil, err
	}
	var r *pluginpb.KeyResponse
	err = a.call(ctx, "Key", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.Key(ctx, &pluginpb.KeyRequest{Ecu: a.ecu, Level: uint32(level), Seed: seed})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := p.CheckKey(r.GetKey()); err != nil {
		return nil, a.invalid("Key", err)
	}
	return r.GetKey(), nil
}

func (a *adapter) DecodeSlots(ctx context.Context, values [][]byte) (oem.Slots, error) {
	var r *pluginpb.DecodeSlotsResponse
	err := a.call(ctx, "DecodeSlots", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.DecodeSlots(ctx, &pluginpb.DecodeSlotsRequest{Ecu: a.ecu, Values: values})
		return err
	})
	if err != nil {
		return oem.Slots{}, err
	}
	s, err := r.ToSlots()
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		return oem.Slots{}, a.invalid("DecodeSlots", err)
	}
	return s, nil
}

func (a *adapter) VerifyOption(ctx context.Context, d [sha256.Size]byte) ([]byte, error) {
	var r *pluginpb.VerifyOptionResponse
	err := a.call(ctx, "VerifyOption", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.VerifyOption(ctx, &pluginpb.VerifyOptionRequest{Ecu: a.ecu, Digest: d[:]})
		return err
	})
	if err != nil {
		return nil, err
	}
	return r.GetOption(), nil
}

func (a *adapter) CheckVerify(ctx context.Context, st []byte, d [sha256.Size]byte) error {
	var r *pluginpb.CheckVerifyResponse
	err := a.call(ctx, "CheckVerify", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.CheckVerify(ctx, &pluginpb.CheckVerifyRequest{Ecu: a.ecu, Status: st, Digest: d[:]})
		return err
	})
	switch {
	case err != nil:
		return err
	case r.GetOk():
		return nil
	case r.GetResult() > 0xFF:
		return a.invalid("CheckVerify", fmt.Errorf("verify result %#x does not fit a byte", r.GetResult()))
	}
	return &oem.VerifyError{Result: byte(r.GetResult()), Reason: r.GetReason(), Retry: r.GetRetry()}
}

func (a *adapter) PreFlashCheck(ctx context.Context, id oem.Identity, checks [][]byte) error {
	var r *pluginpb.PreFlashCheckResponse
	err := a.call(ctx, "PreFlashCheck", func(ctx context.Context) (err error) {
		r, err = a.p.rpc.PreFlashCheck(ctx, &pluginpb.PreFlashCheckRequest{Ecu: a.ecu, Identity: pluginpb.FromIdentity(id), Checks: checks})
		return err
	})
	if err != nil {
		return err
	}
	if r.GetRefusal() != "" {
		return &oem.ConditionError{Reason: r.GetRefusal()}
	}
	return nil
}
