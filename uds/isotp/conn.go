package isotp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Queue lengths of a Conn.
const (
	// RecvQueueLen is how many received messages and reception errors wait
	// for Recv. Beyond it new ones are dropped and reported to
	// Options.OnError, as a socket drops datagrams when its buffer is full:
	// blocking instead would stall our flow controls and time the peer out.
	RecvQueueLen = 64
	// fcQueueLen is how many flow controls wait for Send.
	fcQueueLen = 8
)

// Conn is an ISO-TP connection on a CAN bus: it sends and receives whole
// messages to and from one peer address, in both directions at once (full
// duplex). Send and Recv may be called from different goroutines; Sends
// are carried out one at a time.
//
// A Conn runs one goroutine that reads the bus, drives the receiving state
// machine and hands flow controls to the Send in progress; Send drives the
// sending state machine in its caller's goroutine. All waiting uses the
// standard time package, so testing/synctest can run a Conn in virtual time.
type Conn struct {
	bus     canbus.Bus
	l       link
	cfg     config
	onError func(error)
	sub     *canbus.Subscription

	sending chan struct{} // holds a token during a Send; guards tx, txTimer, sent
	tx      sender
	txTimer *time.Timer
	sent    canbus.Frame      // the last frame transmitted, whose echo confirms it
	fcs     chan canbus.Frame // flow controls, from the reader to Send
	// echoes are the frames we send, as the bus loops them back to us:
	// the confirmation that a frame is through, which STmin counts from.
	// Subscribed the first time an STmin needs it.
	echoes atomic.Pointer[canbus.Subscription]

	results    chan result // for Recv
	ctx        context.Context
	cancel     context.CancelFunc // Close
	readerDone chan struct{}
	readErr    error // why the reader stopped; set before readerDone closes
	closeOnce  sync.Once
}

// result is one outcome of reception: a message or the error that lost one.
type result struct {
	msg []byte
	err error
}

// Dial starts ISO-TP on bus for addr. It subscribes to the bus for the
// receive identifier only; the bus stays the caller's, and Close leaves it
// open. The Bus must allow Send from two goroutines at once.
func Dial(bus canbus.Bus, addr Address, opts Options) (*Conn, error) {
	if bus == nil {
		return nil, newError(ErrInvalid, "Dial needs a bus; open one with canbus.Open")
	}
	l, err := addr.resolve()
	if err != nil {
		return nil, err
	}
	cfg, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		bus:        bus,
		l:          l,
		cfg:        cfg,
		onError:    opts.OnError,
		sending:    make(chan struct{}, 1),
		tx:         newSender(l, cfg),
		txTimer:    time.NewTimer(time.Hour),
		fcs:        make(chan canbus.Frame, fcQueueLen),
		results:    make(chan result, RecvQueueLen),
		ctx:        ctx,
		cancel:     cancel,
		readerDone: make(chan struct{}),
	}
	c.txTimer.Stop()
	c.sub = bus.Subscribe(canbus.ExactFilter(l.rxID, l.extended))
	go c.read(newReceiver(l, cfg))
	return c, nil
}

// Send sends msg as one ISO-TP message and returns when its last frame has
// been handed to the bus (queued for transmission), or with the error that
// ended it: an *Error (ErrTimeout with N_As or N_Bs, ErrOverflow,
// ErrWaitLimit, ErrMalformed for an invalid flow status, ErrFunctional,
// ErrInvalid), ctx's cause, ErrClosed, or the bus's error. Send does not
// retain msg after it returns.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	// A channel rather than a mutex: waiting for it honours ctx, and
	// testing/synctest sees it as durably blocking.
	select {
	case c.sending <- struct{}{}:
		defer func() { <-c.sending }()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })()
	wd := newWatchdog(ctx)
	defer wd.close()

	s := &c.tx
	ev := s.start(msg)
	for !ev.done {
		if ev.err != nil {
			c.report(ev.err)
		}
		switch {
		case ev.send:
			// A flow control or echo that arrived before this frame was
			// queued cannot answer it: clear them out, so that the wait
			// after this frame sees only answers.
			c.staleFlowControls(s)
			if s.confirms() {
				c.staleEchoes()
			}
			c.sent = ev.frame
			if err := c.transmit(wd, &ev.frame, c.cfg.nAs, NAs); err != nil {
				ev = s.abort(err)
			} else {
				ev = s.transmitted(time.Now())
			}
		default:
			ev = c.waitTx(ctx, s)
		}
	}
	return ev.err
}

