package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"go.uber.org/zap"
)

// Vehicle runs every ECU of a vehicle description on the vehicle's buses,
// and can serve those buses to other processes over socketcand.
//
// Each ECU gets an attachment of its own to its bus (canbus.Open of the
// bus's URL), as a real ECU has its own CAN controller: on a timed mem
// bus the ECUs' frames then contend by arbitration rather than queueing
// behind each other. The Vehicle holds one more attachment per bus, which
// it serves.
type Vehicle struct {
	desc *vehicle.Vehicle
	log  *zap.Logger

	buses    map[string]canbus.Bus // the Vehicle's own attachment, by bus name
	ecus     []*ECU
	ecuBuses []canbus.Bus // ecus[i]'s attachment

	mu      sync.Mutex
	servers []*canbus.SocketcandServer
	running bool
	stopped bool
}

// MaxServedBusName is the longest bus name Serve can serve: the limit of
// socketcand's protocol.
const MaxServedBusName = 16

// NewVehicle opens the buses of desc by their URLs and builds its ECUs
// (see NewECU); log receives every ECU's log lines, each with the ECU's
// name. On error nothing stays open.
func NewVehicle(desc *vehicle.Vehicle, log *zap.Logger) (*Vehicle, error) {
	if log == nil {
		log = zap.NewNop()
	}
	v := &Vehicle{desc: desc, log: log.With(zap.String("vehicle", desc.Name)), buses: make(map[string]canbus.Bus)}
	if err := v.build(); err != nil {
		v.closeBuses()
		return nil, err
	}
	return v, nil
}

// build opens the buses and builds the ECUs.
func (v *Vehicle) build() error {
	desc := v.desc
	for i, b := range desc.Buses {
		bus, err := canbus.Open(b.URL, b.Config())
		if err != nil {
			return fmt.Errorf("sim: vehicle %s: buses[%d] (%s): %w", desc.Name, i, b.Name, err)
		}
		v.buses[b.Name] = bus
	}
	for i, e := range desc.ECUs {
		b, ok := desc.Bus(e.Bus)
		if !ok {
			return &vehicle.FieldError{Path: fmt.Sprintf("ecus[%d].bus", i), Reason: fmt.Sprintf("%q is not one of the vehicle's buses", e.Bus)}
		}
		bus, err := canbus.Open(b.URL, b.Config())
		if err != nil {
			return fmt.Errorf("sim: vehicle %s: ECU %s on bus %s: %w", desc.Name, e.Name, b.Name, err)
		}
		v.ecuBuses = append(v.ecuBuses, bus)
		ecu, err := NewECU(e, bus, v.log)
		if err != nil {
			return err
		}
		v.ecus = append(v.ecus, ecu)
	}
	return nil
}

// Name returns the vehicle's name.
func (v *Vehicle) Name() string { return v.desc.Name }

// ECUs returns the vehicle's ECUs in the order of its description, for
// injecting faults.
func (v *Vehicle) ECUs() []*ECU { return v.ecus }

// ECU returns the named ECU, or nil.
func (v *Vehicle) ECU(name string) *ECU {
	for _, e := range v.ecus {
		if e.Name() == name {
			return e
		}
	}
	return nil
}

// ErrVehicleRun is returned by Run when the Vehicle runs already or has
// run: its buses are closed once Run returns.
var ErrVehicleRun = errors.New("sim: a Vehicle runs once; make a new one with NewVehicle")

// Run runs every ECU until ctx ends, then stops serving, waits for the
// ECUs to stop and closes the buses. It returns nil when ctx ends, or the
// ECUs' errors (an ECU that cannot attach to its bus).
func (v *Vehicle) Run(ctx context.Context) error {
	v.mu.Lock()
	if v.running || v.stopped {
		v.mu.Unlock()
		return ErrVehicleRun
	}
	v.running = true
	v.mu.Unlock()
	v.log.Info("vehicle starting", zap.Int("ecus", len(v.ecus)), zap.Int("buses", len(v.desc.Buses)))
	errs := make([]error, len(v.ecus))
	var wg sync.WaitGroup
	for i, e := range v.ecus {
		wg.Go(func() { errs[i] = e.Run(ctx) })
	}
	wg.Wait()
	v.mu.Lock()
	v.stopped = true
	servers := v.servers
	v.servers = nil
	v.mu.Unlock()
	for _, s := range servers {
		s.Close()
	}
	v.closeBuses()
	v.log.Info("vehicle stopped")
	return errors.Join(errs...)
}

func (v *Vehicle) closeBuses() {
	for _, b := range v.ecuBuses {
		b.Close()
	}
	for _, b := range v.buses {
		b.Close()
	}
}

// Serve serves the vehicle's buses over socketcand on ln, each under its
// bus name, until Run returns; then it returns canbus.ErrServerClosed.
// Bus names longer than MaxServedBusName cannot be served. Serve closes
// ln.
func (v *Vehicle) Serve(ln net.Listener) error {
	for _, b := range v.desc.Buses {
		if len(b.Name) > MaxServedBusName {
			ln.Close()
			return fmt.Errorf("sim: bus name %q is longer than socketcand's %d characters; shorten it in the vehicle description to serve it", b.Name, MaxServedBusName)
		}
	}
	srv, err := canbus.NewSocketcandServer(v.buses, v.log.Named("socketcand"))
	if err != nil {
		ln.Close()
		return err
	}
	v.mu.Lock()
	if v.stopped {
		v.mu.Unlock()
		ln.Close()
		return canbus.ErrServerClosed
	}
	v.servers = append(v.servers, srv)
	v.mu.Unlock()
	v.log.Info("serving buses over socketcand", zap.Stringer("addr", ln.Addr()), zap.Strings("buses", v.busNames()))
	return srv.Serve(ln)
}

func (v *Vehicle) busNames() []string {
	var names []string
	for _, b := range v.desc.Buses {
		names = append(names, b.Name)
	}
	return names
}

// VehicleStatus is a snapshot of a simulated vehicle.
type VehicleStatus struct {
	Name  string      `json:"name"`
	Buses []BusStatus `json:"buses"`
	ECUs  []ECUStatus `json:"ecus"`
}

// BusStatus is one bus of a VehicleStatus.
type BusStatus struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Bitrate     int    `json:"bitrate,omitempty"`
	DataBitrate int    `json:"dataBitrate,omitempty"`
	FD          bool   `json:"fd"`
	// Frames is the number of frames the bus has carried, for mem buses
	// (other transports do not count them).
	Frames *uint64 `json:"frames,omitempty"`
}

// Status returns a snapshot of every bus and ECU, in the order of the
// vehicle description. It reads every slot (see ECU.Status), so it costs
// a hash of each image.
func (v *Vehicle) Status() VehicleStatus {
	st := VehicleStatus{Name: v.desc.Name}
	for _, b := range v.desc.Buses {
		bs := BusStatus{Name: b.Name, URL: b.URL, Bitrate: b.Bitrate, DataBitrate: b.DataBitrate, FD: b.FD}
		if u, err := url.Parse(b.URL); err == nil && u.Scheme == "mem" {
			if ms, ok := canbus.MemBusStats(u.Host); ok {
				bs.Frames = &ms.Frames
			}
		}
		st.Buses = append(st.Buses, bs)
	}
	for _, e := range v.ecus {
		st.ECUs = append(st.ECUs, e.Status())
	}
	return st
}
