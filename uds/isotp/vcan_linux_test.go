//go:build linux

package isotp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/internal/tshark"
	"github.com/ecu-kubelet/ecu-kubelet/sim/vcanvm"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
	"golang.org/x/sys/unix"
)

// The kernel's CAN_ISOTP socket interface (linux/can/isotp.h), which
// x/sys/unix does not define.
const (
	solCANISOTP     = unix.SOL_CAN_BASE + unix.CAN_ISOTP
	canISOTPOpts    = 1 // struct can_isotp_options
	canISOTPRecvFC  = 2 // struct can_isotp_fc_options
	canISOTPRxSTmin = 4 // __u32 nanoseconds
	canISOTPLLOpts  = 5 // struct can_isotp_ll_options

	flagExtendAddr   = 0x002
	flagTxPadding    = 0x004
	flagRxPadding    = 0x008
	flagChkPadLen    = 0x010
	flagChkPadData   = 0x020
	flagForceRxSTmin = 0x100
	flagRxExtAddr    = 0x200
	flagWaitTxDone   = 0x400

	canfdBRS = 0x01
)

// kernelMaxMessage is the largest message of Linux 6.1's CAN_ISOTP: the
// compiled-in MAX_MSG_LENGTH of net/can/isotp.c (a module parameter only
// from 6.2 on). A larger first frame is answered with FC OVFLW.
const kernelMaxMessage = 66000

// watchdog bounds each wait so that a lost message fails the test instead
// of hanging the VM; it is not a timing assertion.
const watchdog = 30 * time.Second

// sizes cross every boundary of the protocol: the classic single frame
// limit (7), the CAN FD single frame limit (62 with TX_DL 64), the 12-bit
// first frame length (4095), and the kernel's largest message.
var sizes = []int{1, 7, 8, 62, 63, 4095, 4096, 10000, kernelMaxMessage}

// kernelOpts are the settings of a kernel CAN_ISOTP socket.
type kernelOpts struct {
	flags              uint32
	extAddr, rxExtAddr byte
	txPad, rxPad       byte
	bs, stmin          byte   // the flow controls it sends
	forceRxSTmin       uint32 // ns; with flagForceRxSTmin it drops CFs that come faster
	fd                 bool   // CANFD_MTU, tx_dl 64, BRS
	txID, rxID         uint32 // with unix.CAN_EFF_FLAG for 29-bit identifiers
	iface              string
}

// kernelSocket is a CAN_ISOTP socket of the kernel under test.
type kernelSocket struct{ f *os.File }

func openKernel(t *testing.T, o kernelOpts) *kernelSocket {
	t.Helper()
	s, err := unix.Socket(unix.AF_CAN, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.CAN_ISOTP)
	if err != nil {
		t.Fatalf("CAN_ISOTP socket: %v", err)
	}
	// struct can_isotp_options: flags, frame_txtime (0 keeps the kernel's
	// 50 us between frames), ext_address, txpad_content, rxpad_content,
	// rx_ext_address.
	opts := make([]byte, 12)
	binary.NativeEndian.PutUint32(opts[0:], o.flags)
	opts[8], opts[9], opts[10], opts[11] = o.extAddr, o.txPad, o.rxPad, o.rxExtAddr
	set := func(name string, opt int, val []byte) {
		if err := unix.SetsockoptString(s, solCANISOTP, opt, string(val)); err != nil {
			unix.Close(s)
			t.Fatalf("setsockopt %s: %v", name, err)
		}
	}
	set("CAN_ISOTP_OPTS", canISOTPOpts, opts)
	// struct can_isotp_fc_options: bs, stmin, wftmax.
	set("CAN_ISOTP_RECV_FC", canISOTPRecvFC, []byte{o.bs, o.stmin, 0})
	if o.flags&flagForceRxSTmin != 0 {
		set("CAN_ISOTP_RX_STMIN", canISOTPRxSTmin, binary.NativeEndian.AppendUint32(nil, o.forceRxSTmin))
	}
	if o.fd {
		// struct can_isotp_ll_options: mtu, tx_dl, tx_flags.
		set("CAN_ISOTP_LL_OPTS", canISOTPLLOpts, []byte{72, 64, canfdBRS})
	}
	ifi, err := net.InterfaceByName(o.iface)
	if err != nil {
		unix.Close(s)
		t.Fatal(err)
	}
	if err := unix.Bind(s, &unix.SockaddrCAN{Ifindex: ifi.Index, RxID: o.rxID, TxID: o.txID}); err != nil {
		unix.Close(s)
		t.Fatalf("binding CAN_ISOTP rx %#x tx %#x: %v", o.rxID, o.txID, err)
	}
	k := &kernelSocket{f: os.NewFile(uintptr(s), "isotp")}
	t.Cleanup(func() { k.f.Close() })
	return k
}

