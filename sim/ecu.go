package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
	"go.uber.org/zap"
)

// ECU states, as Status reports them.
const (
	StateOff        = "off"        // not running, or without power
	StateBooting    = "booting"    // in the bootloader, silent
	StateRunning    = "running"    // the application runs and answers UDS
	StateBootloader = "bootloader" // no bootable image: answers UDS from the bootloader
)

// ECUStatus is a snapshot of a simulated ECU.
type ECUStatus struct {
	Name       string       `json:"name"`
	State      string       `json:"state"`
	ActiveSlot string       `json:"activeSlot"` // "A", "B" or "" when none runs
	Trial      bool         `json:"trial"`      // the running image awaits confirmation
	Session    string       `json:"session,omitempty"`
	Slots      []SlotStatus `json:"slots"`
	BootCount  int          `json:"bootCount"`
}

// SlotStatus is one slot of an ECUStatus.
type SlotStatus struct {
	Name           string `json:"name"` // "A" or "B"
	State          string `json:"state"`
	Version        string `json:"version,omitempty"`
	ReleaseCounter uint32 `json:"releaseCounter,omitempty"`
	Digest         string `json:"digest,omitempty"` // sha256:<hex> of the whole image
	Confirmed      bool   `json:"confirmed"`
	BootAttempts   int    `json:"bootAttempts,omitempty"`
}

// ECU is a simulated ECU.
type ECU struct {
	cfg    ECUConfig
	log    *zap.Logger
	bus    *faultBus
	flash  *flashMem
	boot   bootloader
	faults *faultPlan
	key    uds.KeyFunc
	level  byte

	mu     sync.Mutex
	state  string
	active int // the running slot, -1 for none
	trial  bool
	boots  int
	cycle  *cycle
}

// cycle is one power cycle: what the ECU holds in RAM.
type cycle struct {
	ctx      context.Context
	cancel   context.CancelFunc
	server   *uds.Server
	prog     *programmer
	lost     bool // the power failed during this cycle
	verified [2]bool
}

// NewECU returns the ECU cfg describes on bus, decoding cfg's simulation
// section strictly. The bus stays the caller's.
func NewECU(cfg vehicle.ECU, bus canbus.Bus, log *zap.Logger) (*ECU, error) {
	c, err := DecodeConfig(cfg)
	if err != nil {
		return nil, err
	}
	return newECU(c, bus, log)
}

func newECU(c ECUConfig, bus canbus.Bus, log *zap.Logger) (*ECU, error) {
	if log == nil {
		log = zap.NewNop()
	}
	key, level, err := c.security()
	if err != nil {
		return nil, err
	}
	e := &ECU{
		cfg:    c,
		log:    log.With(zap.String("ecu", c.ECU.Name)),
		flash:  newFlash(c.ECU.Flash),
		faults: newFaultPlan(append([]Fault(nil), c.Faults...)),
		key:    key,
		level:  level,
		state:  StateOff,
		active: -1,
	}
	e.boot = bootloader{f: e.flash, confirmWithin: c.ConfirmWithin}
	e.bus = &faultBus{Bus: bus, plan: e.faults}
	active := 0
	if c.Active == "b" {
		active = 1
	}
	for s, img := range []*SlotImage{c.Slots.A, c.Slots.B} {
		if img != nil {
			seq := uint32(1)
			if s == active {
				seq = 2
			}
			e.boot.install(s, img.data, seq)
		}
	}
	// The images now live in flash: the ECU keeps their descriptions, not
	// a second copy of their bytes (a MiB per ECU with two 512 KiB images).
	for _, p := range []**SlotImage{&e.cfg.Slots.A, &e.cfg.Slots.B} {
		if *p != nil {
			d := **p
			d.data = nil
			*p = &d
		}
	}
	return e, nil
}

// Name returns the ECU's name.
func (e *ECU) Name() string { return e.cfg.ECU.Name }

