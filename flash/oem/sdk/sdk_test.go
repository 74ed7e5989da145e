package sdk

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/internal/pluginpb"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refusing is the generic adapter with a pre-flash refusal and a verify
// that fails in three ways.
type refusing struct{ *oem.Generic }

func (r refusing) PreFlashCheck(_ context.Context, _ oem.Identity, checks [][]byte) error {
	if len(checks) == 0 {
		return errors.New("no checks")
	}
	return &oem.ConditionError{Reason: "parked badly"}
}

func (r refusing) CheckVerify(_ context.Context, st []byte, _ [sha256.Size]byte) error {
	if len(st) == 0 {
		return errors.New("no status")
	}
	return &oem.VerifyError{Result: 4, Reason: "other hardware"}
}

func testServer(t *testing.T) (pluginpb.AdapterServer, *int) {
	made := new(int)
	return newServer(func(e vehicle.ECU) (oem.Adapter, error) {
		if e.OEM.Adapter == "broken" {
			return nil, errors.New("cannot make it")
		}
		*made++
		g, err := oem.NewGeneric(e)
		return refusing{Generic: g}, err
	}), made
}

// TestServerCarriesTypedAnswers: refusals and verify rejections cross the
// wire as answers the host turns back into their types; other errors are
// the adapter's own, as status Unknown with their message.
func TestServerCarriesTypedAnswers(t *testing.T) {
	s, made := testServer(t)
	ctx := context.Background()
	ecu := &pluginpb.ECU{Name: "brake", SlotA: 1, SlotB: 2}
	d := make([]byte, 32)

	pf, err := s.PreFlashCheck(ctx, &pluginpb.PreFlashCheckRequest{Ecu: ecu, Identity: &pluginpb.Identity{}, Checks: [][]byte{{0}}})
	if err != nil || pf.GetRefusal() != "parked badly" {
		t.Errorf("refusal %v, %v", pf, err)
	}
	if _, err := s.PreFlashCheck(ctx, &pluginpb.PreFlashCheckRequest{Ecu: ecu, Identity: &pluginpb.Identity{}}); status.Code(err) != codes.Unknown {
		t.Errorf("a failing check: %v, want status Unknown", err)
	}
	cv, err := s.CheckVerify(ctx, &pluginpb.CheckVerifyRequest{Ecu: ecu, Status: []byte{4}, Digest: d})
	if err != nil || cv.GetOk() || cv.GetResult() != 4 || cv.GetRetry() {
		t.Errorf("verify rejection %v, %v", cv, err)
	}
	cv, err = s.CheckVerify(ctx, &pluginpb.CheckVerifyRequest{Ecu: ecu, Digest: d})
	if err != nil || cv.GetOk() || cv.GetResult() != 0xFF {
		t.Errorf("a verify error %v, %v; want a rejection without retry", cv, err)
	}
	if _, err := s.CheckVerify(ctx, &pluginpb.CheckVerifyRequest{Ecu: ecu, Digest: d[:5]}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a short digest: %v", err)
	}
	if _, err := s.Key(ctx, &pluginpb.KeyRequest{Ecu: ecu, Level: 1, Seed: []byte{1, 2, 3}}); status.Code(err) != codes.Unknown {
		t.Errorf("a bad seed: %v", err)
	}
	if *made != 1 {
		t.Errorf("%d adapters made for one ECU, want 1", *made)
	}
	if _, err := s.Profile(ctx, &pluginpb.ProfileRequest{Ecu: &pluginpb.ECU{Adapter: "broken"}}); status.Code(err) != codes.Unknown || status.Convert(err).Message() != "cannot make it" {
		t.Errorf("a failing NewFunc: %v", err)
	}
}
