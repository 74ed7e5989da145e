//go:build linux

package canbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.einride.tech/can"
	"go.einride.tech/can/pkg/socketcan"
	"golang.org/x/sys/unix"
)

// socketRcvBuf is the receive buffer asked of each socket: the kernel
// doubles it for its bookkeeping and charges about 700 bytes per frame, so
// it holds a few thousand frames, more than a Hub subscription's queue.
const socketRcvBuf = 1 << 20

// openSocketCAN attaches to a SocketCAN interface with a CAN_RAW socket.
// Classic buses read and write through go.einride.tech/can's socketcan
// Receiver and Transmitter; with cfg.FD the socket also has
// CAN_RAW_FD_FRAMES, which einride does not offer, and carries both classic
// and FD frames in the kernel's own layout (decodeSocketCAN). Without fd the
// socket sees only the classic frames, even on an FD interface.
//
// Local loopback (see Bus) is the kernel's: the socket has
// CAN_RAW_RECV_OWN_MSGS, so the frames this attachment sends come back to
// it through the same receive queue as everyone else's, in the order the
// bus carried them, and every subscription sees every frame once. (einride's
// Dial cannot set that option, so the socket is opened here.) The kernel's
// loopback to other sockets stays on.
//
// Bit rates are the interface's (set with ip link); cfg.Bitrate and
// cfg.DataBitrate are ignored here.
func openSocketCAN(iface string, cfg Config) (Bus, error) {
	name := "socketcan://" + iface
	if err := probeAFCAN(); err != nil {
		return nil, fmt.Errorf("canbus: %s: %w", name, err)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("canbus: %s: %w (%v); a virtual bus is made with `ip link add dev %s type vcan && ip link set %s up`", name, ErrNoInterface, err, iface, iface)
	}
	switch {
	case ifi.MTU != canMTU && ifi.MTU != canfdMTU:
		return nil, fmt.Errorf("canbus: %s: MTU %d is not a CAN interface's (16 for classic CAN, 72 for CAN FD)", name, ifi.MTU)
	case cfg.FD && ifi.MTU != canfdMTU:
		return nil, fmt.Errorf("canbus: %s: opened with fd=true, but the interface carries only classic CAN (MTU %d); enable CAN FD with `ip link set %s mtu 72` or open it without fd", name, ifi.MTU, iface)
	}
	f, err := rawSocket(ifi, cfg.FD)
	if err != nil {
		return nil, fmt.Errorf("canbus: %s: %v", name, err)
	}
	var l socketcanLink = &fdLink{f: f}
	if !cfg.FD {
		l = &classicLink{f: f, rx: socketcan.NewReceiver(f), tx: socketcan.NewTransmitter(fileConn{f})}
	}
	b := &socketcanBus{name: name, fd: cfg.FD, link: l, done: make(chan struct{})}
	b.hub.QueueLen = cfg.QueueLen
	go b.receive()
	return b, nil
}

// probeAFCAN checks that the kernel can open a CAN_RAW socket, so that a
// missing protocol is reported as such rather than as a missing interface
// (without AF_CAN no CAN interface can exist either).
func probeAFCAN() error {
	fd, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.CAN_RAW)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPROTONOSUPPORT) {
			return fmt.Errorf("%w: %v; load the can and can-raw kernel modules (modprobe can-raw), or reach a bus on another machine with socketcand://", ErrNoAFCAN, err)
		}
		return fmt.Errorf("opening a CAN_RAW socket: %v", err)
	}
	unix.Close(fd)
	return nil
}

// socketcanLink is one CAN_RAW socket: classic through einride, or FD.
type socketcanLink interface {
	recv() (Frame, error) // blocks for the next frame
	send(f *Frame) error
	setWriteDeadline(t time.Time) error
	close() error
}

// socketcanBus is a Bus on one CAN_RAW socket.
type socketcanBus struct {
	name   string // socketcan://IFACE, for errors
	fd     bool
	link   socketcanLink
	hub    Hub
	sendMu sync.Mutex // one frame at a time, in the order Send was called
	closed atomic.Bool
	done   chan struct{} // closed when receive returns
}