// Inject adds a fault plan while the ECU runs.
func (e *ECU) Inject(f Fault) error {
	if err := f.check("fault"); err != nil {
		return err
	}
	e.faults.add(f)
	return nil
}

// Run boots the ECU and serves UDS over ISO-TP on its bus until ctx ends,
// booting again after an ECUReset or a power loss. It returns nil when ctx
// ends.
func (e *ECU) Run(ctx context.Context) error {
	defer e.bus.Close()
	defer e.setState(StateOff)
	_, ecuPhys := e.cfg.ECU.Addresses()
	_, ecuFun := e.cfg.ECU.FunctionalAddresses()
	opts := isotp.Options{TxDL: e.cfg.TxDL, OnError: func(err error) { e.log.Debug("ISO-TP", zap.Error(err)) }}
	phys, err := isotp.Dial(e.bus, ecuPhys, opts)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", e.Name(), err)
	}
	defer phys.Close()
	fun, err := isotp.Dial(e.bus, ecuFun, opts)
	if err != nil {
		return fmt.Errorf("sim: %s: %w", e.Name(), err)
	}
	defer fun.Close()
	for ctx.Err() == nil {
		c, err := e.powerUp(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sim: %s: booting: %w", e.Name(), err)
		}
		if c == nil {
			continue // the power failed while booting, or the image crashed
		}
		dead := func() bool { e.mu.Lock(); defer e.mu.Unlock(); return c.lost }
		t := c.server.Timing()
		g := &gate{Transport: phys, ecu: e, dead: dead, timing: t}
		fg := &gate{Transport: fun, ecu: e, dead: dead, functional: true, timing: t}
		err = c.server.Serve(c.ctx, g, fg)
		c.cancel()
		c.prog.abort()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("sim: %s: the bus failed: %w", e.Name(), err)
		}
	}
	return nil
}

func (e *ECU) setState(s string) {
	e.mu.Lock()
	e.state = s
	e.mu.Unlock()
}

// powerUp runs the bootloader and the boot of the chosen image, and
// returns the power cycle that serves UDS; nil when the boot did not get
// that far (a crash, a power loss), with ctx's error when it ended.
func (e *ECU) powerUp(ctx context.Context) (*cycle, error) {
	e.bus.setOff(true)
	e.mu.Lock()
	e.state, e.active, e.trial, e.cycle = StateBooting, -1, false, nil
	e.boots++
	e.mu.Unlock()
	slot, trial, err := e.boot.choose(ctx)
	if err != nil {
		return nil, err
	}
	var in slotInfo
	if slot >= 0 {
		in = e.boot.inspect(slot)
	}
	if e.faults.powerLossIn(PhaseBoot, 0) {
		e.log.Info("fault: power loss while booting", zap.String("slot", slotName(slot)))
		return nil, nil
	}
	if err := sleep(ctx, e.cfg.BootTime); err != nil {
		return nil, err
	}
	if slot >= 0 && trial && e.faults.versionFault(FaultBootFailure, in.hdr.Version) {
		e.log.Info("fault: the image crashes at boot; the watchdog resets", zap.String("slot", slotName(slot)), zap.String("version", in.hdr.Version))
		return nil, nil
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &cycle{ctx: cctx, cancel: cancel}
	c.server, c.prog = e.newServer(c)
	e.mu.Lock()
	e.active, e.trial, e.cycle = slot, trial, c
	e.state = StateRunning
	if slot < 0 {
		e.state = StateBootloader
	}
	e.mu.Unlock()
	e.bus.setOff(false)
	e.log.Info("booted", zap.String("slot", slotName(slot)), zap.String("version", in.hdr.Version), zap.Bool("trial", trial))
	if trial && e.cfg.AutoConfirm != nil && !e.faults.versionFault(FaultNeverConfirm, in.hdr.Version) {
		go func() {
			if sleep(cctx, *e.cfg.AutoConfirm) == nil {
				if err := e.confirm(c); err != nil {
					e.log.Info("confirming", zap.Error(err))
				}
			}
		}()
	}
	return c, nil
}

// losePower ends cycle c as a power failure does: nothing more is sent,
// RAM is gone, and Run boots again.
func (e *ECU) losePower(c *cycle, what string) error {
	e.mu.Lock()
	c.lost = true
	e.state = StateOff
	e.mu.Unlock()
	e.bus.setOff(true)
	e.log.Info("fault: power loss", zap.String("at", what))
	c.cancel()
	return errPowerLoss
}

var errPowerLoss = errors.New("sim: power lost")

func slotName(s int) string {
	switch s {
	case 0:
		return "A"
	case 1:
		return "B"
	}
	return ""
}

// Status returns a snapshot of the ECU.
func (e *ECU) Status() ECUStatus {
	e.mu.Lock()
	st := ECUStatus{Name: e.Name(), State: e.state, ActiveSlot: slotName(e.active), Trial: e.trial, BootCount: e.boots}
	c, active := e.cycle, e.active
	e.mu.Unlock()
	if c != nil && st.State == StateRunning {
		st.Session = c.server.Session().String()
	}
	for s := range 2 {
		in := e.boot.inspect(s)
		ss := SlotStatus{Name: slotName(s), State: in.state(s == active), Confirmed: in.tr.confirmed, BootAttempts: in.tr.attempts}
		if in.err == nil {
			ss.Version, ss.ReleaseCounter, ss.Digest = in.hdr.Version, in.hdr.ReleaseCounter, slotDigest(in)
		}
		st.Slots = append(st.Slots, ss)
	}
	return st
}

// running returns the running slot and whether it is on trial.
func (e *ECU) running() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active, e.trial
}

