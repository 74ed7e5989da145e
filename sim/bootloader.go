package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
)

// The boot trailer, in the last sector of each slot, in the spirit of
// MCUboot's: every field is written once from the erased state, so each
// write is a single program operation and a power loss leaves a field
// either written or not.
//
//	offset size
//	0      8    magic "EKBOOT01" and
//	8      4    activation sequence (big-endian): written together when the
//	            slot is activated; the highest sequence is the newest image
//	12     1    0x01: confirmed by the running application
//	13     1    0x01: rejected (reverted after failing to confirm)
//	14     N    one 0x00 per boot attempt of the unconfirmed image
const (
	trailerMagic     = "EKBOOT01"
	trailerConfirmed = 12
	trailerRejected  = 13
	trailerTally     = 14
)

func trailerSize(confirmWithin int) uint64 { return trailerTally + uint64(confirmWithin) }

// trailer is a slot's trailer as read.
type trailer struct {
	activated bool
	seq       uint32
	confirmed bool
	rejected  bool
	attempts  int
}

// Slot states, as Status and the slot DIDs report them.
const (
	SlotEmpty     = "empty"     // erased or without an image header
	SlotInvalid   = "invalid"   // an image that does not parse or whose SHA-256 fails
	SlotValid     = "valid"     // a valid image, not activated
	SlotPending   = "pending"   // activated, waiting for its test boot
	SlotTrial     = "trial"     // running its test boots, not yet confirmed
	SlotConfirmed = "confirmed" // confirmed by its application
	SlotRejected  = "rejected"  // reverted: failed to boot or to confirm in time
)

var slotStateCodes = map[string]byte{SlotEmpty: 0, SlotInvalid: 1, SlotValid: 2, SlotPending: 3, SlotTrial: 4, SlotConfirmed: 5, SlotRejected: 6}

// slotInfo is what the bootloader knows of a slot.
type slotInfo struct {
	tr     trailer
	hdr    image.Header
	digest [sha256.Size]byte
	err    error // nil for a valid image
	empty  bool
}

func (b *bootloader) trailerOff() int64 { return int64(b.f.geom.SlotSize - b.f.geom.SectorSize) }

// bootloader decides which slot boots and keeps the trailers.
type bootloader struct {
	f             *flashMem
	confirmWithin int

	mu    sync.Mutex
	cache [2]struct {
		gen  uint64
		ok   bool
		info slotInfo
	}
}

func (b *bootloader) readTrailer(s int) trailer {
	raw := b.f.read(s, b.trailerOff(), int64(trailerSize(b.confirmWithin)))
	var t trailer
	if string(raw[:8]) != trailerMagic {
		return t
	}
	t.activated = true
	t.seq = binary.BigEndian.Uint32(raw[8:])
	t.confirmed = raw[trailerConfirmed] == 0x01
	t.rejected = raw[trailerRejected] == 0x01
	for _, c := range raw[trailerTally:] {
		if c != 0xFF {
			t.attempts++
		}
	}
	return t
}

// inspect reads and checks slot s, hashing it only when it changed since
// the last time: DIDs and Status read it often.
func (b *bootloader) inspect(s int) slotInfo {
	gen := b.f.generation(s)
	b.mu.Lock()
	if c := b.cache[s]; c.ok && c.gen == gen {
		b.mu.Unlock()
		return c.info
	}
	b.mu.Unlock()
	in := b.inspectFlash(s)
	b.mu.Lock()
	b.cache[s].gen, b.cache[s].ok, b.cache[s].info = gen, true, in
	b.mu.Unlock()
	return in
}

// inspectFlash reads and checks slot s.
func (b *bootloader) inspectFlash(s int) slotInfo {
	in := slotInfo{tr: b.readTrailer(s)}
	// Parsed in place, under the flash's lock: an ECU has no RAM for a
	// copy of its slot.
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	h, img, err := image.Parse(b.f.slots[s][:b.trailerOff()])
	if err == image.ErrNotImage {
		in.empty = true
	}
	in.err = err
	if err == nil {
		in.hdr, in.digest = h, image.Digest(img)
	}
	return in
}

func (in slotInfo) state(running bool) string {
	switch {
	case in.empty && !in.tr.activated:
		return SlotEmpty
	case in.err != nil:
		return SlotInvalid
	case in.tr.rejected:
		return SlotRejected
	case in.tr.confirmed:
		return SlotConfirmed
	case in.tr.activated && running:
		return SlotTrial
	case in.tr.activated:
		return SlotPending
	}
	return SlotValid
}

// activate marks slot s for its test boot, newer than the other slot. A
// slot that ran before (confirmed, or rejected) gets a fresh trailer: its
// trailer sector is erased first, which leaves the image valid and
// inactive if power fails in between, as MCUboot rewrites a trailer.
func (b *bootloader) activate(ctx context.Context, s int) error {
	if b.readTrailer(s).activated {
		if err := b.f.erase(ctx, s, b.f.sectors()-1); err != nil {
			return err
		}
	}
	seq := b.readTrailer(1-s).seq + 1
	rec := binary.BigEndian.AppendUint32([]byte(trailerMagic), seq)
	return b.f.program(ctx, s, b.trailerOff(), rec)
}

func (b *bootloader) mark(ctx context.Context, s int, field int64, v byte) error {
	return b.f.program(ctx, s, b.trailerOff()+field, []byte{v})
}

// choose picks the slot to boot, as MCUboot's test-and-revert does: an
// activated, unconfirmed image gets up to confirmWithin boots (each
// counted in its trailer before it runs); one that is invalid or has
// used them up is rejected, and the newest valid confirmed image boots.
// trial is true for a test boot. It returns -1 when no slot holds a
// bootable image.
func (b *bootloader) choose(ctx context.Context) (slot int, trial bool, err error) {
	info := [2]slotInfo{b.inspect(0), b.inspect(1)}
	pending := -1
	for s, in := range info {
		if in.tr.activated && !in.tr.confirmed && !in.tr.rejected && (pending < 0 || in.tr.seq > info[pending].tr.seq) {
			pending = s
		}
	}
	if pending >= 0 {
		in := info[pending]
		if in.err != nil || in.tr.attempts >= b.confirmWithin {
			if err := b.mark(ctx, pending, trailerRejected, 0x01); err != nil {
				return -1, false, err
			}
		} else {
			if err := b.mark(ctx, pending, trailerTally+int64(in.tr.attempts), 0x00); err != nil {
				return -1, false, err
			}
			return pending, true, nil
		}
	}
	best := -1
	for s, in := range info {
		if in.err == nil && in.tr.activated && in.tr.confirmed && !in.tr.rejected && (best < 0 || in.tr.seq > info[best].tr.seq) {
			best = s
		}
	}
	return best, false, nil
}

// install puts img into slot s at power-up (no timing), activated with
// sequence seq and confirmed.
func (b *bootloader) install(s int, img []byte, seq uint32) {
	f := b.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen[s]++
	copy(f.slots[s], img)
	t := f.slots[s][b.trailerOff():]
	copy(t, trailerMagic)
	binary.BigEndian.PutUint32(t[8:], seq)
	t[trailerConfirmed] = 0x01
}

// slotDigest formats a digest for people.
func slotDigest(in slotInfo) string {
	if in.err != nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(in.digest[:])
}

// erased reports whether slot s is all 0xFF.
func (b *bootloader) erased(s int) bool {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	return bytes.Count(b.f.slots[s], []byte{0xFF}) == len(b.f.slots[s])
}
