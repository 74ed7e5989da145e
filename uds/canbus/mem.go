package canbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The mem bus (mem://NAME) is a CAN bus inside one process. Every Open of
// the same name attaches another node to the same bus; the bus exists
// while any attachment is open and its name is free again once the last
// one closes.
//
// Without a bit rate the bus is untimed: Send delivers the frame to every
// attachment at once, and all readers see frames in one order.
//
// With a bit rate the bus carries one frame at a time, like a real one.
// Each attachment has a FIFO transmit queue of memTxQueueLen frames. When
// the wire is free, the heads of the queues that were waiting contend by
// CAN arbitration (see arbitrationKey) and the winner occupies the wire
// for exactly Config.FrameTime: it is delivered to every attachment at
// the end of its intermission. A frame starts at the later of the end of
// the previous frame and the moment it was queued, so the schedule is
// computed from absolute deadlines: a late timer never delays the frames
// after it, and a backlog keeps the wire busy without a gap.
//
// The bus keeps its own timeline, which runs behind the wall clock by the
// lateness of its last delivery. A Go process that is otherwise idle wakes
// from a timer up to about a millisecond late (the runtime's poller waits
// in whole milliseconds), several frame times at 500 kbit/s. A node that
// answers a frame (a flow control after a first frame) answers that much
// later in wall time; stamping its frame on the bus timeline charges it
// only its own reaction time, as a real bus would. Under synctest timers
// are exact and the two clocks agree.
//
// All waiting uses channels and timers of the standard library, so the
// bus runs in virtual time under testing/synctest. A timed bus runs one
// goroutine, started by the Open that creates the bus and ended by the
// Close of its last attachment, so it belongs to the opener's bubble:
// give each test its own bus name.

// memTxQueueLen is the transmit queue of an attachment to a timed mem bus,
// in frames. Send blocks while it is full.
const memTxQueueLen = 64

// ErrNoFD is returned when a CAN FD frame is sent on a bus that is not
// configured for CAN FD.
var ErrNoFD = errors.New("CAN FD frame on a classic CAN bus")

// MemStats counts what a mem bus has carried.
type MemStats struct {
	// Frames is the number of frames delivered.
	Frames uint64
	// Busy is the sum of their FrameTime: how long the wire was occupied.
	// It stays zero on an untimed bus. Busy divided by the time elapsed
	// is the bus load.
	Busy time.Duration
	// Start and End are when the first frame started and the last frame
	// ended on the bus timeline (zero on an untimed bus): Busy divided by
	// End-Start is the load over the bus's active span, free of the host's
	// timer lateness.
	Start, End time.Time
}

// MemBusStats returns the counters of the open mem bus called name (the
// NAME of mem://NAME), or false if no attachment to it is open.
func MemBusStats(name string) (MemStats, bool) {
	memBuses.Lock()
	b := memBuses.m[name]
	memBuses.Unlock()
	if b == nil {
		return MemStats{}, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats, true
}

// memBuses holds the open mem buses by name.
var memBuses struct {
	sync.Mutex
	m map[string]*memBus
}

type memBus struct {
	name string
	cfg  Config // Bitrate, DataBitrate and FD; the same for every attachment
	open int    // attachments not closed, guarded by memBuses

	mu    sync.Mutex
	nodes []*memNode // attachments that are open or still have frames queued
	seq   uint64     // frames queued so far: orders frames that tie in arbitration
	stats MemStats
	lag   time.Duration // how late the wire delivered its last frame
	stamp time.Time     // the latest queueing stamp; stamps never decrease

	// Timed buses only.
	kick chan struct{} // a frame was queued
	stop chan struct{} // closed when the last attachment closes
	done chan struct{} // closed when the wire goroutine has returned
}

// memNode is one attachment, the Bus that Open returns.
type memNode struct {
	bus    *memBus
	hub    Hub
	closed chan struct{} // closed by Close, ends Sends waiting for space

	// Guarded by bus.mu.
	isClosed bool
	q        [memTxQueueLen]memTx // ring buffer: n frames from head on
	head, n  int
	space    chan struct{} // closed when the full queue shrinks; nil if no Send waits
}

// memTx is a queued frame with what the wire needs to schedule it.
type memTx struct {
	f   Frame
	at  time.Time     // when Send queued it
	dur time.Duration // FrameTime
	key uint64        // arbitrationKey
	seq uint64        // queueing order
}

func openMem(name string, cfg Config) (Bus, error) {
	if cfg.Bitrate < 0 || cfg.DataBitrate < 0 {
		return nil, fmt.Errorf("canbus: mem://%s: negative bit rate (bitrate %d, dbitrate %d)", name, cfg.Bitrate, cfg.DataBitrate)
	}
	if cfg.Bitrate == 0 && cfg.DataBitrate != 0 {
		return nil, fmt.Errorf("canbus: mem://%s: dbitrate=%d without a nominal bitrate; set bitrate too, or neither for an untimed bus", name, cfg.DataBitrate)
	}
	// A classic bus never switches rate, and an FD bus without a data
	// rate stays at the nominal one; normalize so that equal buses compare
	// equal.
	want := Config{Bitrate: cfg.Bitrate, DataBitrate: cfg.DataBitrate, FD: cfg.FD}
	if !want.FD || want.DataBitrate == 0 {
		want.DataBitrate = want.Bitrate
	}

	memBuses.Lock()
	defer memBuses.Unlock()
	b := memBuses.m[name]
	switch {
	case b == nil:
		b = &memBus{name: name, cfg: want}
		if want.Bitrate > 0 {
			b.kick = make(chan struct{}, 1)
			b.stop = make(chan struct{})
			b.done = make(chan struct{})
			go b.wire()
		}
		if memBuses.m == nil {
			memBuses.m = make(map[string]*memBus)
		}
		memBuses.m[name] = b
	case b.cfg != want:
		return nil, fmt.Errorf("canbus: mem://%s is open with %s; open it with the same bitrate, dbitrate and fd, not %s",
			name, describeMem(b.cfg), describeMem(want))
	}
	b.open++
	n := &memNode{bus: b, closed: make(chan struct{})}
	n.hub.QueueLen = cfg.QueueLen
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n, nil
}

func describeMem(c Config) string {
	return fmt.Sprintf("bitrate=%d dbitrate=%d fd=%v", c.Bitrate, c.DataBitrate, c.FD)
}

// Send implements Bus. It rejects a frame that fails Validate, and a CAN
// FD frame on a classic bus with ErrNoFD.
func (n *memNode) Send(ctx context.Context, f Frame) error {
	b := n.bus
	if err := f.Validate(); err != nil {
		return fmt.Errorf("canbus: mem://%s: %w", b.name, err)
	}
	if f.FD && !b.cfg.FD {
		return fmt.Errorf("canbus: mem://%s: %v: %w; open the bus with fd=true to carry CAN FD", b.name, f, ErrNoFD)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.kick == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		if n.isClosed {
			return ErrClosed
		}
		b.stats.Frames++
		b.deliver(f)
		return nil
	}
	tx := memTx{f: f, dur: b.cfg.FrameTime(&f), key: arbitrationKey(&f)}
	for {
		b.mu.Lock()
		if n.isClosed {
			b.mu.Unlock()
			return ErrClosed
		}
		if n.n < len(n.q) {
			// Stamped on the bus timeline, under the lock, so the
			// stamps of successive frames never decrease; arbitrate
			// relies on it.
			tx.at = time.Now().Add(-b.lag)
			if tx.at.Before(b.stamp) {
				tx.at = b.stamp
			}
			b.stamp = tx.at
			tx.seq = b.seq
			b.seq++
			n.q[(n.head+n.n)%len(n.q)] = tx
			n.n++
			b.mu.Unlock()
			select {
			case b.kick <- struct{}{}:
			default: // the wire has a kick pending already
			}
			return nil
		}
		if n.space == nil {
			n.space = make(chan struct{})
		}
		space := n.space
		b.mu.Unlock()
		select {
		case <-space:
		case <-n.closed:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("canbus: mem://%s: transmit queue full (%d frames): %w", b.name, memTxQueueLen, ctx.Err())
		}
	}
}

// Subscribe implements Bus.
func (n *memNode) Subscribe(filters ...Filter) *Subscription {
	return n.hub.Subscribe(filters...)
}

// Close implements Bus. Frames this attachment has queued still go out to
// the others, as a closed socket's frames leave the kernel's queue; when
// the last attachment closes, the bus stops, drops what is queued, and
// Close returns once its goroutine has ended.
func (n *memNode) Close() error {
	b := n.bus
	memBuses.Lock()
	b.mu.Lock()
	if n.isClosed {
		b.mu.Unlock()
		memBuses.Unlock()
		return nil
	}
	n.isClosed = true
	close(n.closed)
	if n.n == 0 {
		b.detach(n)
	}
	b.open--
	last := b.open == 0
	if last {
		delete(memBuses.m, b.name)
		if b.stop != nil {
			close(b.stop)
		}
	}
	b.mu.Unlock()
	memBuses.Unlock()

	n.hub.Close()
	if last && b.done != nil {
		<-b.done
	}
	return nil
}

// deliver hands f to every open attachment. b.mu must be held, which
// gives all readers the same order.
func (b *memBus) deliver(f Frame) {
	for _, n := range b.nodes {
		if !n.isClosed {
			n.hub.Deliver(f)
		}
	}
}

// detach removes n from the nodes. b.mu must be held.
func (b *memBus) detach(n *memNode) {
	for i, m := range b.nodes {
		if m == n {
			b.nodes = append(b.nodes[:i], b.nodes[i+1:]...)
			return
		}
	}
}

// wire is the goroutine of a timed bus: it carries one frame at a time.
// free is the end of the last frame, the earliest start of the next.
func (b *memBus) wire() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var free time.Time
	for {
		select {
		case <-b.stop:
			return
		default:
		}
		b.mu.Lock()
		n, start := b.arbitrate(free)
		var tx memTx
		if n != nil {
			tx = n.q[n.head]
		}
		b.mu.Unlock()
		if n == nil {
			select {
			case <-b.kick:
				continue
			case <-b.stop:
				return
			}
		}

		end := start.Add(tx.dur)
		if wait := time.Until(end); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-b.kick:
				// A frame queued since may have been waiting at start
				// too, and may win: arbitrate again.
				timer.Stop()
				continue
			case <-b.stop:
				timer.Stop()
				return
			}
		}

		b.mu.Lock()
		if m, _ := b.arbitrate(free); m != n || m.q[m.head].seq != tx.seq {
			// A frame that was waiting at start came in after the
			// kick was read: it wins instead.
			b.mu.Unlock()
			continue
		}
		n.pop()
		if b.stats.Frames == 0 {
			b.stats.Start = start
		}
		b.stats.Frames++
		b.stats.Busy += tx.dur
		b.stats.End = end
		b.lag = max(time.Since(end), 0)
		b.deliver(tx.f)
		b.mu.Unlock()
		free = end
	}
}

