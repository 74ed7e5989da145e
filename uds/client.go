package uds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// Transport carries whole UDS messages to and from one peer. An
// *isotp.Conn is one; tests may use anything that keeps message
// boundaries. Send and Recv may be called from different goroutines.
type Transport interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
}

// Timing defaults (ISO 14229-2:2013, table 4, for the default session and
// for a server that has not told its own values yet).
const (
	// DefaultP2 is P2server_max: the server starts its response within it.
	DefaultP2 = 50 * time.Millisecond
	// DefaultP2Star is P2*server_max: after a responsePending the server
	// sends its next response within it.
	DefaultP2Star = 5 * time.Second
	// DefaultMargin is added to P2 and P2* for the transport's share of the
	// wait (ISO 14229-2's ΔP2): the request's and the response's frames on
	// the bus and the gateway's delays. The client sees a response only
	// once ISO-TP has received all of it, so the margin also covers a few
	// hundred bytes of response at 500 kbit/s.
	DefaultMargin = 200 * time.Millisecond
	// DefaultTimeout bounds one request including every responsePending,
	// when the context has no earlier deadline. Erasing a large flash
	// takes tens of seconds on real ECUs.
	DefaultTimeout = 2 * time.Minute
	// DefaultS3Client is how often KeepAlive sends TesterPresent: S3client
	// of ISO 14229-2, well inside the server's S3 of 5 s.
	DefaultS3Client = 2 * time.Second
	// DefaultS3Server is the server's session timeout (S3server).
	DefaultS3Server = 5 * time.Second
	// DefaultTransferRetries is how often TransferData sends a block again
	// after its response was lost.
	DefaultTransferRetries = 2
)

// ClientOptions configure a Client. The zero value works for one ECU on a
// physically addressed transport.
type ClientOptions struct {
	// Functional sends functionally addressed requests (Client.Functional)
	// and, when set, KeepAlive's TesterPresent. For ISO-TP: an isotp.Conn
	// dialled with Address.Functional set, such as TxID 0x7DF.
	Functional Transport
	// P2 and P2Star are the server timing assumed until a
	// DiagnosticSessionControl response reports the server's own; zero
	// means DefaultP2 and DefaultP2Star.
	P2, P2Star time.Duration
	// Margin is added to P2 and P2* when waiting; zero means DefaultMargin.
	Margin time.Duration
	// Timeout bounds each request, responsePending answers included; zero
	// means DefaultTimeout. A context deadline that comes sooner wins.
	Timeout time.Duration
	// TransferRetries is how many times TransferData repeats a block whose
	// response did not come; zero means DefaultTransferRetries, negative
	// none.
	TransferRetries int
	// DIDLengths gives the length of the data of each DID the client may
	// read several at once: ReadDataByIdentifier needs it to split one
	// response into records. StandardDIDLengths is consulted after it.
	DIDLengths map[uint16]int
	// Trace, when set, sees every message sent (sent true) and received,
	// for a session transcript. It must not retain msg.
	Trace func(sent bool, msg []byte)
}

// Client is a UDS client (a tester) for one ECU. Its methods may be
// called from several goroutines; requests go out one at a time.
type Client struct {
	t    Transport
	opts ClientOptions

	busy chan struct{} // holds a token while a request is in progress
	send chan struct{} // holds a token while a message is being sent

	mu       sync.Mutex
	timing   Timing
	lastSent time.Time // the last request sent on any transport, for KeepAlive
}