// writable returns the slot UDS may program: the one not running. While
// the running image is on trial the other slot is its fallback and is not
// writable either (-1).
func (e *ECU) writable() int {
	a, trial := e.running()
	switch {
	case trial:
		return -1
	case a < 0:
		return 0
	}
	return 1 - a
}

func (e *ECU) slotBase(s int) uint64 {
	if s == 0 {
		return e.cfg.ECU.Flash.SlotA
	}
	return e.cfg.ECU.Flash.SlotB
}

// The routines of docs/simulator.md.
const (
	RoutineEraseInactive uint16 = 0xFF00
	RoutineVerify        uint16 = 0xFF01
	RoutineActivate      uint16 = 0xFF02
	RoutineConfirm       uint16 = 0xFF03
	RoutineRevert        uint16 = 0xFF04
)

// The slot state DIDs of docs/simulator.md.
const (
	DIDActiveSlot uint16 = 0xFD00
	DIDSlotA      uint16 = 0xFD01
	DIDSlotB      uint16 = 0xFD02
	DIDBootInfo   uint16 = 0xFD03
)

// The download formats (RequestDownload's dataFormatIdentifier).
const (
	FormatFullImage byte = 0x00 // the image as is
	FormatDelta     byte = 0x10 // a flash/delta envelope and detools sequential patch against the active image
)

// Verify results (the first byte of routine 0xFF01's status record).
const (
	VerifyOK         byte = 0x00
	VerifyNoImage    byte = 0x01 // no image header in the slot
	VerifyDamaged    byte = 0x02 // the header or the payload's SHA-256 is wrong
	VerifyMismatch   byte = 0x03 // the image digest differs from the one expected
	VerifyHardware   byte = 0x04 // the image is for other hardware
	VerifyRollback   byte = 0x05 // the release counter is below the running image's
	SlotRecordLength      = 71   // the length of DIDs 0xFD01 and 0xFD02
)

