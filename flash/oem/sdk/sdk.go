// Package sdk is for writing an OEM adapter plugin: a program that gives
// ecu-kubelet one car maker's security access, routines, DIDs and
// pre-flash checks without a rebuild of ecu-kubelet (docs/oem-adapters.md).
//
// A plugin is an oem.Adapter and a main that serves it:
//
//	func main() { sdk.Serve(newAdapter) }
//
//	func newAdapter(ecu vehicle.ECU) (oem.Adapter, error) {
//		g, err := oem.NewGeneric(ecu) // the defaults to keep
//		if err != nil {
//			return nil, err
//		}
//		return &adapter{Generic: g}, nil
//	}
//
// cmd/ecu-kubelet-oem-acme is a whole example. The plugin must never
// write to its standard output (the host reads the handshake there); log
// to standard error, which the host forwards to its log.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/internal/pluginpb"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// NewFunc makes the adapter of one ECU from its vehicle description: the
// name, hardware id, oem.adapter and oem.settings, and the flash
// geometry. Its ECU's Path is empty.
type NewFunc func(vehicle.ECU) (oem.Adapter, error)

// Serve serves the adapters newAdapter makes to the ecu-kubelet that
// started the plugin, until it stops the plugin. Run by hand, it says
// that it is a plugin and exits with status 1.
func Serve(newAdapter NewFunc) {
	go exitWhenOrphaned(os.Getppid())
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         goplugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{Impl: newServer(newAdapter)}},
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}

// exitWhenOrphaned ends the plugin once its parent, the host, is gone: a
// host killed before it could stop its plugins would leave them running
// with nobody to serve.
func exitWhenOrphaned(parent int) {
	for {
		time.Sleep(time.Second)
		if os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// newServer returns the gRPC service Serve serves.
func newServer(newAdapter NewFunc) pluginpb.AdapterServer {
	return &server{new: newAdapter, adapters: map[string]oem.Adapter{}}
}

// server answers each call with the adapter of the call's ECU, made once
// per distinct ECU description.
type server struct {
	pluginpb.UnimplementedAdapterServer
	new      NewFunc
	mu       sync.Mutex
	adapters map[string]oem.Adapter
}

func (s *server) adapter(m *pluginpb.ECU) (oem.Adapter, error) {
	key, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the ECU description: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.adapters[string(key)]; ok {
		return a, nil
	}
	e, err := m.ToECU()
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the ECU description: %v", err)
	}
	a, err := s.new(e)
	if err != nil {
		return nil, failed(err)
	}
	s.adapters[string(key)] = a
	return a, nil
}

// failed is an adapter's own error as a gRPC status; the host shows its
// message.
func failed(err error) error { return status.Error(codes.Unknown, err.Error()) }

func (s *server) Profile(ctx context.Context, r *pluginpb.ProfileRequest) (*pluginpb.ProfileResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	p, err := a.Profile(ctx)
	if err != nil {
		return nil, failed(err)
	}
	return pluginpb.FromProfile(p), nil
}

func (s *server) Key(ctx context.Context, r *pluginpb.KeyRequest) (*pluginpb.KeyResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	if r.GetLevel() > 0xFF {
		return nil, status.Errorf(codes.InvalidArgument, "security level %#x", r.GetLevel())
	}
	k, err := a.Key(ctx, byte(r.GetLevel()), r.GetSeed())
	if err != nil {
		return nil, failed(err)
	}
	return &pluginpb.KeyResponse{Key: k}, nil
}

func (s *server) DecodeSlots(ctx context.Context, r *pluginpb.DecodeSlotsRequest) (*pluginpb.DecodeSlotsResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	sl, err := a.DecodeSlots(ctx, r.GetValues())
	if err != nil {
		return nil, failed(err)
	}
	return pluginpb.FromSlots(sl), nil
}

func (s *server) VerifyOption(ctx context.Context, r *pluginpb.VerifyOptionRequest) (*pluginpb.VerifyOptionResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	d, err := pluginpb.Digest(r.GetDigest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	opt, err := a.VerifyOption(ctx, d)
	if err != nil {
		return nil, failed(err)
	}
	return &pluginpb.VerifyOptionResponse{Option: opt}, nil
}

func (s *server) CheckVerify(ctx context.Context, r *pluginpb.CheckVerifyRequest) (*pluginpb.CheckVerifyResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	d, err := pluginpb.Digest(r.GetDigest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	err = a.CheckVerify(ctx, r.GetStatus(), d)
	var ve *oem.VerifyError
	switch {
	case err == nil:
		return &pluginpb.CheckVerifyResponse{Ok: true}, nil
	case errors.As(err, &ve):
		return &pluginpb.CheckVerifyResponse{Result: uint32(ve.Result), Reason: ve.Reason, Retry: ve.Retry}, nil
	}
	// Any other error is a rejection too, one that writing again will
	// not cure.
	return &pluginpb.CheckVerifyResponse{Result: 0xFF, Reason: err.Error()}, nil
}

func (s *server) PreFlashCheck(ctx context.Context, r *pluginpb.PreFlashCheckRequest) (*pluginpb.PreFlashCheckResponse, error) {
	a, err := s.adapter(r.GetEcu())
	if err != nil {
		return nil, err
	}
	id, err := r.GetIdentity().ToIdentity()
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	err = a.PreFlashCheck(ctx, id, r.GetChecks())
	var ce *oem.ConditionError
	switch {
	case err == nil:
		return &pluginpb.PreFlashCheckResponse{}, nil
	case errors.As(err, &ce):
		if ce.Reason == "" {
			return &pluginpb.PreFlashCheckResponse{Refusal: "refused without a reason"}, nil
		}
		return &pluginpb.PreFlashCheckResponse{Refusal: ce.Reason}, nil
	}
	return nil, failed(fmt.Errorf("pre-flash check: %w", err))
}
