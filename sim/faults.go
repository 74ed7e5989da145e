package sim

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Fault kinds.
const (
	// FaultPowerLoss cuts the power: at AtByte bytes into a download (the
	// slot keeps exactly the bytes programmed before), or at a Phase. RAM
	// state is lost and the ECU boots again.
	FaultPowerLoss = "powerLoss"
	// FaultNRC answers the Step-th request of Service (its first byte)
	// with the negative response Code instead of handling it.
	FaultNRC = "nrc"
	// FaultPendingStorm holds the Step-th request of Service for Duration,
	// sending responsePending (0x78) all along, before handling it.
	FaultPendingStorm = "pendingStorm"
	// FaultDropFrames loses Count frames, to or from the ECU, after
	// AfterFrames frames went through.
	FaultDropFrames = "dropFrames"
	// FaultCorruptFrames inverts the last data byte of Count frames after
	// AfterFrames frames: a fault the CAN CRC missed, which only the
	// image's SHA-256 catches.
	FaultCorruptFrames = "corruptFrames"
	// FaultBusSilent drops every frame to and from the ECU for Duration,
	// starting after AfterFrames frames.
	FaultBusSilent = "busSilent"
	// FaultSecurityLockout refuses the next keys as invalid until the
	// security lockout (exceededNumberOfAttempts, then
	// requiredTimeDelayNotExpired) has started.
	FaultSecurityLockout = "securityLockout"
	// FaultBootFailure makes the image of Version crash at every test
	// boot, so that the bootloader reverts after confirmWithin boots.
	FaultBootFailure = "bootFailure"
	// FaultNeverConfirm makes the image of Version never confirm: it does
	// not confirm itself and refuses routine 0xFF03.
	FaultNeverConfirm = "neverConfirm"
)

// Power-loss phases: the power fails as the operation starts, before it
// changes anything.
const (
	PhaseErase        = "erase"        // before erasing Sector of the inactive slot (0: the first erased, the trailer's)
	PhaseTransferExit = "transferExit" // at RequestTransferExit
	PhaseVerify       = "verify"       // at routine 0xFF01
	PhaseActivate     = "activate"     // before writing the activation trailer
	PhaseConfirm      = "confirm"      // before writing the confirmation
	PhaseBoot         = "boot"         // during a boot, after the bootloader counted the attempt
)

// Fault is one fault plan. Each fires once, when its trigger comes; the
// Count of a frame fault is how many frames it takes.
type Fault struct {
	Kind        string        `yaml:"kind"`
	AtByte      *int64        `yaml:"atByte"`
	Phase       string        `yaml:"phase"`
	Sector      int           `yaml:"sector"`
	Service     uint8         `yaml:"service"`
	Step        int           `yaml:"step"`
	Code        uint8         `yaml:"code"`
	Duration    time.Duration `yaml:"duration"`
	AfterFrames int           `yaml:"afterFrames"`
	Count       int           `yaml:"count"`
	Version     string        `yaml:"version"`
}

func (f *Fault) check(p string) error {
	bad := func(field, reason string) error { return &vehicle.FieldError{Path: p + "." + field, Reason: reason} }
	switch f.Kind {
	case FaultPowerLoss:
		if (f.AtByte == nil) == (f.Phase == "") {
			return bad("atByte", "a power loss needs either atByte or phase")
		}
		if f.AtByte != nil && *f.AtByte < 0 {
			return bad("atByte", "must not be negative")
		}
		if f.Phase != "" && !slices.Contains([]string{PhaseErase, PhaseTransferExit, PhaseVerify, PhaseActivate, PhaseConfirm, PhaseBoot}, f.Phase) {
			return bad("phase", fmt.Sprintf("%q: want erase, transferExit, verify, activate, confirm or boot", f.Phase))
		}
	case FaultNRC, FaultPendingStorm:
		if f.Service == 0 {
			return bad("service", "must name the service (its SID, 0x36 say)")
		}
		if f.Step < 1 {
			return bad("step", "must be 1 or more: the how-manieth request of the service")
		}
		if f.Kind == FaultNRC && (f.Code == 0 || f.Code == byte(uds.ResponsePending)) {
			return bad("code", "must be a negative response code other than 0x78")
		}
		if f.Kind == FaultPendingStorm && f.Duration <= 0 {
			return bad("duration", "must be > 0")
		}
	case FaultDropFrames, FaultCorruptFrames, FaultBusSilent:
		if f.AfterFrames < 0 {
			return bad("afterFrames", "must not be negative")
		}
		if f.Count < 0 {
			return bad("count", "must not be negative")
		}
		if f.Count == 0 {
			f.Count = 1
		}
		if f.Kind == FaultBusSilent && f.Duration <= 0 {
			return bad("duration", "must be > 0")
		}
	case FaultSecurityLockout:
	case FaultBootFailure, FaultNeverConfirm:
		if f.Version == "" {
			return bad("version", "must name the image version that fails")
		}
	default:
		return bad("kind", fmt.Sprintf("%q: want powerLoss, nrc, pendingStorm, dropFrames, corruptFrames, busSilent, securityLockout, bootFailure or neverConfirm", f.Kind))
	}
	return nil
}