// pop removes the head of the queue after the wire has carried it. b.mu
// must be held.
func (n *memNode) pop() {
	n.q[n.head] = memTx{}
	n.head = (n.head + 1) % len(n.q)
	n.n--
	if n.space != nil {
		close(n.space)
		n.space = nil
	}
	if n.isClosed && n.n == 0 {
		n.bus.detach(n)
	}
}

// arbitrate returns the attachment whose queue head takes the wire next
// and when that frame starts: at the later of free and the moment the
// earliest waiting frame was queued. Every queue head waiting by then
// contends, as every node with a pending frame starts its SOF together
// after the intermission; the lowest arbitrationKey wins. Two frames with
// equal keys (the same identifier and format from two nodes, which a real
// bus forbids) go in queueing order. b.mu must be held.
//
// Because Send stamps frames under b.mu, a frame queued later never has an
// earlier stamp, so the start does not move once some frame waits; a frame
// queued later in real time but stamped no later than start (the same
// instant under synctest) still wins if its key is lower.
func (b *memBus) arbitrate(free time.Time) (*memNode, time.Time) {
	var start time.Time
	waiting := false
	for _, n := range b.nodes {
		if n.n == 0 {
			continue
		}
		if at := n.q[n.head].at; !waiting || at.Before(start) {
			start, waiting = at, true
		}
	}
	if !waiting {
		return nil, time.Time{}
	}
	if start.Before(free) {
		start = free
	}
	var win *memNode
	for _, n := range b.nodes {
		if n.n == 0 {
			continue
		}
		h := &n.q[n.head]
		if h.at.After(start) {
			continue
		}
		if win == nil {
			win = n
			continue
		}
		if w := &win.q[win.head]; h.key < w.key || h.key == w.key && h.seq < w.seq {
			win = n
		}
	}
	return win, start
}

