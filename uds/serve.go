package uds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// incoming is one request read by Serve.
type incoming struct {
	msg        []byte
	functional bool
	err        error
}

// Serve answers the requests that arrive on phys and, when it is not nil,
// on functional (the functionally addressed transport); all responses go
// out on phys. Requests are handled one at a time, in order. A handler
// that has not finished after half of P2 gets a responsePending (0x78)
// sent for it, and another every half P2* until it finishes, so the client
// keeps waiting; its final response is then sent even if it was
// suppressed, as ISO 14229-1 requires. The S3 timeout applies while Serve
// waits.
//
// Serve returns nil when ctx ends, and otherwise the transport error that
// stopped it. ISO-TP reception errors (a lost or malformed message) do not
// stop it; they go to ServerConfig.OnError.
func (s *Server) Serve(ctx context.Context, phys, functional Transport) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan incoming)
	go s.read(ctx, phys, false, in)
	if functional != nil {
		go s.read(ctx, functional, true, in)
	}
	s3 := time.NewTimer(s.cfg.S3)
	defer s3.Stop()
	for {
		var req incoming
		select {
		case <-ctx.Done():
			return nil
		case <-s3.C:
			s.expire()
			continue
		case req = <-in:
		}
		if req.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return req.err
		}
		if len(req.msg) == 0 {
			continue
		}
		if err := s.serveOne(ctx, phys, req); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s3.Reset(s.cfg.S3)
	}
}

// read passes the messages of t to in until ctx ends or t fails.
func (s *Server) read(ctx context.Context, t Transport, functional bool, in chan<- incoming) {
	for {
		msg, err := t.Recv(ctx)
		var ie *isotp.Error
		if err != nil && errors.As(err, &ie) {
			s.reportError(fmt.Errorf("uds server: a request was lost: %w", err))
			continue
		}
		select {
		case in <- incoming{msg: msg, functional: functional, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// serveOne handles one request, sending responsePending while its handler
// runs past P2/2, and sends the response.
func (s *Server) serveOne(ctx context.Context, phys Transport, req incoming) error {
	type result struct {
		resp  []byte
		send  bool
		after []func()
	}
	done := make(chan result, 1)
	go func() {
		resp, send, after := s.handle(ctx, req.msg, req.functional)
		done <- result{resp, send, after}
	}()
	t := s.cfg.Timing
	timer := time.NewTimer(t.P2 / 2)
	defer timer.Stop()
	pending := false
	var res result
	for waiting := true; waiting; {
		select {
		case res = <-done:
			waiting = false
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if err := phys.Send(ctx, []byte{NegativeResponseSID, req.msg[0], byte(ResponsePending)}); err != nil {
				return fmt.Errorf("uds server: sending responsePending: %w", err)
			}
			pending = true
			s.touch()
			timer.Reset(t.P2Star / 2)
		}
	}
	if res.send || pending && res.resp != nil {
		if err := phys.Send(ctx, res.resp); err != nil {
			return fmt.Errorf("uds server: sending the %v response: %w", SID(req.msg[0]), err)
		}
		s.touch()
	}
	for _, f := range res.after {
		f()
	}
	return nil
}