func (b *socketcanBus) Subscribe(filters ...Filter) *Subscription {
	return b.hub.Subscribe(filters...)
}

// Send writes f to the socket. The kernel accepts it at once on vcan; on a
// controller whose transmit queue is full it answers ENOBUFS rather than
// blocking, and Send waits and retries until the frame is queued or ctx
// ends. The frame reaches this attachment's subscriptions when the kernel
// echoes it, as it reaches everyone else's.
func (b *socketcanBus) Send(ctx context.Context, f Frame) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Error {
		return fmt.Errorf("canbus: %s: error frames are reported by controllers and cannot be sent: %w", b.name, ErrFlags)
	}
	if f.FD && !b.fd {
		return fmt.Errorf("canbus: %s: CAN FD frame on a bus opened without fd=true (open %s?fd=true on an interface with MTU 72): %w", b.name, b.name, ErrFlags)
	}
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx.Done() == nil {
		return b.write(ctx, &f)
	}
	// A write blocks while the socket's send buffer is full. Ending ctx
	// moves the write deadline into the past, which makes it return.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		b.link.setWriteDeadline(time.Unix(1, 0))
	})
	err := b.write(ctx, &f)
	if !stop() {
		<-interrupted
		b.link.setWriteDeadline(time.Time{})
	}
	return err
}

func (b *socketcanBus) write(ctx context.Context, f *Frame) error {
	backoff := 100 * time.Microsecond
	for {
		err := b.link.send(f)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// The interface's transmit queue is full: the kernel drops
			// rather than blocks. Wait for the controller to drain it.
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			backoff = min(2*backoff, 10*time.Millisecond)
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed):
			return ErrClosed
		default:
			return fmt.Errorf("canbus: %s: sending %v: %w", b.name, f, err)
		}
	}
}

// receive hands every frame the socket reads to the hub until the bus is
// closed or the interface disappears.
func (b *socketcanBus) receive() {
	defer close(b.done)
	for {
		f, err := b.link.recv()
		if err == nil {
			b.hub.Deliver(f)
			continue
		}
		if b.closed.Load() {
			return
		}
		if errors.Is(err, unix.ENETDOWN) {
			continue // the interface went down; frames flow again once it is up
		}
		// The interface was removed (ENODEV) or the socket failed: end
		// the subscriptions so that readers do not wait forever.
		b.hub.Close()
		return
	}
}

// Close closes the socket and every subscription.
func (b *socketcanBus) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	err := b.link.close()
	<-b.done
	b.hub.Close()
	if err != nil {
		return fmt.Errorf("canbus: %s: closing: %v", b.name, err)
	}
	return nil
}

// rawSocket opens a CAN_RAW socket bound to ifi that receives its own
// frames and error frames and, with fd, CAN FD frames.
func rawSocket(ifi *net.Interface, fd bool) (*os.File, error) {
	s, err := unix.Socket(unix.AF_CAN, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.CAN_RAW)
	if err != nil {
		return nil, fmt.Errorf("opening a CAN_RAW socket: %v", err)
	}
	opts := []struct {
		what     string
		opt, val int
		fdOnly   bool
	}{
		{"receiving own frames (CAN_RAW_RECV_OWN_MSGS)", unix.CAN_RAW_RECV_OWN_MSGS, 1, false},
		{"receiving error frames (CAN_RAW_ERR_FILTER)", unix.CAN_RAW_ERR_FILTER, unix.CAN_ERR_MASK, false},
		{"enabling CAN FD frames (CAN_RAW_FD_FRAMES)", unix.CAN_RAW_FD_FRAMES, 1, true},
	}
	for _, o := range opts {
		if o.fdOnly && !fd {
			continue
		}
		if err := unix.SetsockoptInt(s, unix.SOL_CAN_RAW, o.opt, o.val); err != nil {
			unix.Close(s)
			return nil, fmt.Errorf("%s: %v", o.what, err)
		}
	}
	// The default receive buffer holds about 300 frames, a few
	// milliseconds of a burst on vcan; a reader descheduled that long
	// would lose frames. Raise it to match the Hub's queue. Forcing it past
	// net.core.rmem_max needs CAP_NET_ADMIN; without, the kernel caps it.
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketRcvBuf); err != nil {
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, socketRcvBuf)
	}
	if err := unix.Bind(s, &unix.SockaddrCAN{Ifindex: ifi.Index}); err != nil {
		unix.Close(s)
		return nil, fmt.Errorf("binding to %s: %v", ifi.Name, err)
	}
	// A non-blocking descriptor makes os.NewFile use the runtime's poller,
	// so that Close and write deadlines interrupt blocked calls.
	return os.NewFile(uintptr(s), "socketcan://"+ifi.Name), nil
}

