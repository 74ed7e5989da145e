package canbus

import "testing"

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		name string
		f    Filter
		fr   Frame
		want bool
	}{
		{"exact 11-bit", ExactFilter(0x7E8, false), Frame{ID: 0x7E8}, true},
		{"exact 11-bit other id", ExactFilter(0x7E8, false), Frame{ID: 0x7E0}, false},
		{"11-bit filter ignores 29-bit frame", ExactFilter(0x7E8, false), Frame{ID: 0x7E8, Extended: true}, false},
		{"exact 29-bit", ExactFilter(0x18DAF110, true), Frame{ID: 0x18DAF110, Extended: true}, true},
		{"mask selects a range", Filter{ID: 0x7E0, Mask: 0x7F0}, Frame{ID: 0x7EF}, true},
		{"zero mask matches every 11-bit id", Filter{}, Frame{ID: 0x123}, true},
		{"filters never match error frames", Filter{}, Frame{Error: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(&tt.fr); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHubEveryReaderSeesItsFrames defends against the bug class where a
// second reader steals frames (python-can-isotp's flow-control loss): two
// subscriptions with overlapping filters each get every frame they select.
func TestHubEveryReaderSeesItsFrames(t *testing.T) {
	var h Hub
	a := h.Subscribe(ExactFilter(0x7E8, false))
	b := h.Subscribe(ExactFilter(0x7E8, false), ExactFilter(0x7E0, false))
	all := h.Subscribe()
	for _, id := range []uint32{0x7E0, 0x7E8, 0x123, 0x7E8} {
		h.Deliver(Frame{ID: id})
	}
	h.Deliver(Frame{Error: true, ID: 4})
	for _, c := range []struct {
		name string
		s    *Subscription
		want []uint32
	}{
		{"a", a, []uint32{0x7E8, 0x7E8}},
		{"b", b, []uint32{0x7E0, 0x7E8, 0x7E8}},
		{"all", all, []uint32{0x7E0, 0x7E8, 0x123, 0x7E8, 4}},
	} {
		for i, id := range c.want {
			select {
			case f := <-c.s.Frames():
				if f.ID != id {
					t.Errorf("%s: frame %d has id %#x, want %#x", c.name, i, f.ID, id)
				}
			default:
				t.Fatalf("%s: frame %d (%#x) missing", c.name, i, id)
			}
		}
		select {
		case f := <-c.s.Frames():
			t.Errorf("%s: unexpected extra frame %v", c.name, f)
		default:
		}
	}
}

func TestHubCountsDropsOfASlowReader(t *testing.T) {
	h := Hub{QueueLen: 2}
	slow := h.Subscribe()
	for i := range 5 {
		h.Deliver(Frame{ID: uint32(i)})
	}
	if got := slow.Dropped(); got != 3 {
		t.Fatalf("Dropped() = %d, want 3", got)
	}
	if f := <-slow.Frames(); f.ID != 0 {
		t.Fatalf("first kept frame has id %d, want 0 (oldest frames are kept)", f.ID)
	}
}

func TestHubClose(t *testing.T) {
	var h Hub
	s := h.Subscribe()
	s.Close()
	s.Close() // idempotent
	if _, ok := <-s.Frames(); ok {
		t.Fatal("closed subscription delivered a frame")
	}
	h.Deliver(Frame{}) // no send on a closed channel
	live := h.Subscribe()
	h.Close()
	if _, ok := <-live.Frames(); ok {
		t.Fatal("hub Close left a subscription open")
	}
	late := h.Subscribe()
	if _, ok := <-late.Frames(); ok {
		t.Fatal("subscription on a closed hub is open")
	}
	live.Close() // after hub close: no double close panic
}