// recv returns the next message, or the error the kernel reports for the
// one it lost (ETIMEDOUT, EILSEQ, EBADMSG).
func (k *kernelSocket) recv() ([]byte, error) {
	k.f.SetReadDeadline(time.Now().Add(watchdog))
	buf := make([]byte, kernelMaxMessage+1)
	n, err := k.f.Read(buf)
	return buf[:n], err
}

// send returns when the message is sent (CAN_ISOTP_WAIT_TX_DONE), with the
// error the kernel's sender met (EMSGSIZE for FC OVFLW, ECOMM for no FC).
func (k *kernelSocket) send(msg []byte) error {
	_, err := k.f.Write(msg)
	return err
}

// setup is one bus of the VM with a Conn of ours and a kernel socket
// addressed to each other.
type setup struct {
	name  string
	url   string
	iface string
	fd    bool
}

func (s setup) options(o isotp.Options) isotp.Options {
	if s.fd {
		o.TxDL, o.BRS = 64, true
	}
	return o
}

func (s setup) kernel(o kernelOpts) kernelOpts {
	o.iface, o.fd = s.iface, s.fd
	return o
}

// pair opens the bus, a Conn with addr and opts, and a kernel socket k.
func (s setup) pair(t *testing.T, addr isotp.Address, opts isotp.Options, k kernelOpts) (*isotp.Conn, *kernelSocket) {
	t.Helper()
	bus, err := canbus.Open(s.url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	record(t, bus, addr)
	c, err := isotp.Dial(bus, addr, s.options(opts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, openKernel(t, s.kernel(k))
}

// record watches the bus for the rest of the test and, if the test fails,
// logs what the bus carried: frames and gaps in the consecutive frames'
// sequence numbers per identifier, frames the recorder itself dropped, and
// the kernel's backlog drops. That tells a frame lost on the way from a
// protocol fault.
func record(t *testing.T, bus canbus.Bus, addr isotp.Address) {
	type counts struct {
		frames, cfs, gaps int
		next              byte
	}
	off := 0 // where the N_PCI byte is
	if addr.Mode == isotp.Extended || addr.Mode == isotp.Mixed {
		off = 1
	}
	sub := bus.Subscribe()
	ids := map[uint32]*counts{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range sub.Frames() {
			c := ids[f.ID]
			if c == nil {
				c = &counts{}
				ids[f.ID] = c
			}
			c.frames++
			p := f.Payload()
			if len(p) <= off {
				continue
			}
			switch pci := p[off]; pci >> 4 {
			case 1: // first frame
				c.next = 1
			case 2: // consecutive frame
				c.cfs++
				if pci&0xF != c.next {
					c.gaps++
				}
				c.next = (pci + 1) & 0xF
			}
		}
	}()
	t.Cleanup(func() {
		sub.Close()
		<-done
		if !t.Failed() {
			return
		}
		var b strings.Builder
		for id, c := range ids {
			fmt.Fprintf(&b, "\n  id %#x: %d frames, %d consecutive frames, %d sequence gaps", id, c.frames, c.cfs, c.gaps)
		}
		t.Logf("the bus carried, as this attachment saw it (%d frames lost to a full queue), kernel backlog drops %d:%s",
			sub.Dropped(), backlogDrops(), b.String())
	})
}

// backlogDrops sums the second column of /proc/net/softnet_stat: frames
// the kernel dropped because a CPU's receive backlog was full.
func backlogDrops() uint64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var n uint64
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			v, _ := strconv.ParseUint(f[1], 16, 64)
			n += v
		}
	}
	return n
}