// classicLink is a CAN_RAW socket read and written by einride's socketcan
// Receiver and Transmitter.
type classicLink struct {
	f  *os.File
	rx *socketcan.Receiver
	tx *socketcan.Transmitter
}

func (l *classicLink) recv() (Frame, error) {
	if !l.rx.Receive() {
		err := l.rx.Err()
		if err == nil {
			err = io.EOF
		}
		// The receiver stops at its first error; a new one reads on.
		l.rx = socketcan.NewReceiver(l.f)
		return Frame{}, err
	}
	if l.rx.HasErrorFrame() {
		e := l.rx.ErrorFrame()
		f := Frame{Error: true, ID: uint32(e.ErrorClass) & unix.CAN_ERR_MASK, Len: 8}
		f.Data[0] = e.LostArbitrationBit
		f.Data[1] = uint8(e.ControllerError)
		f.Data[2] = uint8(e.ProtocolError)
		f.Data[3] = uint8(e.ProtocolViolationErrorLocation)
		f.Data[4] = uint8(e.TransceiverError)
		copy(f.Data[5:8], e.ControllerSpecificInformation[:])
		return f, nil
	}
	cf := l.rx.Frame()
	f := Frame{ID: cf.ID, Extended: cf.IsExtended, RTR: cf.IsRemote, Len: min(cf.Length, MaxClassicLen)}
	if !f.RTR {
		copy(f.Data[:f.Len], cf.Data[:])
	}
	return f, nil
}

func (l *classicLink) send(f *Frame) error {
	cf := can.Frame{ID: f.ID, Length: f.Len, IsExtended: f.Extended, IsRemote: f.RTR}
	copy(cf.Data[:], f.Payload())
	// No deadline from ctx: Send interrupts the write itself, and einride
	// would leave a deadline set on the socket for later frames.
	return l.tx.TransmitFrame(context.Background(), cf)
}

func (l *classicLink) setWriteDeadline(t time.Time) error { return l.f.SetWriteDeadline(t) }
func (l *classicLink) close() error                       { return l.f.Close() }

// fileConn is the socket as the net.Conn that einride's Transmitter takes.
type fileConn struct{ *os.File }

func (fileConn) LocalAddr() net.Addr  { return nil }
func (fileConn) RemoteAddr() net.Addr { return nil }

// fdLink is a CAN_RAW socket with CAN_RAW_FD_FRAMES: reads and writes are
// a struct can_frame (16 bytes) or a struct canfd_frame (72 bytes).
type fdLink struct {
	f   *os.File
	buf [canfdMTU]byte // for send, under the bus's sendMu
}

func (l *fdLink) recv() (Frame, error) {
	var buf [canfdMTU]byte
	for {
		n, err := l.f.Read(buf[:])
		if err != nil {
			return Frame{}, err
		}
		if f, err := decodeSocketCAN(buf[:n], binary.NativeEndian); err == nil {
			return f, nil
		}
		// Not a frame the kernel should ever hand out: skip it.
	}
}

func (l *fdLink) send(f *Frame) error {
	_, err := l.f.Write(encodeSocketCAN(f, &l.buf, binary.NativeEndian))
	return err
}

func (l *fdLink) setWriteDeadline(t time.Time) error { return l.f.SetWriteDeadline(t) }
func (l *fdLink) close() error                       { return l.f.Close() }
