package flash

import (
	"context"
	"fmt"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// Session is a UDS connection to one ECU outside a flash job, for health
// reads and diagnostics. It shares the ECU's addresses with flash jobs, so
// a caller must never hold one while a job runs on the same ECU: both
// would take each other's responses.
type Session struct {
	// Client speaks UDS to the ECU; its messages do not go to the
	// engine's Transcript.
	Client *uds.Client
	ad     oem.Adapter
	prof   oem.Profile
	hangUp func()
}

// Open connects a Session to ecu over its bus.
func (e *Engine) Open(ctx context.Context, ecu vehicle.ECU) (*Session, error) {
	bus, ok := e.Buses[ecu.Bus]
	if !ok {
		return nil, fmt.Errorf("flash: %s: bus %q is not open; give the engine every bus of the vehicle", ecu.Name, ecu.Bus)
	}
	newAdapter := e.NewAdapter
	if newAdapter == nil {
		newAdapter = oem.New
	}
	ad, err := newAdapter(ecu)
	if err != nil {
		return nil, err
	}
	prof, err := ad.Profile(ctx)
	if err != nil {
		return nil, fmt.Errorf("flash: %s: OEM profile: %w", ecu.Name, err)
	}
	c, hangUp, err := e.dialTracing(bus, ecu, false, nil)
	if err != nil {
		return nil, fmt.Errorf("flash: %s: %w", ecu.Name, err)
	}
	return &Session{Client: c, ad: ad, prof: prof, hangUp: hangUp}, nil
}

// Identity reads the ECU's hardware id, running version and slot state,
// as a flash job's plan does.
func (s *Session) Identity(ctx context.Context) (oem.Identity, error) {
	return readIdentity(ctx, s.Client, s.ad, s.prof)
}

// Close hangs up.
func (s *Session) Close() { s.hangUp() }