// normal is the address pair most subtests use: we send on 0x7E0 and
// receive on 0x7E8, the kernel the other way round.
var normal = isotp.Address{Mode: isotp.Normal, TxID: 0x7E0, RxID: 0x7E8}

func normalKernel(o kernelOpts) kernelOpts {
	o.txID, o.rxID = 0x7E8, 0x7E0
	return o
}

func message(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + n)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), watchdog)
	t.Cleanup(cancel)
	return c
}

// oursToKernel sends msg with c and checks that k receives it.
func oursToKernel(c *isotp.Conn, k *kernelSocket, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- c.Send(ctx, msg) }()
	got, err := k.recv()
	if err != nil {
		return fmt.Errorf("kernel receiving %d bytes: %v (our Send: %v)", len(msg), err, <-sent)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("our Send of %d bytes: %v", len(msg), err)
	}
	if !equal(got, msg) {
		return fmt.Errorf("kernel received %d bytes, not the %d sent", len(got), len(msg))
	}
	return nil
}

// kernelToOurs sends msg with k and checks that c receives it.
func kernelToOurs(c *isotp.Conn, k *kernelSocket, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	sent := make(chan error, 1)
	go func() { sent <- k.send(msg) }()
	got, err := c.Recv(ctx)
	if err != nil {
		return fmt.Errorf("our Recv of %d bytes: %v (kernel send: %v)", len(msg), err, <-sent)
	}
	if err := <-sent; err != nil {
		return fmt.Errorf("kernel sending %d bytes: %v", len(msg), err)
	}
	if !equal(got, msg) {
		return fmt.Errorf("received %d bytes, not the %d the kernel sent", len(got), len(msg))
	}
	return nil
}

// both carries msg in both directions, one after the other.
func both(c *isotp.Conn, k *kernelSocket, msg []byte) error {
	if err := oursToKernel(c, k, msg); err != nil {
		return err
	}
	return kernelToOurs(c, k, msg)
}

func equal(a, b []byte) bool { return string(a) == string(b) }

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestVcan checks our ISO-TP against the Linux kernel's CAN_ISOTP on vcan
// in the microVM, in both directions, on classic CAN (vcan0) and CAN FD
// with TX_DL 64 and BRS (vcan1). One VM boot for all the subtests.
//
// The Capture subtests record ISO-TP between us and the kernel through our
// socketcan transport; back on the host, tshark's ISO 15765 dissector must
// decode and reassemble those captures without malformed or expert marks.
func TestVcan(t *testing.T) {
	if vcanvm.Run(t) {
		checkCaptures(t)
		return
	}
	enableTimestamps(t)
	for _, s := range []setup{
		{"Classic", "socketcan://" + vcanvm.ClassicIface, vcanvm.ClassicIface, false},
		{"FD", "socketcan://" + vcanvm.FDIface + "?fd=true", vcanvm.FDIface, true},
	} {
		t.Run(s.name, func(t *testing.T) { testVcan(t, s) })
	}
}

// enableTimestamps makes the kernel stamp every frame it receives, which
// CAN_ISOTP's CAN_ISOTP_FORCE_RXSTMIN needs to measure the gaps between
// consecutive frames (without stamps every gap is 0 and every frame
// dropped). The kernel stamps frames while any socket asks for stamps, and
// switches stamping on in a deferred work item, so this runs first.
func enableTimestamps(t *testing.T) {
	s, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.CAN_RAW)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s) })
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMP, 1); err != nil {
		t.Fatalf("SO_TIMESTAMP: %v", err)
	}
}

// strict makes the kernel reject frames not padded with 0xCC to 8 bytes
// (or the next CAN FD length), the padding our sender uses by default.
var strict = kernelOpts{flags: flagRxPadding | flagChkPadLen | flagChkPadData | flagWaitTxDone, rxPad: 0xCC}

