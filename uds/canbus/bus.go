package canbus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Bus is one attachment to a CAN bus: what SocketCAN calls a socket bound to
// an interface. Frames sent through any attachment are seen by every
// subscription on the bus whose filters match, including subscriptions of the
// sending attachment (SocketCAN's local loopback), so a capture sees the
// whole bus.
type Bus interface {
	// Send queues f for transmission. It returns when the frame is queued
	// (a transmit queue like the kernel's qdisc), blocking while the queue
	// is full, or with ctx's error.
	Send(ctx context.Context, f Frame) error
	// Subscribe returns a subscription that receives every frame matching
	// any of filters; with no filters it receives every frame, error frames
	// included. Many subscriptions may match the same frame and each gets
	// its own copy: no reader can steal another's frames.
	Subscribe(filters ...Filter) *Subscription
	// Close detaches from the bus and closes all subscriptions.
	Close() error
}

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("canbus: bus closed")

// Filter selects data and remote frames by identifier, like SocketCAN's
// can_filter: a frame matches when its format (11 or 29-bit) equals
// Extended and f.ID&Mask == ID&Mask. A zero Mask matches every identifier
// of that format.
type Filter struct {
	ID       uint32
	Mask     uint32
	Extended bool
}

// ExactFilter matches the one identifier id.
func ExactFilter(id uint32, extended bool) Filter {
	if extended {
		return Filter{ID: id, Mask: MaxExtID, Extended: true}
	}
	return Filter{ID: id, Mask: MaxStdID}
}

// Match reports whether f selects frame fr.
func (f Filter) Match(fr *Frame) bool {
	return !fr.Error && fr.Extended == f.Extended && fr.ID&f.Mask == f.ID&f.Mask
}

// DefaultQueueLen is the receive queue of a subscription, in frames: about
// 120 ms of a saturated 1 Mbit/s classic bus, so a reader that is briefly
// descheduled loses nothing, at 80 KiB per subscription.
const DefaultQueueLen = 1024

// Subscription receives the frames of a bus that match its filters.
type Subscription struct {
	hub     *Hub
	filters []Filter
	ch      chan Frame
	dropped atomic.Uint64
	once    sync.Once
}

// Frames returns the channel frames arrive on. It is closed when the
// subscription or its bus is closed.
func (s *Subscription) Frames() <-chan Frame { return s.ch }

// Dropped returns how many matching frames were discarded because the
// receive queue was full. A non-zero count means the reader is too slow
// for the bus.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel. It is safe to call
// more than once and concurrently with delivery.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		s.hub.mu.Unlock()
		close(s.ch)
	})
}

func (s *Subscription) match(f *Frame) bool {
	if len(s.filters) == 0 {
		return true
	}
	for i := range s.filters {
		if s.filters[i].Match(f) {
			return true
		}
	}
	return false
}

// Hub fans received frames out to subscriptions. Every transport uses one,
// so filtering and delivery work the same on every kind of bus. The zero
// value is ready to use.
type Hub struct {
	// QueueLen is the receive queue of new subscriptions; zero means
	// DefaultQueueLen.
	QueueLen int

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// Subscribe adds a subscription; see Bus.Subscribe. On a closed hub the
// subscription's channel is already closed.
func (h *Hub) Subscribe(filters ...Filter) *Subscription {
	n := h.QueueLen
	if n <= 0 {
		n = DefaultQueueLen
	}
	s := &Subscription{hub: h, filters: append([]Filter(nil), filters...), ch: make(chan Frame, n)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.once.Do(func() { close(s.ch) })
		return s
	}
	if h.subs == nil {
		h.subs = make(map[*Subscription]struct{})
	}
	h.subs[s] = struct{}{}
	return s
}

// Deliver hands f to every matching subscription without blocking; a
// subscription whose queue is full counts the frame as dropped.
func (h *Hub) Deliver(f Frame) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if !s.match(&f) {
			continue
		}
		select {
		case s.ch <- f:
		default:
			s.dropped.Add(1)
		}
	}
}

// Close closes every subscription; later subscriptions start closed.
func (h *Hub) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs, h.closed = nil, true
	h.mu.Unlock()
	for s := range subs {
		s.once.Do(func() { close(s.ch) })
	}
}