// waitTx waits for what the sender waits for: a flow control, its deadline,
// or the end of ctx.
func (c *Conn) waitTx(ctx context.Context, s *sender) txEvent {
	d, ok := s.timer()
	if !ok {
		return s.abort(errors.New("isotp: internal error: sender waits without a deadline"))
	}
	c.txTimer.Reset(time.Until(d))
	defer c.txTimer.Stop()
	var echoes <-chan canbus.Frame // nil, which blocks, unless a confirmation is due
	if s.state == txConfirm {
		echoes = c.echoes.Load().Frames()
	}
	for {
		select {
		case f := <-c.fcs:
			return s.handleFrame(&f, time.Now())
		case f, ok := <-echoes:
			if !ok {
				return s.abort(ErrClosed)
			}
			if sameFrame(&f, &c.sent) {
				return s.confirmed(time.Now())
			}
		case <-c.txTimer.C:
			return s.expire(time.Now())
		case <-ctx.Done():
			return s.abort(context.Cause(ctx))
		}
	}
}

// staleEchoes makes sure the echo subscription exists and holds no frame
// sent before the next one.
func (c *Conn) staleEchoes() {
	sub := c.echoes.Load()
	if sub == nil {
		sub = c.bus.Subscribe(canbus.ExactFilter(c.l.txID, c.l.extended))
		c.echoes.Store(sub)
		if c.ctx.Err() != nil { // Close ran before the Store
			sub.Close()
		}
	}
	for {
		select {
		case _, ok := <-sub.Frames():
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// sameFrame reports whether a and b carry the same identifier and data.
func sameFrame(a, b *canbus.Frame) bool {
	return a.ID == b.ID && a.Extended == b.Extended && bytes.Equal(a.Payload(), b.Payload())
}

func (c *Conn) staleFlowControls(s *sender) {
	for {
		select {
		case f := <-c.fcs:
			if ev := s.handleFrame(&f, time.Now()); ev.err != nil {
				c.report(ev.err)
			}
		default:
			return
		}
	}
}

// Recv returns the next complete message, or the error that lost one: an
// *Error with ErrTimeout (N_Cr, or N_Ar for a flow control the bus did not
// take), ErrSequence, ErrInterrupted or ErrOverflow. After such an error
// Recv can be called again for the next message. It returns ctx's error
// when ctx ends first, and ErrClosed after Close. Received messages wait
// for Recv in a queue of RecvQueueLen.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	select {
	case r := <-c.results:
		return r.msg, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.readerDone:
		select {
		case r := <-c.results:
			return r.msg, r.err
		default:
			return nil, c.readErr
		}
	}
}

// Close stops the Conn: a Send in progress returns ErrClosed, and so do
// later calls. It does not close the bus.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.sub.Close()
		if sub := c.echoes.Load(); sub != nil {
			sub.Close()
		}
		<-c.readerDone
	})
	return nil
}

// read is the Conn's goroutine: it receives the frames of the receive
// identifier and drives the receiver.
func (c *Conn) read(rx receiver) {
	defer close(c.readerDone)
	wd := newWatchdog(c.ctx)
	defer wd.close()
	frames := c.sub.Frames()
	// The timer is re-armed lazily: while a message comes in, each CF
	// moves the deadline later, and only when the timer fires is it set
	// again, instead of once per frame.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var armed time.Time
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				c.readErr = ErrClosed
				if c.ctx.Err() == nil {
					c.readErr = fmt.Errorf("isotp: bus closed: %w", canbus.ErrClosed)
				}
				return
			}
			c.receive(&rx, &f, wd)
		case <-timer.C:
			armed = time.Time{}
			// Frames already queued arrived before the timer fired, so
			// they count first.
			for drained := false; !drained; {
				select {
				case f, ok := <-frames:
					if ok {
						c.receive(&rx, &f, wd)
					} else {
						drained = true
					}
				default:
					drained = true
				}
			}
			c.apply(&rx, rx.expire(time.Now()), wd)
		case <-c.ctx.Done():
			c.readErr = ErrClosed
			return
		}
		if d, ok := rx.timer(); ok && (armed.IsZero() || d.Before(armed)) {
			armed = d
			timer.Reset(time.Until(d))
		}
	}
}