// newServer builds the UDS server of one power cycle.
func (e *ECU) newServer(c *cycle) (*uds.Server, *programmer) {
	key := e.key
	lockout := 0 // keys still to refuse for a securityLockout fault
	var lmu sync.Mutex
	s := uds.NewServer(uds.ServerConfig{
		Security: map[byte]uds.SecurityLevel{e.level: {Sessions: []uds.Session{uds.ProgrammingSession, uds.ExtendedSession}, Key: func(level byte, seed []byte) ([]byte, error) {
			lmu.Lock()
			defer lmu.Unlock()
			if lockout == 0 {
				if _, ok := e.faults.take(func(f *Fault) bool { return f.Kind == FaultSecurityLockout }); ok {
					e.log.Info("fault: security lockout: keys are refused")
					lockout = uds.DefaultMaxAttempts
				}
			}
			if lockout > 0 {
				lockout--
				return []byte("never"), nil
			}
			return key(level, seed)
		}, SeedLen: e.cfg.seedLen()}},
		OnError: func(err error) { e.log.Debug("UDS", zap.Error(err)) },
	})
	prog := &programmer{e: e, c: c}
	sec := uds.Access{Sessions: []uds.Session{uds.ProgrammingSession}, Security: []byte{e.level}}
	uds.NewDownload(s, prog, uds.DownloadOptions{Access: sec})
	s.Register(uds.ECUReset, uds.Service{SubFunctions: map[byte]uds.SubFunction{
		uds.HardReset: {Handler: e.reset(c)},
		uds.SoftReset: {Handler: e.reset(c)},
	}})
	e.registerDIDs(s)
	ids, erase := e.registerMaker(s, sec, e.eraseRoutine(c))
	s.RegisterRoutine(ids.erase, uds.Routine{Access: sec, Start: erase})
	s.RegisterRoutine(ids.verify, uds.Routine{Access: sec, Start: e.verifyRoutine(c)})
	s.RegisterRoutine(ids.activate, uds.Routine{Access: sec, Start: e.activateRoutine(c)})
	s.RegisterRoutine(ids.confirm, uds.Routine{Start: func(context.Context, *uds.Request) ([]byte, error) {
		if err := e.confirm(c); err != nil {
			return nil, err
		}
		a, _ := e.running()
		return []byte{byte(a)}, nil
	}})
	s.RegisterRoutine(ids.revert, uds.Routine{Access: sec, Start: e.revertRoutine(c)})
	return s, prog
}

func (e *ECU) reset(c *cycle) uds.HandlerFunc {
	return func(_ context.Context, r *uds.Request) ([]byte, error) {
		if len(r.Message) != 2 {
			return nil, uds.IncorrectMessageLengthOrInvalidFormat
		}
		r.AfterResponse(func() {
			e.log.Info("reset", zap.Uint8("type", r.SubFunction()))
			c.cancel()
		})
		return nil, nil
	}
}

func (e *ECU) registerDIDs(s *uds.Server) {
	text := func(f func() string) uds.DataIdentifier {
		return uds.DataIdentifier{Read: func() ([]byte, error) { return []byte(f()), nil }}
	}
	version := func() string {
		a, _ := e.running()
		if a < 0 {
			return ""
		}
		return e.boot.inspect(a).hdr.Version
	}
	s.RegisterDID(uds.DIDECUSoftwareVersionNumber, text(version))
	s.RegisterDID(uds.DIDSystemSupplierECUSoftwareVersionNumber, text(version))
	s.RegisterDID(uds.DIDSparePartNumber, text(func() string { return e.cfg.ECU.PartNumber }))
	s.RegisterDID(uds.DIDVehicleManufacturerECUHardwareNumber, text(func() string { return e.cfg.ECU.HardwareID }))
	s.RegisterDID(uds.DIDECUSerialNumber, text(func() string { return e.cfg.ECU.Serial }))
	s.RegisterDID(uds.DIDBootSoftwareIdentification, text(func() string { return "ecu-kubelet-sim-boot 1" }))
	s.RegisterDID(DIDActiveSlot, uds.DataIdentifier{Read: func() ([]byte, error) {
		a, trial := e.running()
		b := []byte{0xFF, 0}
		if a >= 0 {
			b[0] = byte(a)
		}
		if trial {
			b[1] = 1
		}
		return b, nil
	}})
	for s2, did := range []uint16{DIDSlotA, DIDSlotB} {
		s.RegisterDID(did, uds.DataIdentifier{Read: func() ([]byte, error) { return e.slotRecord(s2), nil }})
	}
	s.RegisterDID(DIDBootInfo, uds.DataIdentifier{Read: func() ([]byte, error) {
		e.mu.Lock()
		boots := e.boots
		e.mu.Unlock()
		return []byte{byte(boots >> 24), byte(boots >> 16), byte(boots >> 8), byte(boots), byte(e.cfg.ConfirmWithin)}, nil
	}})
}

