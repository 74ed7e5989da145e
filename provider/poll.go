package provider

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"go.uber.org/zap"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// poll asks the ECU every PollInterval who it is and which image it runs,
// and keeps the node's conditions and labels in step. A poll never
// disturbs a flash: while a job (or a diagnostic command) speaks to the ECU
// the poll is skipped.
func (n *ecuNode) poll(ctx context.Context) {
	// Spread the ECUs of a vehicle over the interval so that 70 polls do
	// not hit the buses at the same instant.
	h := fnv.New32a()
	h.Write([]byte(n.name))
	first := time.Duration(h.Sum32()%1000) * n.p.cfg.PollInterval / 1000
	t := time.NewTimer(min(first, 200*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.tryAcquire() {
			n.pollOnce(ctx)
			n.release()
		}
		next := n.p.cfg.PollInterval
		if h := n.healthNow(); !h.known || h.misses > 0 || h.err != nil {
			// An ECU not seen yet, or one that missed its last poll, is
			// asked again soon: a node becomes Ready (or NotReady) within
			// seconds rather than intervals.
			next = min(next, time.Second)
		}
		t.Reset(next)
	}
}

// pollOnce reads the ECU's identity; the caller holds its UDS access.
func (n *ecuNode) pollOnce(ctx context.Context) {
	// A poll is over well before the next one is due.
	ctx, cancel := context.WithTimeout(ctx, max(n.p.cfg.PollInterval, time.Second))
	defer cancel()
	s, err := n.p.engine.Open(ctx, n.ecu)
	if err != nil {
		// The bus refused a connection, or the ECU's OEM adapter could not
		// be made (its settings, its plugin): either way nobody can speak
		// to the ECU, and the condition says which.
		bus := errors.Is(err, canbus.ErrClosed)
		n.update(func(h *health) { h.err, h.busErr, h.adapterErr = err, bus, !bus })
		return
	}
	defer s.Close()
	id, err := s.Identity(ctx)
	if ctx.Err() != nil && err != nil && errors.Is(err, context.Canceled) {
		return
	}
	if err != nil {
		var nr *uds.NegativeResponse
		var re *uds.ResponseError
		answered := errors.As(err, &nr) || errors.As(err, &re)
		var to *uds.TimeoutError
		bus := !answered && !errors.As(err, &to)
		if n.healthNow().err == nil {
			n.log.Info("the ECU does not answer its identity read", zap.Error(err))
		}
		n.update(func(h *health) {
			h.adapterErr = false
			if answered {
				// It is alive, only its identity is not what the adapter
				// expects: Ready, with the reason in the condition.
				h.err, h.busErr, h.misses, h.seen, h.identityErr = nil, false, 0, time.Now(), err
				return
			}
			// One missed answer is not yet an ECU gone: a loaded host can
			// miss a P2 deadline. Two in a row are.
			h.misses++
			if h.misses >= 2 || bus {
				h.err, h.busErr = err, bus
			}
		})
		return
	}
	boot := ""
	if r, err := s.Client.ReadDataByIdentifier(ctx, uds.DIDBootSoftwareIdentification); err == nil {
		if txt, ok := uds.IdentificationString(uds.DIDBootSoftwareIdentification, r[0].Data); ok {
			boot = txt
		}
	}
	n.p.metrics.polled(n.ecu.Name)
	n.update(func(h *health) {
		if h.known && h.id.Version != id.Version && h.flashing == "" {
			n.log.Info("the ECU runs another image than at the last poll (flashed outside this provider?)",
				zap.String("before", h.id.Version), zap.String("now", id.Version))
		}
		h.id, h.known, h.seen, h.err, h.busErr, h.misses, h.bootloader = id, true, time.Now(), nil, false, 0, boot
		h.adapterErr, h.identityErr = false, nil
	})
}