func (c *Conn) receive(rx *receiver, f *canbus.Frame, wd *watchdog) {
	if c.l.isFlowControl(f) {
		if len(c.sending) == 0 {
			// No Send holds the token: nothing waits for a flow control.
			// (A Send starting just now clears stale ones out anyway.)
			c.report(newError(ErrUnexpected, fmt.Sprintf("flow control %s ignored: no message is being sent", f.String())))
			return
		}
		select {
		case c.fcs <- *f:
		default:
			c.report(newError(ErrUnexpected, fmt.Sprintf("flow control %s dropped: %d are already waiting for Send", f.String(), fcQueueLen)))
		}
		return
	}
	c.apply(rx, rx.handleFrame(f, time.Now()), wd)
}

// apply carries out what the receiver asked for.
func (c *Conn) apply(rx *receiver, ev rxEvent, wd *watchdog) {
	if ev.ignored != nil {
		c.report(ev.ignored)
	}
	if ev.err != nil {
		c.deliver(result{err: ev.err})
	}
	if ev.sendFC {
		if err := c.transmit(wd, &ev.fc, c.cfg.nAr, NAr); err != nil {
			c.deliver(result{err: rx.abort(err).err})
			return
		}
	}
	if ev.msg != nil {
		c.deliver(result{msg: ev.msg})
	}
}

func (c *Conn) deliver(r result) {
	select {
	case c.results <- r:
	default:
		what := fmt.Sprintf("message of %d bytes", len(r.msg))
		if r.err != nil {
			what = fmt.Sprintf("error %q", r.err)
		}
		c.report(fmt.Errorf("isotp: %s dropped: %d results wait for Recv; call Recv more often", what, RecvQueueLen))
	}
}

func (c *Conn) report(err error) {
	if c.onError != nil {
		c.onError(err)
	}
}

// transmit hands f to the bus, waiting at most timeout (N_As or N_Ar,
// named by t) for the bus to accept it.
func (c *Conn) transmit(wd *watchdog, f *canbus.Frame, timeout time.Duration, t Timer) error {
	ctx := wd.arm(timeout)
	err := c.bus.Send(ctx, *f)
	wd.disarm()
	switch {
	case err == nil:
		return nil
	case wd.expired():
		return &Error{Kind: ErrTimeout, Timer: t, Detail: fmt.Sprintf("the bus did not accept frame %s within %v; is it up and not flooded?", f.String(), timeout)}
	case ctx.Err() != nil:
		return context.Cause(ctx)
	}
	return fmt.Errorf("isotp: sending frame %s: %w", f.String(), err)
}

// watchdog bounds blocking bus sends with one reusable timer, so that
// sending a frame allocates no context.
type watchdog struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

// errExpired is the cause a watchdog cancels its context with.
var errExpired = errors.New("isotp: watchdog expired")

func newWatchdog(parent context.Context) *watchdog {
	w := &watchdog{parent: parent}
	w.renew()
	return w
}

func (w *watchdog) renew() {
	ctx, cancel := context.WithCancelCause(w.parent)
	w.ctx, w.cancel = ctx, cancel
	w.timer = time.AfterFunc(time.Hour, func() { cancel(errExpired) })
	w.timer.Stop()
}

// arm returns a context that is cancelled after d unless disarm comes
// first.
func (w *watchdog) arm(d time.Duration) context.Context {
	if w.ctx.Err() != nil {
		w.renew() // spent by an expiry, possibly one that raced a success
	}
	w.timer.Reset(d)
	return w.ctx
}

func (w *watchdog) disarm() { w.timer.Stop() }

// expired reports whether the context of the last arm expired.
func (w *watchdog) expired() bool { return context.Cause(w.ctx) == errExpired }

func (w *watchdog) close() {
	w.timer.Stop()
	w.cancel(nil)
}