// slotRecord is the value of DIDs 0xFD01 and 0xFD02: state, confirmed,
// release counter, digest, version (NUL-padded to 32), boot attempts.
func (e *ECU) slotRecord(s int) []byte {
	a, _ := e.running()
	in := e.boot.inspect(s)
	b := make([]byte, 0, SlotRecordLength)
	conf := byte(0)
	if in.tr.confirmed {
		conf = 1
	}
	b = append(b, slotStateCodes[in.state(s == a)], conf)
	b = binary.BigEndian.AppendUint32(b, in.hdr.ReleaseCounter)
	b = append(b, in.digest[:]...)
	var v [32]byte
	copy(v[:], in.hdr.Version)
	b = append(b, v[:]...)
	return append(b, byte(in.tr.attempts))
}

// eraseRoutine erases the writable slot, trailer sector first so that a
// half-erased slot is never taken for an activated one.
func (e *ECU) eraseRoutine(c *cycle) uds.HandlerFunc {
	return func(ctx context.Context, r *uds.Request) ([]byte, error) {
		if len(r.Message) != 4 {
			return nil, uds.IncorrectMessageLengthOrInvalidFormat
		}
		s := e.writable()
		if s < 0 || c.prog.busy() {
			return nil, uds.ConditionsNotCorrect
		}
		c.verified[s] = false
		n := e.flash.sectors()
		order := append([]int{n - 1}, seq(n-1)...)
		for i, sector := range order {
			if e.faults.powerLossIn(PhaseErase, i) {
				return nil, e.losePower(c, fmt.Sprintf("erasing sector %d of slot %s", sector, slotName(s)))
			}
			if err := e.flash.erase(ctx, s, sector); err != nil {
				return nil, err
			}
		}
		e.log.Info("erased", zap.String("slot", slotName(s)))
		return []byte{0x00}, nil
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// verifyRoutine checks the writable slot's image: header, payload SHA-256,
// the expected image digest (the option record, if given), hardware id and
// release counter.
func (e *ECU) verifyRoutine(c *cycle) uds.HandlerFunc {
	return func(ctx context.Context, r *uds.Request) ([]byte, error) {
		opt := r.Message[4:]
		if len(opt) != 0 && len(opt) != sha256.Size {
			return nil, uds.IncorrectMessageLengthOrInvalidFormat
		}
		s := e.writable()
		if s < 0 || c.prog.busy() {
			return nil, uds.ConditionsNotCorrect
		}
		if e.faults.powerLossIn(PhaseVerify, 0) {
			return nil, e.losePower(c, "verify")
		}
		c.verified[s] = false
		in := e.boot.inspect(s)
		result := VerifyOK
		a, _ := e.running()
		switch {
		case in.empty:
			result = VerifyNoImage
		case in.err != nil:
			result = VerifyDamaged
		case len(opt) == sha256.Size && [sha256.Size]byte(opt) != in.digest:
			result = VerifyMismatch
		case in.hdr.HardwareID != e.cfg.ECU.HardwareID:
			result = VerifyHardware
		case a >= 0 && in.hdr.ReleaseCounter < e.boot.inspect(a).hdr.ReleaseCounter:
			result = VerifyRollback
		}
		// Hashing takes time on an ECU too: about a write's.
		if err := sleep(ctx, time.Duration(int64(e.cfg.ECU.Flash.WriteTimePerKiB)*int64(in.hdr.Size())/1024/8)); err != nil {
			return nil, err
		}
		c.verified[s] = result == VerifyOK
		e.log.Info("verified", zap.String("slot", slotName(s)), zap.Uint8("result", result))
		return append([]byte{result}, in.digest[:]...), nil
	}
}

// activateRoutine marks the verified writable slot for its test boot at
// the next reset.
func (e *ECU) activateRoutine(c *cycle) uds.HandlerFunc {
	return func(ctx context.Context, r *uds.Request) ([]byte, error) {
		if len(r.Message) != 4 {
			return nil, uds.IncorrectMessageLengthOrInvalidFormat
		}
		s := e.writable()
		if s < 0 || c.prog.busy() {
			return nil, uds.ConditionsNotCorrect
		}
		if !c.verified[s] {
			return nil, uds.RequestSequenceError
		}
		in := e.boot.inspect(s)
		// A pending slot is activated already; one that ran before may be
		// activated again (a rollback to it).
		if in.err != nil || (in.tr.activated && !in.tr.confirmed && !in.tr.rejected) {
			return nil, uds.ConditionsNotCorrect
		}
		if e.faults.powerLossIn(PhaseActivate, 0) {
			return nil, e.losePower(c, "activate")
		}
		if err := e.boot.activate(ctx, s); err != nil {
			return nil, err
		}
		e.log.Info("activated for a test boot", zap.String("slot", slotName(s)), zap.String("version", in.hdr.Version))
		return []byte{byte(s)}, nil
	}
}

// confirm confirms the running image if it is on trial.
func (e *ECU) confirm(c *cycle) error {
	a, trial := e.running()
	if a < 0 {
		return uds.ConditionsNotCorrect
	}
	if !trial {
		return nil
	}
	in := e.boot.inspect(a)
	if e.faults.versionFault(FaultNeverConfirm, in.hdr.Version) {
		return uds.ConditionsNotCorrect
	}
	if e.faults.powerLossIn(PhaseConfirm, 0) {
		return e.losePower(c, "confirm")
	}
	if err := e.boot.mark(c.ctx, a, trailerConfirmed, 0x01); err != nil {
		return err
	}
	e.mu.Lock()
	if e.cycle == c {
		e.trial = false
	}
	e.mu.Unlock()
	e.log.Info("confirmed", zap.String("slot", slotName(a)), zap.String("version", in.hdr.Version))
	return nil
}

// revertRoutine rejects the running image on trial, so that the next
// reset boots the other slot.
func (e *ECU) revertRoutine(c *cycle) uds.HandlerFunc {
	return func(ctx context.Context, r *uds.Request) ([]byte, error) {
		a, trial := e.running()
		if !trial {
			return nil, uds.ConditionsNotCorrect
		}
		if err := e.boot.mark(ctx, a, trailerRejected, 0x01); err != nil {
			return nil, err
		}
		e.log.Info("rejected; the other slot boots at the next reset", zap.String("slot", slotName(a)))
		return []byte{byte(1 - a)}, nil
	}
}

// programmer is the uds.Memory of one power cycle: it writes a download
// into the writable slot, as the image itself or through the delta
// applier.
type programmer struct {
	e *ECU
	c *cycle

	mu      sync.Mutex
	active  bool // a download is in progress
	slot    int
	off     int64 // bytes programmed into the slot
	written int64 // bytes of the download received
	delta   bool
	pw      *io.PipeWriter
	done    chan error
}

func (p *programmer) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

// StartDownload accepts a download to the writable slot's base address.
func (p *programmer) StartDownload(r uds.DownloadRequest) error {
	e := p.e
	s := e.writable()
	if s < 0 {
		return uds.ConditionsNotCorrect
	}
	if r.Address != e.slotBase(s) {
		return uds.RequestOutOfRange
	}
	switch r.DataFormat {
	case FormatFullImage:
		if r.Size > e.cfg.ECU.Flash.ImageCapacity() {
			return uds.RequestOutOfRange
		}
	case FormatDelta:
	default:
		return uds.RequestOutOfRange
	}
	if !e.boot.erased(s) {
		return uds.UploadDownloadNotAccepted
	}
	p.c.verified[s] = false
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slot, p.off, p.written, p.delta = s, 0, 0, r.DataFormat == FormatDelta
	if p.delta {
		a, _ := e.running()
		if a < 0 {
			return uds.ConditionsNotCorrect // no base image to patch
		}
		in := e.boot.inspect(a)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		p.pw, p.done = pw, done
		old := slotReader{f: e.flash, s: a, size: in.hdr.Size()}
		go func() {
			_, err := delta.ApplyEnvelope(old, old.size, pr, slotWriter{p}, &delta.Options{MaxMemory: e.cfg.DeltaMemory})
			pr.CloseWithError(err)
			done <- err
		}()
	}
	p.active = true
	e.log.Info("download started", zap.String("slot", slotName(s)), zap.Bool("delta", p.delta), zap.Uint64("size", r.Size))
	return nil
}

// slotWriter is where the delta applier writes the new image.
type slotWriter struct{ p *programmer }

func (w slotWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	off := p.off
	p.mu.Unlock()
	if off+int64(len(b)) > int64(p.e.cfg.ECU.Flash.ImageCapacity()) {
		return 0, fmt.Errorf("the patched image is larger than the slot's %d bytes", p.e.cfg.ECU.Flash.ImageCapacity())
	}
	if err := p.program(off, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// program programs b at off, cutting the power where a fault says.
func (p *programmer) program(off int64, b []byte) error {
	n, lose := p.e.faults.powerLossAt(off, len(b))
	if !lose {
		n = len(b)
	}
	if n > 0 {
		if err := p.e.flash.program(p.c.ctx, p.slot, off, b[:n]); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.off = off + int64(n)
	p.mu.Unlock()
	if lose {
		return p.e.losePower(p.c, fmt.Sprintf("byte %d of slot %s", off+int64(n), slotName(p.slot)))
	}
	return nil
}

// Write programs a block of the image, or feeds it to the delta applier.
func (p *programmer) Write(_ uint64, data []byte) error {
	p.mu.Lock()
	dl, pw, off := p.delta, p.pw, p.written
	p.written += int64(len(data))
	p.mu.Unlock()
	if !dl {
		return p.program(off, data)
	}
	if _, err := pw.Write(data); err != nil {
		p.e.log.Info("delta download failed", zap.Error(err))
		return uds.GeneralProgrammingFailure
	}
	return nil
}

// FinishDownload ends a download; a delta's applier must finish with the
// envelope's image.
func (p *programmer) FinishDownload() ([]byte, error) {
	if p.e.faults.powerLossIn(PhaseTransferExit, 0) {
		return nil, p.e.losePower(p.c, "transferExit")
	}
	// Take the applier over under the lock, as abort does, so that a
	// power loss while it finishes (abort from losePower) does not wait
	// for the result this receive takes.
	p.mu.Lock()
	pw, done := p.pw, p.done
	p.pw, p.done, p.active = nil, nil, false
	p.mu.Unlock()
	if done != nil {
		pw.Close()
		if err := <-done; err != nil {
			p.e.log.Info("delta download failed", zap.Error(err))
			return nil, uds.GeneralProgrammingFailure
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.e.log.Info("download complete", zap.String("slot", slotName(p.slot)), zap.Int64("received", p.written), zap.Int64("programmed", p.off))
	return nil, nil
}

// AbortDownload stops the delta applier, if one runs.
func (p *programmer) AbortDownload() { p.abort() }

func (p *programmer) abort() {
	p.mu.Lock()
	pw, done := p.pw, p.done
	p.pw, p.done, p.active = nil, nil, false
	p.mu.Unlock()
	if done != nil {
		pw.CloseWithError(errors.New("sim: download aborted"))
		<-done
	}
}