// faultPlan holds an ECU's faults and what has fired.
type faultPlan struct {
	mu       sync.Mutex
	faults   []Fault
	fired    []bool
	requests map[byte]int // requests per service so far
	frames   int          // frames through the ECU's attachment so far
	silentTo time.Time    // the bus is silent until then
}

func newFaultPlan(faults []Fault) *faultPlan {
	return &faultPlan{faults: faults, fired: make([]bool, len(faults)), requests: map[byte]int{}}
}

// add adds a fault at run time.
func (p *faultPlan) add(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
	p.fired = append(p.fired, false)
}

// take fires the first unfired fault for which match is true.
func (p *faultPlan) take(match func(f *Fault) bool) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.faults {
		if !p.fired[i] && match(&p.faults[i]) {
			p.fired[i] = true
			return p.faults[i], true
		}
	}
	return Fault{}, false
}

// has reports whether any fault matches, fired or not, without firing
// one: bootFailure and neverConfirm last for the ECU's life.
func (p *faultPlan) has(match func(f *Fault) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.faults {
		if match(&p.faults[i]) {
			return true
		}
	}
	return false
}

// powerLossAt returns how many of n bytes, starting at offset written of
// a download, are programmed before the power fails, and whether it does.
func (p *faultPlan) powerLossAt(written int64, n int) (int, bool) {
	var cut int64
	_, ok := p.take(func(f *Fault) bool {
		if f.Kind != FaultPowerLoss || f.AtByte == nil || *f.AtByte >= written+int64(n) {
			return false
		}
		cut = max(*f.AtByte-written, 0)
		return true
	})
	return int(cut), ok
}

// powerLossIn reports whether the power fails at phase (and sector).
func (p *faultPlan) powerLossIn(phase string, sector int) bool {
	_, ok := p.take(func(f *Fault) bool {
		return f.Kind == FaultPowerLoss && f.Phase == phase && (phase != PhaseErase || f.Sector == sector)
	})
	return ok
}

// request counts a physical request and returns the NRC or storm fault
// it triggers.
func (p *faultPlan) request(sid byte) (Fault, bool) {
	p.mu.Lock()
	p.requests[sid]++
	n := p.requests[sid]
	p.mu.Unlock()
	return p.take(func(f *Fault) bool {
		return (f.Kind == FaultNRC || f.Kind == FaultPendingStorm) && f.Service == sid && f.Step == n
	})
}

// versionFault reports whether the image of version has a fault of kind.
func (p *faultPlan) versionFault(kind, version string) bool {
	return p.has(func(f *Fault) bool { return f.Kind == kind && f.Version == version })
}

// frame decides the fate of one frame through the ECU's attachment.
func (p *faultPlan) frame(f *canbus.Frame) (drop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frames++
	now := time.Now()
	if now.Before(p.silentTo) {
		return true
	}
	for i := range p.faults {
		ft := &p.faults[i]
		if p.fired[i] || p.frames <= ft.AfterFrames {
			continue
		}
		switch ft.Kind {
		case FaultBusSilent:
			p.fired[i] = true
			p.silentTo = now.Add(ft.Duration)
			return true
		case FaultDropFrames, FaultCorruptFrames:
			ft.Count--
			if ft.Count <= 0 {
				p.fired[i] = true
			}
			if ft.Kind == FaultDropFrames {
				return true
			}
			if f.Len > 0 {
				f.Data[f.Len-1] ^= 0xFF
			}
			return false
		}
	}
	return false
}

