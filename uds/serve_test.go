package uds

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// pipe is one end of an in-memory message link; what one end sends, the
// other receives, and sends record their time.
type pipe struct {
	in, out chan []byte
	sent    *[]stampedMsg
}

type stampedMsg struct {
	at  time.Time
	msg []byte
}

func newPipe() (tester, ecu *pipe) {
	a, b := make(chan []byte, 16), make(chan []byte, 16)
	var log []stampedMsg
	return &pipe{in: a, out: b}, &pipe{in: b, out: a, sent: &log}
}

func (p *pipe) Send(ctx context.Context, msg []byte) error {
	if p.sent != nil {
		*p.sent = append(*p.sent, stampedMsg{time.Now(), bytes.Clone(msg)})
	}
	select {
	case p.out <- bytes.Clone(msg):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipe) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m, ok := <-p.in:
		if !ok {
			return nil, io.EOF
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestServeSendsResponsePendingInTime defends the server's timing: the
// first responsePending goes out before P2, each next one before P2*
// after the last, and the suppressed positive response that follows them
// is sent all the same.
func TestServeSendsResponsePendingInTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(ServerConfig{Timing: Timing{P2: 40 * time.Millisecond, P2Star: 2 * time.Second}})
		slow(s, 7*time.Second)
		s.Register(ControlDTCSetting, Service{SubFunctions: map[byte]SubFunction{DTCSettingOff: {Handler: func(context.Context, *Request) ([]byte, error) {
			time.Sleep(time.Second)
			return nil, nil
		}}}})
		tester, ecu := newPipe()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Serve(ctx, ecu, nil) }()

		start := time.Now()
		tester.Send(ctx, h("31 01 0202"))
		var final []byte
		for final == nil {
			m, _ := tester.Recv(ctx)
			if !bytes.Equal(m, h("7F 31 78")) {
				final = m
			}
		}
		if !bytes.Equal(final, h("71 01 0202 00")) {
			t.Errorf("final response % X", final)
		}
		last := start
		for i, m := range *ecu.sent {
			gap, limit := m.at.Sub(last), 2*time.Second
			if i == 0 {
				limit = 40 * time.Millisecond
			}
			if gap >= limit {
				t.Errorf("message %d (% X) %v after the previous one, limit %v", i, m.msg, gap, limit)
			}
			last = m.at
		}
		if n := len(*ecu.sent); n < 4 {
			t.Errorf("%d messages for a 7 s routine", n)
		}

		tester.Send(ctx, h("85 82"))
		m, _ := tester.Recv(ctx)
		m2, _ := tester.Recv(ctx)
		if !bytes.Equal(m, h("7F 85 78")) || !bytes.Equal(m2, h("C5 02")) {
			t.Errorf("suppressed after pending: % X, % X", m, m2)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// TestServeStopsOnTransportEnd defends Serve's return: the transport's
// error when it ends, nil when the context does.
func TestServeStopsOnTransportEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewServer(ServerConfig{})
		_, ecu := newPipe()
		close(ecu.in)
		if err := s.Serve(context.Background(), ecu, nil); !errors.Is(err, io.EOF) {
			t.Errorf("Serve = %v, want io.EOF", err)
		}
	})
}
