package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

// flashMem is an ECU's program flash: two slots of NOR flash. Erasing
// sets a sector to 0xFF and takes EraseTimePerSector; programming only
// writes erased bytes (a real flash driver's verify would fail otherwise)
// and takes WriteTimePerKiB per KiB. Each erase and program is atomic: a
// power loss strikes between operations, so a slot keeps exactly the
// operations that finished.
type flashMem struct {
	geom vehicle.Flash

	mu    sync.Mutex
	slots [2][]byte
	gen   [2]uint64 // counts the changes of each slot, for caches of its content
}

func newFlash(g vehicle.Flash) *flashMem {
	f := &flashMem{geom: g}
	for i := range f.slots {
		f.slots[i] = make([]byte, g.SlotSize)
		fill(f.slots[i], 0xFF)
	}
	return f
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// errNotErased is a program operation over bytes that were not erased.
var errNotErased = errors.New("sim: programming flash that is not erased; erase the slot first")

// sectors returns the number of sectors in a slot.
func (f *flashMem) sectors() int { return int(f.geom.SlotSize / f.geom.SectorSize) }

// erase erases one sector of slot s, taking the sector erase time.
func (f *flashMem) erase(ctx context.Context, s, sector int) error {
	if err := sleep(ctx, f.geom.EraseTimePerSector); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	off := uint64(sector) * f.geom.SectorSize
	fill(f.slots[s][off:off+f.geom.SectorSize], 0xFF)
	f.gen[s]++
	return nil
}

// program writes p at off in slot s, taking the write time.
func (f *flashMem) program(ctx context.Context, s int, off int64, p []byte) error {
	if off < 0 || off+int64(len(p)) > int64(f.geom.SlotSize) {
		return fmt.Errorf("sim: programming %d bytes at %d, past the %d-byte slot", len(p), off, f.geom.SlotSize)
	}
	if err := sleep(ctx, time.Duration(int64(f.geom.WriteTimePerKiB)*int64(len(p))/1024)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dst := f.slots[s][off : off+int64(len(p))]
	for _, c := range dst {
		if c != 0xFF {
			return errNotErased
		}
	}
	copy(dst, p)
	f.gen[s]++
	return nil
}

// generation returns the change count of slot s.
func (f *flashMem) generation(s int) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen[s]
}

// read copies n bytes at off of slot s.
func (f *flashMem) read(s int, off, n int64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.slots[s][off:off+n]...)
}

// slotReader reads a slot, as the delta applier's old image.
type slotReader struct {
	f    *flashMem
	s    int
	size int64
}

func (r slotReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-off)
	r.f.mu.Lock()
	copy(p, r.f.slots[r.s][off:off+n])
	r.f.mu.Unlock()
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