// faultBus is the ECU's attachment to its bus: frames pass the fault plan
// in both directions, and nothing passes while the ECU is off.
type faultBus struct {
	canbus.Bus
	plan *faultPlan

	mu   sync.Mutex
	off  bool
	subs []*canbus.Subscription // the inner subscriptions, closed by detach
}

func (b *faultBus) setOff(off bool) {
	b.mu.Lock()
	b.off = off
	b.mu.Unlock()
}

func (b *faultBus) isOff() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.off
}

// Send drops frames while the ECU is off and as the plan says.
func (b *faultBus) Send(ctx context.Context, f canbus.Frame) error {
	if b.isOff() || b.plan.frame(&f) {
		return nil
	}
	return b.Bus.Send(ctx, f)
}

// Subscribe forwards the inner subscription's frames through the plan.
func (b *faultBus) Subscribe(filters ...canbus.Filter) *canbus.Subscription {
	inner := b.Bus.Subscribe(filters...)
	hub := &canbus.Hub{}
	outer := hub.Subscribe()
	b.mu.Lock()
	b.subs = append(b.subs, inner)
	b.mu.Unlock()
	go func() {
		defer hub.Close()
		for f := range inner.Frames() {
			if b.isOff() || b.plan.frame(&f) {
				continue
			}
			hub.Deliver(f)
		}
	}()
	return outer
}

// Close detaches the ECU; the bus stays its owner's.
func (b *faultBus) Close() error {
	b.mu.Lock()
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	return nil
}

// gate is one power cycle's transport: it applies the request faults and
// sends nothing once the power is gone, so a handler that was cut off
// never answers.
type gate struct {
	uds.Transport
	ecu        *ECU
	dead       func() bool
	functional bool // functional requests get no request faults
	timing     uds.Timing

	mu    sync.Mutex
	storm time.Duration // responsePending to send before the next response
}

// Send sends msg unless the power is gone, first holding a response back
// with responsePending for a storm's duration.
func (g *gate) Send(ctx context.Context, msg []byte) error {
	if g.dead() {
		return nil
	}
	g.mu.Lock()
	d := g.storm
	if len(msg) == 3 && msg[0] == uds.NegativeResponseSID && msg[2] == byte(uds.ResponsePending) {
		d = 0 // the server's own responsePending
	} else {
		g.storm = 0
	}
	g.mu.Unlock()
	if d > 0 && len(msg) > 0 {
		sid := msg[0] - 0x40
		if msg[0] == uds.NegativeResponseSID && len(msg) > 1 {
			sid = msg[1]
		}
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			if err := g.Transport.Send(ctx, []byte{uds.NegativeResponseSID, sid, byte(uds.ResponsePending)}); err != nil {
				return err
			}
			if err := sleep(ctx, min(g.timing.P2Star/2, time.Until(end))); err != nil {
				return err
			}
			if g.dead() {
				return nil
			}
		}
	}
	return g.Transport.Send(ctx, msg)
}

// Recv passes requests on, answering those a fault claims.
func (g *gate) Recv(ctx context.Context) ([]byte, error) {
	for {
		msg, err := g.Transport.Recv(ctx)
		if err != nil || g.functional || len(msg) == 0 {
			return msg, err
		}
		f, ok := g.ecu.faults.request(msg[0])
		if !ok {
			return msg, nil
		}
		switch f.Kind {
		case FaultNRC:
			g.ecu.log.Info("fault: negative response", zapSID(msg[0]), zapNRC(f.Code))
			if err := g.Send(ctx, []byte{uds.NegativeResponseSID, msg[0], f.Code}); err != nil {
				return nil, err
			}
			continue
		case FaultPendingStorm:
			g.ecu.log.Info("fault: responsePending storm", zapSID(msg[0]), zapDuration(f.Duration))
			g.mu.Lock()
			g.storm = f.Duration
			g.mu.Unlock()
		}
		return msg, nil
	}
}
