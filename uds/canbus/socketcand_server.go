package canbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ErrServerClosed is returned by SocketcandServer.Serve after Close.
var ErrServerClosed = errors.New("canbus: socketcand server closed")

// maxPendingEcho bounds the frames a session remembers having sent until
// the bus echoes them back (see scConn.sent). A session's subscription
// holds up to a queue of echoes not yet forwarded, so the bound must
// exceed the queue, or a fast sender would get its own frames back.
const maxPendingEcho = 2 * DefaultQueueLen

// SocketcandServer serves named buses to socketcand clients in raw mode,
// so that other processes and outside tools (python-can's socketcand
// interface, this package's DialSocketcand) share them over TCP. Each
// client opening a bus receives every frame of the bus except its own,
// as from socketcand, and may send frames onto it.
//
// The server does not own the buses: Close disconnects clients but leaves
// the buses open.
type SocketcandServer struct {
	buses map[string]Bus
	log   *zap.Logger
	// ctx ends with Close, releasing sessions blocked sending on a bus
	// whose transmit queue is full.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// NewSocketcandServer returns a server for buses, keyed by the name clients
// open. Names have 1 to 16 characters without spaces or '<' '>', the limit
// of socketcand's protocol. log receives one line per client session and
// per client error; nil discards them.
func NewSocketcandServer(buses map[string]Bus, log *zap.Logger) (*SocketcandServer, error) {
	if len(buses) == 0 {
		return nil, errors.New("canbus: socketcand server needs at least one bus to serve")
	}
	for name, b := range buses {
		if name == "" || len(name) > maxBusNameLen || strings.ContainsAny(name, " \t\r\n<>") {
			return nil, fmt.Errorf("canbus: socketcand bus name %q must have 1 to %d characters without spaces or '<' '>'", name, maxBusNameLen)
		}
		if b == nil {
			return nil, fmt.Errorf("canbus: socketcand bus %q is nil", name)
		}
	}
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &SocketcandServer{
		buses:     maps.Clone(buses),
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}, nil
}

// Serve accepts clients on ln until Close, then returns ErrServerClosed;
// it returns other errors of ln.Accept as they are. Serve closes ln.
func (s *SocketcandServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			return fmt.Errorf("canbus: socketcand server on %s: %w", ln.Addr(), err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return ErrServerClosed
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

// Close stops every Serve, disconnects every client and waits until their
// sessions have ended.
func (s *SocketcandServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// scConn is one client session.
type scConn struct {
	conn net.Conn
	log  *zap.Logger

	wmu sync.Mutex // one message at a time on conn

	// sent holds frames this client sent that the bus has not yet echoed
	// to the session's own subscription. socketcand does not return a
	// client's own frames (CAN_RAW_RECV_OWN_MSGS is off), and clients
	// such as DialSocketcand deliver them locally, so the echo is dropped.
	// Frames are matched by value: of two equal frames either may be
	// dropped, which leaves the same stream. Bounded, oldest first, in
	// case a bus loses frames.
	smu  sync.Mutex
	sent []Frame
}

func (c *scConn) write(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(msg)
	return err
}

func (c *scConn) reply(format string, args ...any) error {
	return c.write(fmt.Appendf(nil, format, args...))
}

// refuse answers a command with "< error TEXT >"; TEXT must not contain
// '<' or '>'.
func (c *scConn) refuse(text string) error {
	return c.reply("< error %s >", text)
}

func (s *SocketcandServer) serveConn(conn net.Conn) {
	c := &scConn{conn: conn, log: s.log.With(zap.Stringer("client", conn.RemoteAddr()))}
	defer conn.Close()
	var (
		busName string
		bus     Bus
		stopRaw func() // ends raw mode's frame forwarding
	)
	defer func() {
		if stopRaw != nil {
			stopRaw()
		}
	}()
	if err := c.write([]byte("< hi >")); err != nil {
		c.log.Debug("socketcand client gone before greeting", zap.Error(err))
		return
	}
	r := newMsgReader(conn)
	for {
		raw, err := r.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				c.log.Debug("socketcand client disconnected", zap.String("bus", busName))
			} else {
				// The framing is lost; nothing further can be understood.
				c.log.Info("socketcand client dropped", zap.String("bus", busName), zap.Error(err))
				c.refuse("protocol violation, closing")
				linger(conn)
			}
			return
		}
		m, err := parseMessage(raw)
		if err != nil {
			c.log.Info("socketcand client sent a bad message", zap.Error(err))
			if c.refuse("malformed "+sanitize(raw)) != nil {
				return
			}
			continue
		}
		var werr error
		switch {
		case m.kind == msgEcho:
			werr = c.write([]byte("< echo >"))
		case bus == nil && m.kind == msgOpen:
			b, ok := s.buses[m.text]
			if !ok {
				// As socketcand: refuse and end the session.
				c.log.Info("socketcand client asked for an unknown bus", zap.String("bus", m.text))
				c.refuse("could not open bus")
				linger(conn)
				return
			}
			busName, bus = m.text, b
			c.log = c.log.With(zap.String("bus", busName))
			c.log.Debug("socketcand client opened a bus")
			werr = c.write([]byte("< ok >"))
		case bus == nil:
			werr = c.refuse("unknown command, open a bus first")
		case m.kind == msgRawMode:
			if stopRaw == nil {
				stopRaw = c.forward(bus)
			}
			werr = c.write([]byte("< ok >"))
		case m.kind == msgBCMMode:
			if stopRaw != nil {
				stopRaw()
				stopRaw = nil
			}
			werr = c.write([]byte("< ok >"))
		case m.kind == msgSend:
			werr = c.send(s.ctx, bus, m.frame, stopRaw != nil)
		case stopRaw == nil:
			werr = c.refuse("only rawmode is supported")
		default:
			werr = c.refuse("unknown command")
		}
		if werr != nil {
			c.log.Debug("socketcand client gone", zap.Error(werr))
			return
		}
	}
}

// linger lets the peer read the last reply before the connection closes:
// closing a TCP socket with unread input resets the connection, and the
// reset can destroy the reply in flight. It waits at most a second.
func linger(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(conn, 1<<16))
}

// sanitize makes raw fit an error text: at most 40 bytes, no '<' or '>'.
func sanitize(raw []byte) string {
	s := strings.Map(func(r rune) rune {
		if r == '<' || r == '>' || r < 0x20 || r > 0x7E {
			return ' '
		}
		return r
	}, quoteStart(raw))
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.TrimSpace(s)
}

// send puts f on the bus for the client. socketcand sends in BCM mode
// too, so send does not depend on raw mode; only in raw mode does the
// bus's echo come back and need dropping.
func (c *scConn) send(ctx context.Context, bus Bus, f Frame, raw bool) error {
	if raw {
		c.smu.Lock()
		if len(c.sent) == maxPendingEcho {
			c.sent = c.sent[1:]
		}
		c.sent = append(c.sent, f)
		c.smu.Unlock()
	}
	if err := bus.Send(ctx, f); err != nil {
		c.smu.Lock()
		if i := slices.Index(c.sent, f); i >= 0 {
			c.sent = slices.Delete(c.sent, i, i+1)
		}
		c.smu.Unlock()
		c.log.Info("socketcand client's frame not sent", zap.Stringer("frame", f), zap.Error(err))
		return c.refuse("send failed, " + sanitize([]byte(err.Error())))
	}
	return nil
}

// isOwnEcho reports whether f is the bus's echo of a frame this client
// sent, and forgets that frame if so.
func (c *scConn) isOwnEcho(f *Frame) bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	i := slices.Index(c.sent, *f)
	if i < 0 {
		return false
	}
	c.sent = slices.Delete(c.sent, i, i+1)
	return true
}

