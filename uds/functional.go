package uds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// FunctionalResult is one ECU's answer to a functionally addressed
// request.
type FunctionalResult struct {
	Client *Client // the client of the ECU that answered (or did not)
	// Response is the positive response, or nil when the ECU sent none
	// within P2: it suppressed it, or ignores the request.
	Response []byte
	// Err is the ECU's *NegativeResponse, a *ResponseError, or a
	// *TimeoutError when it answered responsePending and then fell silent.
	Err error
}

// Functional sends req once on the client's functional transport
// (ClientOptions.Functional) and collects the answers of this client's ECU
// and of peers, each read on its own physical transport, since on ISO-TP
// every ECU answers on its own identifier. Each ECU that does not answer
// within P2 (or within P2* after a responsePending) gets a result with
// neither Response nor Err. The results come in the order c, peers.
//
// The clients take no other requests while Functional waits. The error is
// about sending; answers are in the results.
func (c *Client) Functional(ctx context.Context, req []byte, peers ...*Client) ([]FunctionalResult, error) {
	if c.opts.Functional == nil {
		return nil, ErrNoFunctionalTransport
	}
	if len(req) == 0 {
		return nil, errors.New("uds: empty request")
	}
	clients := append([]*Client{c}, peers...)
	for i, cl := range clients {
		if err := acquire(ctx, cl.busy); err != nil {
			for _, held := range clients[:i] {
				release(held.busy)
			}
			return nil, err
		}
	}
	defer func() {
		for _, cl := range clients {
			release(cl.busy)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if err := c.transmit(ctx, c.opts.Functional, req); err != nil {
		return nil, err
	}
	results := make([]FunctionalResult, len(clients))
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			resp, err := cl.await(ctx, req, true, nil)
			results[i] = FunctionalResult{Client: cl, Response: resp, Err: err}
		})
	}
	wg.Wait()
	return results, nil
}

// KeepAlive sends TesterPresent with the positive response suppressed
// (3E 80) so that the ECU stays in its non-default session (its S3 timer
// never runs out) while the caller works between requests, for instance
// on a long download. It sends on the functional transport when the client
// has one, else on the physical one, every interval (DefaultS3Client when
// zero) after the last request the client sent, and reads no response.
//
// The returned stop ends it and waits until it has ended; it returns the
// first send error, if any, which also ended the keep-alive. Cancelling
// ctx ends it as well; stop must still be called.
func (c *Client) KeepAlive(ctx context.Context, interval time.Duration) (stop func() error) {
	if interval <= 0 {
		interval = DefaultS3Client
	}
	t := c.t
	if c.opts.Functional != nil {
		t = c.opts.Functional
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		timer := time.NewTimer(interval)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			c.mu.Lock()
			next := c.lastSent.Add(interval)
			c.mu.Unlock()
			if d := time.Until(next); d > 0 {
				timer.Reset(d) // a request went out meanwhile and restarted S3
				continue
			}
			if e := c.transmit(ctx, t, []byte{byte(TesterPresent), SuppressPositiveResponse}); e != nil {
				if ctx.Err() == nil {
					err = fmt.Errorf("uds: keep-alive stopped: %w", e)
				}
				return
			}
			timer.Reset(interval)
		}
	}()
	return func() error {
		cancel()
		<-done
		return err
	}
}