// arbitrationKey orders frames as CAN arbitration does: the bits a frame
// sends after SOF, up to FDF, read as a number, where a dominant 0 beats a
// recessive 1. The 11-bit base identifier comes first; then a standard
// frame sends RTR (or RRS) and IDE=0 where an extended one sends SRR=1 and
// IDE=1, so a standard frame beats an extended one with the same base
// identifier, and a data frame beats a remote frame with the same
// identifier. Error frames (a dominant error flag that overrides
// everything) come first.
func arbitrationKey(f *Frame) uint64 {
	if f.Error {
		return 0
	}
	var rtr, fdf uint64
	if f.RTR && !f.FD {
		rtr = 1
	}
	if f.FD {
		fdf = 1
	}
	// 33 bits, most significant first: base id (11), then for extended
	// frames SRR, IDE, id extension (18), RTR, FDF; for standard frames
	// RTR, IDE, FDF and zero padding, which never decides because the
	// formats differ at IDE at the latest.
	var k uint64
	if f.Extended {
		id := uint64(f.ID & MaxExtID)
		k = id>>18<<22 | 1<<21 | 1<<20 | (id&0x3FFFF)<<2 | rtr<<1 | fdf
	} else {
		k = uint64(f.ID&MaxStdID)<<22 | rtr<<21 | fdf<<19
	}
	return k + 1
}