// forward starts sending the bus's frames to the client and returns the
// function that stops it and waits.
func (c *scConn) forward(bus Bus) func() {
	sub := bus.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 0, 4096)
		frames := sub.Frames()
		broken := false
		for f := range frames {
			// Batch what is already queued into one write. Each message
			// starts with a space: python-can 4.1 drops the byte after
			// a message split across reads, which must not be a '<'.
			buf = buf[:0]
			for {
				if !c.isOwnEcho(&f) {
					buf = append(buf, ' ')
					buf = appendReceived(buf, &f, time.Now())
				}
				if len(buf) > cap(buf)-maxMessageLen {
					break
				}
				var ok bool
				select {
				case f, ok = <-frames:
				default:
				}
				if !ok {
					break
				}
			}
			if len(buf) == 0 || broken {
				continue
			}
			if err := c.write(buf); err != nil {
				// The session's reader sees the broken connection too
				// and ends the session; drain until it does.
				c.log.Debug("socketcand client gone while forwarding", zap.Error(err))
				broken = true
			}
		}
	}()
	return func() {
		sub.Close()
		<-done
		c.smu.Lock()
		c.sent = nil
		c.smu.Unlock()
		if n := sub.Dropped(); n > 0 {
			c.log.Warn("socketcand client too slow for the bus; frames dropped", zap.Uint64("dropped", n))
		}
	}
}