func testVcan(t *testing.T, s setup) {
	t.Run("OursToKernel", func(t *testing.T) {
		c, k := s.pair(t, normal, isotp.Options{}, normalKernel(strict))
		for _, n := range sizes {
			check(t, oursToKernel(c, k, message(n)))
		}
	})
	t.Run("Capture", func(t *testing.T) {
		c, k := s.pair(t, normal, isotp.Options{}, normalKernel(kernelOpts{flags: flagWaitTxDone}))
		vcanvm.Export(t, s.name+".pcap", capture(t, s, func() {
			for _, n := range captureSizes {
				check(t, oursToKernel(c, k, message(n)))
				check(t, kernelToOurs(c, k, message(n)))
			}
		}))
	})
	t.Run("KernelToOurs", func(t *testing.T) {
		c, k := s.pair(t, normal, isotp.Options{}, normalKernel(kernelOpts{flags: flagWaitTxDone}))
		for _, n := range sizes {
			check(t, kernelToOurs(c, k, message(n)))
		}
	})
	t.Run("Unpadded", func(t *testing.T) {
		// Without RX_PADDING, CHK_PAD_LEN makes the kernel insist on the
		// shortest frames; and the kernel pads with 0xAA towards us.
		c, k := s.pair(t, normal, isotp.Options{NoPadding: true},
			normalKernel(kernelOpts{flags: flagChkPadLen | flagTxPadding | flagWaitTxDone, txPad: 0xAA}))
		for _, n := range []int{1, 5, 7, 8, 13, 62, 63, 100, 4096} {
			check(t, both(c, k, message(n)))
		}
	})
	t.Run("FlowControl", func(t *testing.T) {
		// The kernel asks for blocks of 3 frames 100 us apart and drops
		// consecutive frames that come faster; we ask for blocks of 5.
		k := strict
		k.flags |= flagForceRxSTmin
		k.bs, k.stmin, k.forceRxSTmin = 3, 0xF1, 100_000
		c, ks := s.pair(t, normal, isotp.Options{BlockSize: 5, STmin: 0xF1}, normalKernel(k))
		for _, n := range []int{63, 4096} {
			check(t, both(c, ks, message(n)))
		}
	})
	t.Run("KernelCatchesSTminViolation", func(t *testing.T) {
		// The check FlowControl relies on is live: when the kernel's flow
		// control allows STmin 0 but it enforces 10 ms, it drops
		// consecutive frames of our burst and sees a gap in the sequence
		// numbers (EILSEQ), or waits for the dropped last one (ETIMEDOUT).
		// 10 ms is far above the gaps of a burst even on a slow VM.
		k := strict
		k.flags |= flagForceRxSTmin
		k.forceRxSTmin = 10_000_000
		c, ks := s.pair(t, normal, isotp.Options{}, normalKernel(k))
		sent, cx := make(chan error, 1), ctx(t)
		go func() { sent <- c.Send(cx, message(4096)) }()
		if _, err := ks.recv(); !errors.Is(err, unix.EILSEQ) && !errors.Is(err, unix.ETIMEDOUT) {
			t.Errorf("kernel receiving a burst against its forced STmin: %v; want EILSEQ or ETIMEDOUT", err)
		}
		<-sent
	})
	t.Run("FullDuplex", func(t *testing.T) {
		c, k := s.pair(t, normal, isotp.Options{}, normalKernel(strict))
		msg := message(10000)
		in := make(chan error, 1)
		go func() { in <- kernelToOurs(c, k, msg) }()
		out := oursToKernel(c, k, msg)
		check(t, errors.Join(out, <-in))
	})
	t.Run("Addressing", func(t *testing.T) {
		tests := []struct {
			name string
			addr isotp.Address
			k    kernelOpts
		}{
			{"NormalFixed29", isotp.Address{Mode: isotp.NormalFixed, Source: 0xF1, Target: 0x10},
				kernelOpts{txID: 0x18DAF110 | unix.CAN_EFF_FLAG, rxID: 0x18DA10F1 | unix.CAN_EFF_FLAG}},
			{"Extended", isotp.Address{Mode: isotp.Extended, TxID: 0x6F1, RxID: 0x610, Source: 0xF1, Target: 0x10},
				kernelOpts{txID: 0x610, rxID: 0x6F1, flags: flagExtendAddr | flagRxExtAddr, extAddr: 0xF1, rxExtAddr: 0x10}},
			{"Mixed11", isotp.Address{Mode: isotp.Mixed, TxID: 0x6F1, RxID: 0x610, AddressExtension: 0x42},
				kernelOpts{txID: 0x610, rxID: 0x6F1, flags: flagExtendAddr, extAddr: 0x42}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.k.flags |= flagWaitTxDone
				c, k := s.pair(t, tt.addr, isotp.Options{}, tt.k)
				for _, n := range []int{6, 61, 4096} {
					check(t, both(c, k, message(n)))
				}
			})
		}
	})
	t.Run("KernelAnswersOverflow", func(t *testing.T) {
		// One byte more than the kernel can take: it answers the first
		// frame with FC OVFLW, and our Send must report ErrOverflow. The
		// socket must still take the largest message afterwards.
		c, k := s.pair(t, normal, isotp.Options{}, normalKernel(strict))
		err := c.Send(ctx(t), message(kernelMaxMessage+1))
		if !errors.Is(err, isotp.ErrOverflow) {
			t.Fatalf("Send of %d bytes to the kernel: %v; want ErrOverflow", kernelMaxMessage+1, err)
		}
		check(t, oursToKernel(c, k, message(kernelMaxMessage)))
	})
	t.Run("WeAnswerOverflow", func(t *testing.T) {
		c, k := s.pair(t, normal, isotp.Options{MaxRecvLen: 4095}, normalKernel(kernelOpts{flags: flagWaitTxDone}))
		sent := make(chan error, 1)
		go func() { sent <- k.send(message(4096)) }()
		if _, err := c.Recv(ctx(t)); !errors.Is(err, isotp.ErrOverflow) {
			t.Errorf("our Recv of 4096 bytes with MaxRecvLen 4095: %v; want ErrOverflow", err)
		}
		if err := <-sent; !errors.Is(err, unix.EMSGSIZE) {
			t.Errorf("kernel send after our FC OVFLW: %v; want EMSGSIZE", err)
		}
		check(t, kernelToOurs(c, k, message(4095)))
	})
}

