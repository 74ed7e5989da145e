package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// Outcome is how a job ended.
type Outcome int

// The outcomes of a job.
const (
	Done       Outcome = iota // the target image runs and is confirmed
	RolledBack                // the new image was activated but did not confirm; the previous one runs
	Refused                   // the plan refused the job; nothing was written
	Failed                    // the job stopped; the ECU still runs its previous image
)

func (o Outcome) String() string {
	switch o {
	case Done:
		return "done"
	case RolledBack:
		return "rolled-back"
	case Refused:
		return "refused"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// MarshalText writes the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Phase is a step of a job, as journaled and reported in events.
type Phase string

// The phases of a job, in order.
const (
	PhasePlan     Phase = "plan"
	PhaseUnlock   Phase = "unlock" // pre-programming, programming session, security access
	PhaseErase    Phase = "erase"
	PhaseTransfer Phase = "transfer"
	PhaseVerify   Phase = "verify"
	PhaseActivate Phase = "activate"
	PhaseReset    Phase = "reset"
	PhaseConfirm  Phase = "confirm"
	PhaseRevert   Phase = "revert"
	PhaseDone     Phase = "done"
)

// Job is one firmware for one ECU.
type Job struct {
	ECU      vehicle.ECU
	Firmware *artifact.Firmware
	// AllowDowngrade lets the job flash an image whose release counter is
	// below the running one's (the ECU may still refuse it).
	AllowDowngrade bool
	// BeforeActivate, if set, is asked right before the verified image is
	// activated; an error stops the job there, the ECU on its previous
	// image. It lets a caller that may still call the job off do so
	// without a moment in which the image is active but the caller
	// thinks it is not.
	BeforeActivate func() error
}

// Plan is what a job decided to do and why.
type Plan struct {
	ECU      string       `json:"ecu"`
	Identity oem.Identity `json:"identity"`
	Target   string       `json:"target"` // sha256:<hex> of the image to run
	Version  string       `json:"version"`
	// Delta is true when a patch is sent instead of the image; Size is
	// the number of bytes the transfer sends.
	Delta  bool   `json:"delta"`
	Size   int64  `json:"size"`
	Reason string `json:"reason"`
	// NoOp is true when the target already runs confirmed.
	NoOp bool `json:"noop,omitempty"`
}

// Result is the end of a job.
type Result struct {
	ECU     string  `json:"ecu"`
	Outcome Outcome `json:"outcome"`
	Plan    Plan    `json:"plan"`
	// Resumed is true when the job found the journal of an interrupted
	// run of itself and carried on from the ECU's state.
	Resumed  bool  `json:"resumed,omitempty"`
	Attempts int   `json:"attempts"` // programming attempts made by this run
	Err      error `json:"-"`        // why, unless Done: *RefusedError, *RollbackError or another error
}

// RefusedError is a job the plan refused.
type RefusedError struct {
	ECU, Reason string
}

func (e *RefusedError) Error() string { return "flash: " + e.ECU + ": refused: " + e.Reason }

// RollbackError is a job whose new image did not confirm; the previous
// image runs again.
type RollbackError struct {
	ECU, Reason string
}

func (e *RollbackError) Error() string { return "flash: " + e.ECU + ": rolled back: " + e.Reason }

// Event is a progress report.
type Event struct {
	Time  time.Time     `json:"time"`
	ECU   string        `json:"ecu"`
	Phase Phase         `json:"phase"`
	Bytes int64         `json:"bytes,omitempty"` // sent so far in the transfer
	Total int64         `json:"total,omitempty"`
	Rate  float64       `json:"rate,omitempty"` // bytes per second
	ETA   time.Duration `json:"eta,omitempty"`
	Note  string        `json:"note,omitempty"`
}

// TranscriptEntry is one UDS message of a job's session.
type TranscriptEntry struct {
	Time    time.Time     `json:"time"`
	ECU     string        `json:"ecu"`
	Sent    bool          `json:"sent"`
	Service string        `json:"service"`
	NRC     string        `json:"nrc,omitempty"`
	Message []byte        `json:"message"`
	Elapsed time.Duration `json:"elapsed,omitempty"` // since the last request, for responses
}

// Defaults of Engine.
const (
	DefaultAttempts       = 3
	DefaultConfirmTimeout = 2 * time.Minute
	DefaultUpTimeout      = 30 * time.Second
	DefaultSecurityDelay  = 10*time.Second + 500*time.Millisecond
	DefaultPerBus         = 1
)

// Engine runs flash jobs. Its zero value is not usable: Buses is needed.
type Engine struct {
	// Buses are the vehicle's buses by name; they stay the caller's.
	Buses map[string]canbus.Bus
	// BusDescriptions are the vehicle's descriptions of those buses, if
	// known: an ECU on a CAN FD bus is then spoken to in CAN FD frames
	// (ISO-TP TX_DL 64, with bit rate switch when the data phase is
	// faster), which carries several times the payload of classic frames.
	// Without one, frames are classic CAN, which every bus carries.
	BusDescriptions map[string]vehicle.Bus
	// StateDir holds the journals of running jobs; "" keeps none.
	StateDir string
	// Events receives progress; sends block (or give up when the job's
	// context ends), so drain it. Nil sends none.
	Events chan<- Event
	// Transcript, if set, receives every UDS message.
	Transcript func(TranscriptEntry)
	// PerBus is how many ECUs on one bus flash at a time (DefaultPerBus).
	PerBus int
	// Attempts bounds the programming attempts of a job (DefaultAttempts).
	Attempts int
	// ConfirmTimeout is how long a new image has to come back and confirm.
	ConfirmTimeout time.Duration
	// UpTimeout is how long to wait for an ECU to answer after a reset or
	// a failure.
	UpTimeout time.Duration
	// SecurityDelay is the wait after a refused key (the ECU's lockout).
	SecurityDelay time.Duration
	// NewAdapter returns the OEM adapter of an ECU (oem.New if nil).
	NewAdapter func(vehicle.ECU) (oem.Adapter, error)

	mu   sync.Mutex
	sems map[string]chan struct{}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// FlashAll runs jobs, ECUs on different buses in parallel and PerBus at a
// time on each bus, and returns their results in order.
func (e *Engine) FlashAll(ctx context.Context, jobs []Job) []Result {
	res := make([]Result, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { res[i] = e.Flash(ctx, j) })
	}
	wg.Wait()
	return res
}

func (e *Engine) busSlot(ctx context.Context, bus string) (release func(), err error) {
	e.mu.Lock()
	if e.sems == nil {
		e.sems = map[string]chan struct{}{}
	}
	s, ok := e.sems[bus]
	if !ok {
		s = make(chan struct{}, orDefault(e.PerBus, DefaultPerBus))
		e.sems[bus] = s
	}
	e.mu.Unlock()
	select {
	case s <- struct{}{}:
		return func() { <-s }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// job is one run of a Job.
type job struct {
	e       *Engine
	j       Job
	name    string
	ad      oem.Adapter
	prof    oem.Profile
	bus     canbus.Bus
	c       *uds.Client
	hangUp  func() // closes c's connections
	target  [sha256.Size]byte
	journal *journal
	data    []byte // what the transfer sends
	delta   bool   // data is a delta envelope and patch
	// rollback makes the job activate the image the inactive slot holds
	// instead of writing one (Engine.Rollback).
	rollback bool
}

// Flash runs one job to its outcome. A job whose context ends leaves its
// journal so that the next run resumes it.
func (e *Engine) Flash(ctx context.Context, j Job) Result {
	return e.flash(ctx, j, false)
}

func (e *Engine) flash(ctx context.Context, j Job, rollback bool) Result {
	name := j.ECU.Name
	res := Result{ECU: name, Outcome: Failed}
	fail := func(err error) Result {
		res.Err = err
		var re *RefusedError
		var rb *RollbackError
		switch {
		case err == nil:
			res.Outcome = Done
		case errors.As(err, &re):
			res.Outcome = Refused
		case errors.As(err, &rb):
			res.Outcome = RolledBack
		}
		return res
	}
	if j.Firmware == nil {
		return fail(fmt.Errorf("flash: %s: no firmware given", name))
	}
	target, err := parseDigest(j.Firmware.Config.SHA256)
	if err != nil {
		return fail(fmt.Errorf("flash: %s: artifact config: %w", name, err))
	}
	bus, ok := e.Buses[j.ECU.Bus]
	if !ok {
		return fail(fmt.Errorf("flash: %s: bus %q is not open; give the engine every bus of the vehicle", name, j.ECU.Bus))
	}
	newAdapter := e.NewAdapter
	if newAdapter == nil {
		newAdapter = oem.New
	}
	ad, err := newAdapter(j.ECU)
	if err != nil {
		return fail(err)
	}
	prof, err := ad.Profile(ctx)
	if err != nil {
		return fail(fmt.Errorf("flash: %s: OEM profile: %w", name, err))
	}
	release, err := e.busSlot(ctx, j.ECU.Bus)
	if err != nil {
		return fail(err)
	}
	defer release()
	jb := &job{e: e, j: j, name: name, ad: ad, prof: prof, bus: bus, target: target, rollback: rollback}
	if err := jb.redial(); err != nil {
		return fail(fmt.Errorf("flash: %s: %w", name, err))
	}
	// The last connection, whichever redial made it.
	defer func() { jb.hangUp() }()
	jb.journal, err = openJournal(e.StateDir, name)
	if err != nil {
		return fail(err)
	}
	res.Resumed = jb.journal.state.Target == digestString(target) && jb.journal.state.Phase != ""
	err = jb.run(ctx, &res)
	if ctx.Err() == nil {
		// A finished job needs no journal; an interrupted one keeps it.
		if rerr := jb.journal.remove(); rerr != nil && err == nil {
			err = rerr
		}
	}
	return fail(err)
}

// redial replaces the job's connection to the ECU with a new one: after a
// timeout the old one may still hold the late answer to an abandoned
// request, which the next request would take for its own.
func (jb *job) redial() error {
	if jb.hangUp != nil {
		jb.hangUp()
	}
	c, hangUp, err := jb.e.dial(jb.bus, jb.j.ECU, jb.prof.FunctionalPreProgramming)
	if err != nil {
		jb.c, jb.hangUp = nil, func() {}
		return err
	}
	jb.c, jb.hangUp = c, hangUp
	return nil
}

// dial connects a client to the ECU over ISO-TP, with a functional
// transport when pre-programming is functional.
func (e *Engine) dial(bus canbus.Bus, ecu vehicle.ECU, functional bool) (*uds.Client, func(), error) {
	return e.dialTracing(bus, ecu, functional, e.Transcript)
}

// dialTracing is dial with the messages going to transcript (none if nil).
func (e *Engine) dialTracing(bus canbus.Bus, ecu vehicle.ECU, functional bool, transcript func(TranscriptEntry)) (*uds.Client, func(), error) {
	tester, _ := ecu.Addresses()
	var tp isotp.Options
	if b, ok := e.BusDescriptions[ecu.Bus]; ok && b.FD {
		tp.TxDL, tp.BRS = canbus.MaxFDLen, b.DataBitrate > b.Bitrate
	}
	conn, err := isotp.Dial(bus, tester, tp)
	if err != nil {
		return nil, nil, err
	}
	closers := []io.Closer{conn}
	opts := uds.ClientOptions{Timeout: time.Minute}
	if functional {
		ft, _ := ecu.FunctionalAddresses()
		fc, err := isotp.Dial(bus, ft, tp)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		closers = append(closers, fc)
		opts.Functional = fc
	}
	if transcript != nil {
		var mu sync.Mutex
		var last time.Time
		opts.Trace = func(sent bool, msg []byte) {
			now := time.Now()
			t := TranscriptEntry{Time: now, ECU: ecu.Name, Sent: sent, Message: bytes.Clone(msg)}
			mu.Lock()
			if sent {
				last = now
			} else if !last.IsZero() {
				t.Elapsed = now.Sub(last)
			}
			mu.Unlock()
			if len(msg) > 0 {
				sid := msg[0]
				if !sent && sid == 0x7F && len(msg) == 3 {
					sid = msg[1]
					t.NRC = uds.NRC(msg[2]).Name()
				} else if !sent && sid >= 0x40 {
					sid -= 0x40
				}
				t.Service = uds.SID(sid).String()
			}
			transcript(t)
		}
	}
	return uds.NewClient(conn, opts), func() {
		for _, c := range closers {
			c.Close()
		}
	}, nil
}

func parseDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	h, ok := strings.CutPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size {
		return d, fmt.Errorf("digest %q: want sha256:<64 hex digits>", s)
	}
	return [sha256.Size]byte(b), nil
}

func digestString(d [sha256.Size]byte) string { return "sha256:" + hex.EncodeToString(d[:]) }

func (jb *job) event(ctx context.Context, ev Event) {
	if jb.e.Events == nil {
		return
	}
	ev.Time, ev.ECU = time.Now(), jb.name
	select {
	case jb.e.Events <- ev:
	case <-ctx.Done():
	}
}

// phase journals and reports the start of a phase.
func (jb *job) phase(ctx context.Context, p Phase, note string) error {
	jb.event(ctx, Event{Phase: p, Note: note})
	jb.journal.state.Phase = p
	jb.journal.state.Target = digestString(jb.target)
	return jb.journal.save()
}

// run plans, programs and confirms, retrying the programming after a
// failure that left the ECU on its previous image.
func (jb *job) run(ctx context.Context, res *Result) error {
	activated := phaseAtLeast(jb.journal.state.Phase, PhaseActivate) && res.Resumed
	attempts := orDefault(jb.e.Attempts, DefaultAttempts)
	var last error
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if activated {
			if err := jb.phase(ctx, PhaseConfirm, "waiting for the new image"); err != nil {
				return err
			}
		} else {
			jb.event(ctx, Event{Phase: PhasePlan})
		}
		id, err := jb.waitUp(ctx, orDefault(jb.e.UpTimeout, DefaultUpTimeout))
		if err != nil {
			return errors.Join(last, err)
		}
		running, ok := id.Slots.Running()
		switch {
		case ok && running.Digest == jb.target && !id.Slots.Trial:
			if res.Attempts == 0 {
				res.Plan = Plan{ECU: jb.name, Identity: id, Target: digestString(jb.target), Version: running.Version,
					NoOp: !activated, Reason: "the target image runs and is confirmed"}
			}
			return jb.phase(ctx, PhaseDone, "the target image runs and is confirmed")
		case ok && running.Digest == jb.target:
			if res.Attempts == 0 {
				res.Plan = Plan{ECU: jb.name, Identity: id, Target: digestString(jb.target), Version: running.Version,
					Reason: "the target image runs on trial (an earlier run activated it): confirming it"}
			}
			return jb.confirm(ctx)
		case pending(id.Slots, jb.target):
			// An earlier run activated the image but did not reset into it.
			if err := jb.reset(ctx); err != nil {
				return err
			}
			activated = true
			continue
		case activated && rejected(id.Slots, jb.target):
			return &RollbackError{ECU: jb.name, Reason: fmt.Sprintf("the image was activated but the ECU runs %q again: the bootloader reverted it (%s)", running.Version, slotOf(id.Slots, jb.target))}
		}
		if last != nil && res.Attempts >= attempts {
			return fmt.Errorf("flash: %s: giving up after %d attempts: %w", jb.name, res.Attempts, last)
		}
		if err := jb.plan(ctx, id, res); err != nil {
			return err
		}
		res.Attempts++
		err = jb.program(ctx)
		if err == nil {
			activated = true
			continue // the reset is done: the next round confirms
		}
		var ve *oem.VerifyError
		var pe *oem.PluginError
		if ctx.Err() != nil || (errors.As(err, &ve) && !ve.Retry) || errors.As(err, &pe) {
			// Another attempt would ask the same failed plugin process;
			// the next job gets a new one.
			return err
		}
		last = err
		jb.event(ctx, Event{Phase: jb.journal.state.Phase, Note: "attempt failed: " + err.Error()})
	}
}

// rejected reports whether a slot holds the target image, rejected by the
// bootloader or the revert routine.
func rejected(s oem.Slots, target [sha256.Size]byte) bool {
	for _, sl := range s.Slot {
		if sl.Digest == target && sl.State == oem.SlotRejected {
			return true
		}
	}
	return false
}

// pending reports whether a slot holds the target image activated for its
// test boot at the next reset.
func pending(s oem.Slots, target [sha256.Size]byte) bool {
	for _, sl := range s.Slot {
		if sl.Digest == target && sl.State == oem.SlotPending {
			return true
		}
	}
	return false
}

var phaseOrder = []Phase{PhasePlan, PhaseUnlock, PhaseErase, PhaseTransfer, PhaseVerify, PhaseActivate, PhaseReset, PhaseConfirm, PhaseRevert, PhaseDone}

func phaseAtLeast(p, than Phase) bool {
	i, j := -1, -1
	for k, q := range phaseOrder {
		if q == p {
			i = k
		}
		if q == than {
			j = k
		}
	}
	return i >= 0 && i >= j
}

// identity reads the hardware id, version and slot state.
func (jb *job) identity(ctx context.Context) (oem.Identity, error) {
	return readIdentity(ctx, jb.c, jb.ad, jb.prof)
}

// readIdentity reads an ECU's hardware id, version and slot state through
// its OEM adapter's DIDs.
func readIdentity(ctx context.Context, c *uds.Client, ad oem.Adapter, prof oem.Profile) (oem.Identity, error) {
	var id oem.Identity
	read := func(did uint16) ([]byte, error) {
		r, err := c.ReadDataByIdentifier(ctx, did)
		if err != nil {
			return nil, err
		}
		return r[0].Data, nil
	}
	hw, err := read(prof.HardwareIDDID)
	if err != nil {
		return id, err
	}
	ver, err := read(prof.VersionDID)
	if err != nil {
		return id, err
	}
	id.HardwareID, id.Version = string(hw), string(ver)
	var vals [][]byte
	for _, did := range prof.SlotDIDs {
		v, err := read(did)
		if err != nil {
			return id, err
		}
		vals = append(vals, v)
	}
	id.Slots, err = ad.DecodeSlots(ctx, vals)
	return id, err
}

// waitUp reads the identity until the ECU answers or wait passes.
func (jb *job) waitUp(ctx context.Context, wait time.Duration) (oem.Identity, error) {
	deadline := time.Now().Add(wait)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id, err := jb.identity(rctx)
		cancel()
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return id, ctx.Err()
		}
		var pe *oem.PluginError
		if errors.As(err, &pe) {
			return id, err // the adapter, not the ECU, failed: waiting does not help
		}
		if time.Now().After(deadline) {
			return id, fmt.Errorf("flash: %s: the ECU did not answer within %v: %w", jb.name, wait, err)
		}
		pause := 100 * time.Millisecond
		var re *uds.ResponseError
		if errors.As(err, &re) {
			// The answer to an abandoned request (a killed run's): the ECU
			// may still be sending the next one, and a new request now
			// would cross it. Let it finish or time out (N_Bs, 1 s).
			pause = 1500 * time.Millisecond
		}
		if err := sleep(ctx, pause); err != nil {
			return id, err
		}
		if err := jb.redial(); err != nil {
			return id, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// preFlashCheck reads the adapter's check DIDs and asks it whether the
// ECU may be flashed now.
func (jb *job) preFlashCheck(ctx context.Context, id oem.Identity) error {
	var checks [][]byte
	for _, did := range jb.prof.CheckDIDs {
		r, err := jb.c.ReadDataByIdentifier(ctx, did)
		if err != nil {
			return fmt.Errorf("reading DID 0x%04X: %w", did, err)
		}
		checks = append(checks, r[0].Data)
	}
	return jb.ad.PreFlashCheck(ctx, id, checks)
}

// plan checks the job against the ECU and loads what the transfer sends.
func (jb *job) plan(ctx context.Context, id oem.Identity, res *Result) error {
	cfg := jb.j.Firmware.Config
	p := Plan{ECU: jb.name, Identity: id, Target: digestString(jb.target), Version: cfg.Version}
	res.Plan = p
	refuse := func(format string, a ...any) error {
		return &RefusedError{ECU: jb.name, Reason: fmt.Sprintf(format, a...)}
	}
	hwOK := false
	for _, h := range cfg.HardwareIDs {
		hwOK = hwOK || h == id.HardwareID
	}
	if !hwOK {
		return refuse("the ECU's hardware id %q is not one the artifact lists (%s)", id.HardwareID, strings.Join(cfg.HardwareIDs, ", "))
	}
	running, ok := id.Slots.Running()
	if ok && cfg.ReleaseCounter < running.ReleaseCounter && !jb.j.AllowDowngrade {
		return refuse("release counter %d is below the running image's %d (%q); allow a downgrade to flash it", cfg.ReleaseCounter, running.ReleaseCounter, running.Version)
	}
	if c := jb.j.ECU.Flash.ImageCapacity(); c > 0 && (cfg.Size < 0 || uint64(cfg.Size) > c) {
		return refuse("the image is %d bytes, more than the %d a slot of the ECU holds (flash.slotSize less its trailer sector)", cfg.Size, c)
	}
	if err := jb.preFlashCheck(ctx, id); err != nil {
		var ce *oem.ConditionError
		if errors.As(err, &ce) {
			return refuse("pre-flash check: %v", err)
		}
		return fmt.Errorf("flash: %s: pre-flash check: %w", jb.name, err)
	}
	if jb.rollback {
		p.Reason = "rollback: activate the image the other slot holds"
		res.Plan = p
		jb.event(ctx, Event{Phase: PhasePlan, Note: p.Reason})
		return nil
	}
	p.Reason = "full image: the ECU runs no image to patch"
	jb.data, jb.delta = nil, false
	if ok {
		p.Reason = "full image: the artifact has no delta from the running image " + digestString(running.Digest)
		if d, found := jb.j.Firmware.DeltaFrom(digestString(running.Digest)); found && jb.prof.DeltaOK && d.Size > cfg.Size {
			p.Reason = "full image: the delta from the running image is larger than the image"
		} else if found && jb.prof.DeltaOK {
			data, err := jb.readDelta(ctx, d, running.Digest)
			if err != nil {
				p.Reason = "full image: the delta from the running image is unusable: " + err.Error()
			} else {
				jb.data, jb.delta, p.Delta = data, true, true
				p.Reason = "delta: the artifact has a patch from the running image " + digestString(running.Digest)
			}
		}
	}
	if jb.data == nil {
		data, err := jb.readImage(ctx)
		if err != nil {
			return err
		}
		jb.data = data
	}
	p.Size = int64(len(jb.data))
	res.Plan = p
	jb.event(ctx, Event{Phase: PhasePlan, Total: p.Size, Note: p.Reason})
	return nil
}

// readAll reads what open gives, up to limit bytes: an artifact that is
// larger than it says is refused before it fills the memory.
func readAll(ctx context.Context, open func(context.Context) (io.ReadCloser, error), limit int64) ([]byte, error) {
	r, err := open(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("it is larger than the %d bytes its artifact says", limit)
	}
	return b, err
}

// readImage reads the full image, checking its digest and header.
func (jb *job) readImage(ctx context.Context) ([]byte, error) {
	b, err := readAll(ctx, jb.j.Firmware.OpenImage, jb.j.Firmware.Config.Size)
	if err != nil {
		return nil, fmt.Errorf("flash: %s: reading the artifact's image: %w", jb.name, err)
	}
	if image.Digest(b) != jb.target {
		return nil, fmt.Errorf("flash: %s: the artifact's image has digest %s, not the %s its config names; the artifact is corrupt", jb.name, digestString(image.Digest(b)), digestString(jb.target))
	}
	if _, _, err := image.Parse(b); err != nil {
		return nil, fmt.Errorf("flash: %s: the artifact's image: %w", jb.name, err)
	}
	return b, nil
}

// readDelta reads a delta layer and checks its envelope against the
// running image and the target.
func (jb *job) readDelta(ctx context.Context, d artifact.Delta, base [sha256.Size]byte) ([]byte, error) {
	b, err := readAll(ctx, d.Open, d.Size)
	if err != nil {
		return nil, err
	}
	env, err := delta.ReadEnvelope(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	switch {
	case env.BaseSHA256 != base:
		return nil, fmt.Errorf("its envelope's base is %s", digestString(env.BaseSHA256))
	case env.TargetSHA256 != jb.target:
		return nil, fmt.Errorf("its envelope's target is %s", digestString(env.TargetSHA256))
	}
	return b, nil
}
