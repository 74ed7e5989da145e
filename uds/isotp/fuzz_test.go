package isotp

import (
	"bytes"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// FuzzDecodePDU feeds arbitrary frame data to the N_PCI decoder: it must
// never panic, and what it accepts must be consistent with the bytes.
func FuzzDecodePDU(f *testing.F) {
	for _, seed := range [][]byte{
		{0x05, 1, 2, 3, 4, 5}, {0x00, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {0x10, 0x14, 1, 2, 3, 4, 5, 6},
		{0x10, 0, 0, 0, 0x10, 0, 1, 2}, {0x21, 1, 2}, {0x30, 8, 0x14}, {0x32, 0, 0}, {0xF0}, {},
	} {
		f.Add(seed, uint8(len(seed)))
	}
	f.Fuzz(func(t *testing.T, p []byte, canDL uint8) {
		d, err := decodePDU(p, int(canDL))
		if err != nil {
			return
		}
		switch d.typ {
		case typeSF:
			if d.size < 1 || len(d.data) != d.size || !bytes.Contains(p, d.data) {
				t.Fatalf("single frame %x decoded to size %d with %d data bytes", p, d.size, len(d.data))
			}
			if canDL > 8 && p[0] != 0 {
				t.Fatalf("CAN FD single frame %x accepted without the escape", p)
			}
		case typeFF:
			if d.size < 1 {
				t.Fatalf("first frame %x announces %d bytes", p, d.size)
			}
		case typeCF:
			if d.sn > 15 {
				t.Fatalf("sequence number %d", d.sn)
			}
		case typeFC:
			if len(p) < 3 {
				t.Fatalf("flow control %x accepted without BS and STmin", p)
			}
		default:
			t.Fatalf("type %d accepted", d.typ)
		}
	})
}

// FuzzReceiver feeds the receiver arbitrary sequences of frames and time
// steps. It must never panic, never hold a buffer larger than the message
// announced (itself at most MaxRecvLen), and deliver only messages whose
// length a frame announced.
//
// The input is read as records: a length byte L (its high bit: the frame
// is CAN FD), a time step byte (milliseconds, 255 meaning "check the
// timer"), then L&0x7F data bytes, cut to 64.
func FuzzReceiver(f *testing.F) {
	f.Add([]byte{8, 0, 0x10, 0x14, 1, 2, 3, 4, 5, 6, 8, 0, 0x21, 7, 8, 9, 10, 11, 12, 13, 8, 0, 0x22, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{8, 0, 0x10, 0, 0, 0, 0x10, 0, 1, 2, 8, 255, 0x21, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{0x8C, 0, 0x00, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x8C, 0, 0x10, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add([]byte{3, 5, 0x30, 0, 0, 1, 0, 0x21, 8, 0, 0x10, 0x08, 1, 2, 3, 4, 5, 6})
	const maxRecv = 1 << 13
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, addr := range []Address{tester, {Mode: Extended, TxID: 0x7E0, RxID: 0x7E8, Source: 0x21, Target: 0x12}} {
			r := newReceiver(mustLink(t, addr), mustConfig(t, Options{MaxRecvLen: maxRecv, BlockSize: 2}))
			now := t0
			announced := map[int]bool{}
			for b := in; len(b) >= 2; {
				n, step := int(b[0]&0x7F), b[1]
				fd := b[0]&0x80 != 0
				b = b[2:]
				n = min(n, len(b))
				fr := canbus.Frame{ID: 0x7E8, FD: fd, Len: uint8(min(n, 64))}
				copy(fr.Data[:], b[:n])
				b = b[n:]
				var ev rxEvent
				if step == 255 {
					now = now.Add(time.Second)
					ev = r.expire(now)
				} else {
					now = now.Add(time.Duration(step) * time.Millisecond)
					ev = r.handleFrame(&fr, now)
				}
				if r.active {
					announced[r.size] = true
					if cap(r.buf) > r.size || r.size > maxRecv {
						t.Fatalf("buffer of %d bytes for a %d-byte message (MaxRecvLen %d)", cap(r.buf), r.size, maxRecv)
					}
				}
				if len(ev.msg) > 62 && !announced[len(ev.msg)] {
					t.Fatalf("delivered %d bytes that no first frame announced", len(ev.msg))
				}
				if ev.sendFC {
					if err := ev.fc.Validate(); err != nil {
						t.Fatalf("flow control %v: %v", ev.fc, err)
					}
				}
			}
		}
	})
}

// FuzzSender sends a message while feeding the sender arbitrary frames and
// time steps, read as FuzzReceiver's records. It must never panic, and
// every frame it hands out must be valid and carry the message in order.
func FuzzSender(f *testing.F) {
	f.Add(uint16(100), []byte{3, 0, 0x30, 0, 0})
	f.Add(uint16(5000), []byte{3, 0, 0x30, 2, 0xF3, 3, 0, 0x31, 0, 0, 3, 0, 0x30, 0, 0})
	f.Add(uint16(20), []byte{3, 0, 0x32, 0, 0})
	f.Fuzz(func(t *testing.T, size uint16, in []byte) {
		msg := payload(int(size)%5000+1, 0) // up to past the 4095-byte escape
		s := newSender(mustLink(t, tester), mustConfig(t, Options{TxDL: 16, WFTMax: 3}))
		now := t0
		var got []byte
		check := func(ev txEvent) {
			for ev.send {
				if err := ev.frame.Validate(); err != nil {
					t.Fatalf("frame %v: %v", ev.frame, err)
				}
				p := ev.frame.Payload()
				switch p[0] >> 4 {
				case 0:
					if p[0] == 0 {
						got = append(got, p[2:2+p[1]]...)
					} else {
						got = append(got, p[1:1+p[0]]...)
					}
				case 1:
					if p[0] == 0x10 && p[1] == 0 {
						got = append(got, p[6:]...)
					} else {
						got = append(got, p[2:]...)
					}
				case 2:
					got = append(got, p[1:]...)
				}
				ev = s.transmitted(now)
				if s.state == txConfirm {
					ev = s.confirmed(now)
				}
			}
			if ev.done && ev.err == nil && !bytes.HasPrefix(got, msg) {
				t.Fatalf("sent bytes do not start with the message")
			}
		}
		check(s.start(msg))
		for b := in; len(b) >= 2; {
			n, step := int(b[0]&0x7F), b[1]
			b = b[2:]
			n = min(n, len(b), 8)
			fr := canbus.Frame{ID: 0x7E8, Len: uint8(n)}
			copy(fr.Data[:], b[:n])
			b = b[n:]
			now = now.Add(time.Duration(step) * time.Millisecond)
			if step == 255 {
				check(s.expire(now))
			} else {
				check(s.handleFrame(&fr, now))
			}
		}
	})
}