// captureSizes are the messages of the Capture subtests, each sent both ways:
// single frames at the classic and the CAN FD limit, and segmented messages
// with 12-bit and 32-bit first frame lengths.
var captureSizes = []int{7, 62, 63, 4095, 4096, 5000}

// markerID ends a capture: a frame the recorder sees after every frame of the
// transfers before it, since one socket receives frames in bus order.
const markerID = 0x7FF

// capture records as pcap, through a socketcan attachment of its own, what
// the bus carries while run runs.
func capture(t *testing.T, s setup, run func()) []byte {
	t.Helper()
	bus, err := canbus.Open(s.url, canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	var buf bytes.Buffer
	w, err := canbus.NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	sub := bus.Subscribe()
	done := make(chan error, 1)
	go func() {
		for f := range sub.Frames() {
			if f.ID == markerID {
				done <- nil
				return
			}
			if err := w.WriteFrame(time.Now(), f); err != nil {
				done <- err
				return
			}
		}
		done <- errors.New("subscription closed before the end marker")
	}()
	run()
	if err := bus.Send(ctx(t), canbus.Frame{ID: markerID}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
	case <-time.After(watchdog):
		t.Fatal("capture: the end marker never came back from the bus")
	}
	if n := sub.Dropped(); n > 0 {
		t.Fatalf("capture lost %d frames to a full queue", n)
	}
	return buf.Bytes()
}

// checkCaptures has tshark decode the captures the VM exported: every
// message of captureSizes both ways, and all segmented ones reassembled.
func checkCaptures(t *testing.T) {
	if t.Failed() {
		return
	}
	tshark.Path(t)
	files := vcanvm.Files(t)
	for _, c := range []struct {
		name    string
		sfLimit int // the largest single frame message
	}{{"Classic.pcap", 7}, {"FD.pcap", 62}} {
		data := files[c.name]
		if data == nil {
			t.Errorf("the VM exported no %s", c.name)
			continue
		}
		path := filepath.Join(t.TempDir(), c.name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		segmented := 0
		for _, n := range captureSizes {
			if n > c.sfLimit {
				segmented += 2
			}
		}
		t.Run("Tshark"+strings.TrimSuffix(c.name, ".pcap"), func(t *testing.T) {
			isotp.CheckTshark(t, path, -1, 2*len(captureSizes), segmented)
		})
	}
}