// NewClient returns a client that speaks to one ECU through t, a
// physically addressed transport.
func NewClient(t Transport, opts ClientOptions) *Client {
	if opts.P2 <= 0 {
		opts.P2 = DefaultP2
	}
	if opts.P2Star <= 0 {
		opts.P2Star = DefaultP2Star
	}
	if opts.Margin <= 0 {
		opts.Margin = DefaultMargin
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.TransferRetries == 0 {
		opts.TransferRetries = DefaultTransferRetries
	}
	return &Client{
		t:      t,
		opts:   opts,
		busy:   make(chan struct{}, 1),
		send:   make(chan struct{}, 1),
		timing: Timing{P2: opts.P2, P2Star: opts.P2Star},
	}
}

// Timing returns the server timing the client waits with: the values of
// the last DiagnosticSessionControl response, or the defaults.
func (c *Client) Timing() Timing {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timing
}

func (c *Client) setTiming(t Timing) {
	c.mu.Lock()
	c.timing = t
	c.mu.Unlock()
}

// Do sends one request and returns the ECU's positive response, SID
// included. A negative response is a *NegativeResponse; responsePending
// answers are waited through; a response to another service is a
// *ResponseError; no response is a *TimeoutError. When the request's
// sub-function has SuppressPositiveResponse set, Do waits P2 for a
// negative response and returns nil, nil if none came.
//
// Do checks only that the response echoes the service; the service
// methods check the rest (sub-function, DID, counter). Use them where one
// exists.
func (c *Client) Do(ctx context.Context, req []byte) ([]byte, error) {
	return c.do(ctx, req, nil)
}

// do is Do with check, which validates a positive response beyond its
// SID: it returns a problem to report as a *ResponseError, or staleProblem
// for a response that answers an earlier, retransmitted request and is to
// be skipped.
func (c *Client) do(ctx context.Context, req []byte, check func(resp []byte) (problem string)) ([]byte, error) {
	if len(req) == 0 {
		return nil, errors.New("uds: empty request")
	}
	if err := acquire(ctx, c.busy); err != nil {
		return nil, err
	}
	defer release(c.busy)
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.transmit(ctx, c.t, req); err != nil {
		return nil, err
	}
	return c.await(ctx, req, suppressed(req), check)
}

// suppressed reports whether req has the suppressPosRspMsgIndicationBit.
func suppressed(req []byte) bool {
	return len(req) > 1 && SID(req[0]).HasSubFunction() && req[1]&SuppressPositiveResponse != 0
}

// staleProblem marks a response that answers an earlier transmission of
// the same request and is to be skipped.
const staleProblem = "stale"

func acquire(ctx context.Context, ch chan struct{}) error {
	select {
	case ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func release(ch chan struct{}) { <-ch }

// transmit sends msg on t, one message at a time across the client's
// transports, so that KeepAlive never interleaves with a request.
func (c *Client) transmit(ctx context.Context, t Transport, msg []byte) error {
	if err := acquire(ctx, c.send); err != nil {
		return err
	}
	defer release(c.send)
	if c.opts.Trace != nil {
		c.opts.Trace(true, msg)
	}
	if err := t.Send(ctx, msg); err != nil {
		return fmt.Errorf("uds: sending %v request: %w", SID(msg[0]), err)
	}
	c.mu.Lock()
	c.lastSent = time.Now()
	c.mu.Unlock()
	return nil
}

// await reads responses to req from c.t until the final one. quiet means
// that silence for P2 is an answer (a suppressed positive response, or an
// ECU that ignores a functional request): await then returns nil, nil.
func (c *Client) await(ctx context.Context, req []byte, quiet bool, check func([]byte) string) ([]byte, error) {
	sid := SID(req[0])
	start := time.Now()
	timing := c.Timing()
	deadline := start.Add(timing.P2 + c.opts.Margin)
	pending := 0
	var lastErr error
	for {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		resp, err := c.t.Recv(rctx)
		cancel()
		if err != nil {
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return nil, fmt.Errorf("uds: %v: waiting for the response: %w", sid, context.Cause(ctx))
			case ctx.Err() != nil:
				return nil, &TimeoutError{Service: sid, Waited: time.Since(start), Pending: pending, Deadline: true, Err: context.Cause(ctx)}
			case rctx.Err() != nil:
				if quiet && pending == 0 {
					return nil, nil
				}
				return nil, &TimeoutError{Service: sid, Waited: time.Since(start), Pending: pending, Err: lastErr}
			}
			var ie *isotp.Error
			if errors.As(err, &ie) {
				// A response lost in transport: the wait goes on, and the
				// timeout will name this as the likely reason.
				lastErr = err
				continue
			}
			return nil, fmt.Errorf("uds: receiving %v response: %w", sid, err)
		}
		if c.opts.Trace != nil {
			c.opts.Trace(false, resp)
		}
		switch {
		case len(resp) == 0:
			return nil, &ResponseError{Service: sid, Response: resp, Problem: "empty message"}
		case resp[0] == NegativeResponseSID:
			if len(resp) != 3 {
				return nil, &ResponseError{Service: sid, Response: resp, Problem: "a negative response has exactly 3 bytes"}
			}
			if SID(resp[1]) != sid {
				// Another service's answer: KeepAlive's TesterPresent
				// refused, or a late answer to an earlier request that
				// timed out. Never ours; the timeout names it if nothing
				// else comes.
				lastErr = &ResponseError{Service: sid, Response: resp, Problem: fmt.Sprintf("negative response for %v, skipped as not answering this request", SID(resp[1]))}
				continue
			}
			if NRC(resp[2]) == ResponsePending {
				pending++
				deadline = time.Now().Add(timing.P2Star + c.opts.Margin)
				continue
			}
			return nil, &NegativeResponse{Service: sid, Code: NRC(resp[2])}
		case resp[0] != byte(sid)+0x40:
			// A late answer to an earlier request (one that timed out, or
			// a suppressed one the ECU answered anyway) must not fail
			// this one: skip it, and let the timeout name it if the
			// right answer never comes. The deadline does not move.
			lastErr = &ResponseError{Service: sid, Response: resp, Problem: fmt.Sprintf("SID 0x%02X does not answer 0x%02X, skipped as a late answer to another request", resp[0], byte(sid))}
			continue
		}
		if check != nil {
			if p := check(resp); p == staleProblem {
				continue
			} else if p != "" {
				return nil, &ResponseError{Service: sid, Response: resp, Problem: p}
			}
		}
		return resp, nil
	}
}
