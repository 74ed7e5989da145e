package uds

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// onBus runs f in a synctest bubble with ECU 0 serving s over ISO-TP on a
// 500 kbit/s mem bus, and a client for it; wrap, if set, wraps the ECU's
// physical transport.
func onBus(t *testing.T, s *Server, opts ClientOptions, wrap func(Transport) Transport, f func(t *testing.T, c *Client)) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		t.Cleanup(r.close)
		phys, fun := r.tester(0)
		opts.Functional = fun
		r.ecu(0, s, wrap)
		f(t, NewClient(phys, opts))
	})
}

// TestClientFullSessionOverISOTP runs a programming sequence through
// ISO-TP on the mem bus: sessions, security, DIDs, routine, DTCs and a
// download of 40 kB in 129-byte blocks with the counter wrapping.
func TestClientFullSessionOverISOTP(t *testing.T) {
	s, fl := newTestServer(h("3657"))
	onBus(t, s, ClientOptions{}, nil, func(t *testing.T, c *Client) {
		ctx := context.Background()
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		recs, err := c.ReadDataByIdentifier(ctx, DIDVIN, DIDECUSoftwareVersionNumber)
		must(err)
		if v, _ := IdentificationString(recs[0].DID, recs[0].Data); v != "W0L000043MB541326" {
			t.Errorf("VIN %q", v)
		}
		_, dtcs, err := c.ReadDTCByStatusMask(ctx, 0x04)
		must(err)
		if len(dtcs) != 2 {
			t.Errorf("DTCs with bit 2: %v", dtcs)
		}
		_, err = c.DiagnosticSessionControl(ctx, ExtendedSession)
		must(err)
		must(c.ControlDTCSetting(ctx, DTCSettingOff, nil))
		must(c.CommunicationControl(ctx, DisableRxAndTx, NormalCommunicationMessages))
		_, err = c.DiagnosticSessionControl(ctx, ProgrammingSession)
		must(err)
		must(c.SecurityAccess(ctx, 1, testKey))
		img := make([]byte, 40000) // 315 blocks: the counter wraps
		for i := range img {
			img[i] = byte(i ^ i>>8)
		}
		var sent []int
		_, err = c.Download(ctx, DownloadRequest{Address: 0x602000}, img, func(n int) { sent = append(sent, n) })
		must(err)
		if len(sent) != (len(img)+126)/127 || sent[len(sent)-1] != len(img) {
			t.Errorf("progress %v", sent)
		}
		if !bytes.Equal(fl.bytes(0x602000, len(img)), img) {
			t.Error("flash does not hold the image")
		}
		must(c.ClearDiagnosticInformation(ctx, AllDTCGroups))
		_, err = c.ECUReset(ctx, HardReset)
		must(err)
		if s.Session() != DefaultSession {
			t.Error("ECU still in programming session after reset")
		}
	})
}

// slow registers service 0x31 routine 0x0202 (erase) taking d.
func slow(s *Server, d time.Duration) {
	s.RegisterRoutine(0x0202, Routine{Start: func(ctx context.Context, _ *Request) ([]byte, error) {
		select {
		case <-time.After(d):
			return []byte{0x00}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
}

// TestClientResponsePendingStorm defends waiting through any number of
// responsePending: a 60 s erase sends about 25 of them, and the client
// takes the final response.
func TestClientResponsePendingStorm(t *testing.T) {
	s, _ := newTestServer(nil)
	slow(s, time.Minute)
	var pending atomic.Int32
	opts := ClientOptions{Trace: func(sent bool, msg []byte) {
		if !sent && bytes.Equal(msg, h("7F 31 78")) {
			pending.Add(1)
		}
	}}
	onBus(t, s, opts, nil, func(t *testing.T, c *Client) {
		start := time.Now()
		out, err := c.RoutineControl(context.Background(), StartRoutine, 0x0202, nil)
		if err != nil || !bytes.Equal(out, h("00")) {
			t.Fatalf("RoutineControl = % X, %v", out, err)
		}
		if took := time.Since(start); took < time.Minute || took > time.Minute+time.Second {
			t.Errorf("took %v", took)
		}
		if n := pending.Load(); n < 20 {
			t.Errorf("%d responsePending, want one every P2*/2", n)
		}
	})
}

// TestClientDeadlineBeatsResponsePending defends the overall deadline: an
// ECU that answers responsePending forever does not hold the client past
// it, and the error says the ECU was still busy.
func TestClientDeadlineBeatsResponsePending(t *testing.T) {
	for _, viaCtx := range []bool{false, true} {
		s, _ := newTestServer(nil)
		slow(s, time.Hour)
		opts := ClientOptions{Timeout: 30 * time.Second}
		if viaCtx {
			opts.Timeout = 0
		}
		onBus(t, s, opts, nil, func(t *testing.T, c *Client) {
			ctx := context.Background()
			if viaCtx {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
			}
			start := time.Now()
			_, err := c.RoutineControl(ctx, StartRoutine, 0x0202, nil)
			var te *TimeoutError
			if !errors.As(err, &te) || !te.Deadline || te.Pending < 10 {
				t.Fatalf("err = %v, want a deadline TimeoutError with pending responses", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v does not wrap context.DeadlineExceeded", err)
			}
			if !strings.Contains(err.Error(), "requestCorrectlyReceivedResponsePending (0x78)") {
				t.Errorf("error does not say the ECU was pending: %v", err)
			}
			if took := time.Since(start); took != 30*time.Second {
				t.Errorf("gave up after %v, want 30s", took)
			}
		})
	}
}

// TestClientP2Timeout defends the P2 timeout: no ECU, so the request
// fails after P2 plus the margin, saying nothing was pending.
func TestClientP2Timeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		t.Cleanup(r.close)
		phys, _ := r.tester(0)
		c := NewClient(phys, ClientOptions{})
		start := time.Now()
		_ = c.TesterPresent(context.Background(), 0)
		err := c.TesterPresent(context.Background(), 0)
		var te *TimeoutError
		if !errors.As(err, &te) || te.Deadline || te.Pending != 0 {
			t.Fatalf("err = %v", err)
		}
		if took := time.Since(start); took != 2*(DefaultP2+DefaultMargin) {
			t.Errorf("two requests took %v", took)
		}
	})
}

// TestClientTimingFromSession defends taking P2 and P2* from the session
// response: an ECU with P2 20 ms and P2* 1 s, whose handler takes 1.5 s.
func TestClientTimingFromSession(t *testing.T) {
	s := NewServer(ServerConfig{Timing: Timing{P2: 20 * time.Millisecond, P2Star: time.Second}})
	slow(s, 1500*time.Millisecond)
	onBus(t, s, ClientOptions{}, nil, func(t *testing.T, c *Client) {
		tm, err := c.DiagnosticSessionControl(context.Background(), ExtendedSession)
		if err != nil || tm != (Timing{20 * time.Millisecond, time.Second}) || c.Timing() != tm {
			t.Fatalf("timing %v, %v", tm, err)
		}
		if _, err := c.RoutineControl(context.Background(), StartRoutine, 0x0202, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// TestClientTransferDataRetransmits defends the recovery from a lost
// TransferData response: the client sends the block again with the same
// counter, the ECU answers the repeat without writing twice, and the
// download completes.
func TestClientTransferDataRetransmits(t *testing.T) {
	s, fl := newTestServer(h("3657"))
	var dropped atomic.Int32
	drop := func(tr Transport) Transport {
		return lossy{tr, func(msg []byte) bool {
			// Lose the first answer to block 2 and both answers to block 4's
			// first two tries.
			if bytes.Equal(msg, h("76 02")) && dropped.Load() == 0 ||
				bytes.Equal(msg, h("76 04")) && dropped.Load() < 3 {
				dropped.Add(1)
				return true
			}
			return false
		}}
	}
	onBus(t, s, ClientOptions{}, drop, func(t *testing.T, c *Client) {
		ctx := context.Background()
		if _, err := c.DiagnosticSessionControl(ctx, ProgrammingSession); err != nil {
			t.Fatal(err)
		}
		if err := c.SecurityAccess(ctx, 1, testKey); err != nil {
			t.Fatal(err)
		}
		if _, err := c.RequestDownload(ctx, DownloadRequest{Address: 0x602000, Size: 5}); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := c.TransferData(ctx, byte(i+1), []byte{byte(0xA0 + i)}); err != nil {
				t.Fatalf("block %d: %v", i+1, err)
			}
		}
		if _, err := c.RequestTransferExit(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if dropped.Load() != 3 || fl.writes != 5 {
			t.Errorf("%d responses dropped, %d writes; want 3 and 5", dropped.Load(), fl.writes)
		}
		if got := fl.bytes(0x602000, 5); !bytes.Equal(got, h("A0A1A2A3A4")) {
			t.Errorf("flash holds % X", got)
		}
	})
}

// TestClientTransferDataSkipsLateResponse defends against taking a late
// answer to the previous block as the answer to the next.
func TestClientTransferDataSkipsLateResponse(t *testing.T) {
	ecu := newScript(h("76 01"), h("76 01"), h("76 02"))
	c := NewClient(ecu, ClientOptions{})
	ctx := context.Background()
	if _, err := c.TransferData(ctx, 1, h("00")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TransferData(ctx, 2, h("00")); err != nil {
		t.Fatalf("the late 76 01 was not skipped: %v", err)
	}
	if len(ecu.resps) != 0 {
		t.Error("block 2 took the late answer to block 1 as its own")
	}
}

// TestClientRejectsMismatchedResponses defends that a response to another
// request is an error, never the answer.
func TestClientRejectsMismatchedResponses(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		resp string
		call func(c *Client) error
	}{
		{"wrong SID", "62 F190 00", func(c *Client) error { return c.TesterPresent(ctx, 0) }},
		{"negative response for another service", "7F 22 31", func(c *Client) error { return c.TesterPresent(ctx, 0) }},
		{"wrong DID", "62 F18C 00", func(c *Client) error { _, err := c.ReadDataByIdentifier(ctx, DIDVIN); return err }},
		{"DID repeated", "62 F190 " + hexOf("W0L000043MB541326") + " F190 00", func(c *Client) error {
			_, err := c.ReadDataByIdentifier(ctx, DIDVIN, DIDECUSoftwareVersionNumber)
			return err
		}},
		{"no record", "62", func(c *Client) error { _, err := c.ReadDataByIdentifier(ctx, DIDVIN); return err }},
		{"VIN too short", "62 F190 00", func(c *Client) error { _, err := c.ReadDataByIdentifier(ctx, DIDVIN); return err }},
		{"wrong session echoed", "50 02 0032 01F4", func(c *Client) error {
			_, err := c.DiagnosticSessionControl(ctx, ExtendedSession)
			return err
		}},
		{"session response too short", "50 03 0032", func(c *Client) error {
			_, err := c.DiagnosticSessionControl(ctx, ExtendedSession)
			return err
		}},
		{"wrong routine", "71 01 FF02", func(c *Client) error { _, err := c.RoutineControl(ctx, StartRoutine, 0xFF01, nil); return err }},
		{"wrong control type", "71 02 FF01", func(c *Client) error { _, err := c.RoutineControl(ctx, StartRoutine, 0xFF01, nil); return err }},
		{"wrong block counter", "76 07", func(c *Client) error { _, err := c.TransferData(ctx, 5, h("00")); return err }},
		{"wrong written DID", "6E F18C", func(c *Client) error { return c.WriteDataByIdentifier(ctx, DIDVIN, h("00")) }},
		{"DTC record cut", "59 02 FF 123456", func(c *Client) error { _, _, err := c.ReadDTCByStatusMask(ctx, 0xFF); return err }},
		{"wrong seed level", "67 03 1234", func(c *Client) error { return c.SecurityAccess(ctx, 1, testKey) }},
		{"negative response too long", "7F 3E 12 00", func(c *Client) error { return c.TesterPresent(ctx, 0) }},
		{"empty", "", func(c *Client) error { return c.TesterPresent(ctx, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(NewClient(newScript(h(tt.resp)), ClientOptions{}))
			var re *ResponseError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *ResponseError", err)
			}
		})
	}
}

// TestClientSkipsLateAnswersToOtherRequests: an answer to an earlier request
// that timed out (or to a suppressed one) arrives while the next request
// waits; it must neither fail nor answer the new request.
func TestClientSkipsLateAnswersToOtherRequests(t *testing.T) {
	ctx := context.Background()
	for _, late := range []string{"62 F190 00", "7F 22 31", "50 03 0032 01F4"} {
		c := NewClient(newScript(h(late), h("7E 00")), ClientOptions{})
		if err := c.TesterPresent(ctx, 0); err != nil {
			t.Errorf("late %s, then the answer: %v", late, err)
		}
	}
	// With no right answer after it, the timeout names what was skipped.
	synctest.Test(t, func(t *testing.T) {
		err := NewClient(newScript(h("62 F190 00")), ClientOptions{}).TesterPresent(ctx, 0)
		var te *TimeoutError
		var re *ResponseError
		if !errors.As(err, &te) || !errors.As(err, &re) || !strings.Contains(err.Error(), "skipped") {
			t.Fatalf("err = %v, want a timeout naming the skipped answer", err)
		}
	})
}

// TestClientNegativeResponse defends the typed negative response.
func TestClientNegativeResponse(t *testing.T) {
	c := NewClient(newScript(h("7F 27 78"), h("7F 27 33")), ClientOptions{})
	err := c.SecurityAccess(context.Background(), 1, testKey)
	var nr *NegativeResponse
	if !errors.As(err, &nr) || nr.Service != SecurityAccess || nr.Code != SecurityAccessDenied {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "securityAccessDenied (0x33)") {
		t.Errorf("error %q does not name the NRC", err)
	}
}

// TestClientSuppressedRequests defends the suppress bit: no response is
// success after P2; a negative response is still an error.
func TestClientSuppressedRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClient(newScript(), ClientOptions{})
		if tm, err := c.DiagnosticSessionControl(context.Background(), ExtendedSession|SuppressPositiveResponse); err != nil || tm != (Timing{}) {
			t.Errorf("suppressed session control: %v, %v", tm, err)
		}
		c = NewClient(newScript(h("7F 28 22")), ClientOptions{})
		if err := c.CommunicationControl(context.Background(), DisableRxAndTx|SuppressPositiveResponse, 1); !errors.Is(err, ConditionsNotCorrect) {
			t.Errorf("suppressed request's NRC: %v", err)
		}
	})
}

// TestClientReadSeveralDIDsNeedsLengths defends the refusal to read DIDs
// of unknown length together, and that DIDLengths allows it.
func TestClientReadSeveralDIDsNeedsLengths(t *testing.T) {
	ctx := context.Background()
	ecu := newScript()
	if _, err := NewClient(ecu, ClientOptions{}).ReadDataByIdentifier(ctx, DIDECUSoftwareVersionNumber, DIDVIN); err == nil || len(ecu.requests()) != 0 {
		t.Fatalf("err = %v, %d requests sent", err, len(ecu.requests()))
	}
	ecu = newScript(h("62 F189 010203 F18C 0A"))
	recs, err := NewClient(ecu, ClientOptions{DIDLengths: map[uint16]int{DIDECUSoftwareVersionNumber: 3}}).
		ReadDataByIdentifier(ctx, DIDECUSoftwareVersionNumber, DIDECUSerialNumber)
	if err != nil || len(recs) != 2 || !bytes.Equal(recs[0].Data, h("010203")) || !bytes.Equal(recs[1].Data, h("0A")) {
		t.Fatalf("recs %v, %v", recs, err)
	}
}

// TestClientReadDIDsSkipsUnsupported defends reading a response that
// leaves out a DID the ECU does not support, over the real server.
func TestClientReadDIDsSkipsUnsupported(t *testing.T) {
	s, _ := newTestServer(nil)
	onBus(t, s, ClientOptions{DIDLengths: map[uint16]int{0x1234: 2}}, nil, func(t *testing.T, c *Client) {
		recs, err := c.ReadDataByIdentifier(context.Background(), DIDVIN, 0x1234, DIDECUSoftwareVersionNumber)
		if err != nil || len(recs) != 2 || recs[0].DID != DIDVIN || string(recs[1].Data) != "1.2.3" {
			t.Fatalf("recs %v, %v", recs, err)
		}
	})
}

// TestClientS3AndKeepAlive defends the S3 timeout as the client sees it:
// without TesterPresent the ECU falls back to the default session; with
// KeepAlive it stays for as long as it runs, and stop ends it.
func TestClientS3AndKeepAlive(t *testing.T) {
	s, _ := newTestServer(nil)
	onBus(t, s, ClientOptions{}, nil, func(t *testing.T, c *Client) {
		ctx := context.Background()
		if _, err := c.DiagnosticSessionControl(ctx, ExtendedSession); err != nil {
			t.Fatal(err)
		}
		stop := c.KeepAlive(ctx, 0)
		time.Sleep(time.Minute)
		if s.Session() != ExtendedSession {
			t.Fatal("session lost while KeepAlive ran")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultS3Server + time.Second)
		if s.Session() != DefaultSession {
			t.Fatal("session held after KeepAlive stopped")
		}
	})
}

// TestClientFunctionalTwoECUs defends functional requests: one request,
// both ECUs' answers, and silence from an ECU that does not answer.
func TestClientFunctionalTwoECUs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t)
		t.Cleanup(r.close)
		phys0, fun := r.tester(0)
		phys1 := r.dial(isotpAddr(1))
		s0, _ := newTestServer(nil)
		s1 := NewServer(ServerConfig{Sessions: []Session{}}) // no extended session
		r.ecu(0, s0, nil)
		r.ecu(1, s1, nil)
		c0 := NewClient(phys0, ClientOptions{Functional: fun})
		c1 := NewClient(phys1, ClientOptions{})
		ctx := context.Background()

		res, err := c0.Functional(ctx, h("3E 00"), c1)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil || !bytes.Equal(r.Response, h("7E 00")) {
				t.Errorf("ECU %d: % X, %v", i, r.Response, r.Err)
			}
		}
		res, err = c0.Functional(ctx, h("10 03"), c1)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil || res[0].Response == nil || res[1].Response != nil || res[1].Err != nil {
			t.Errorf("session 3: %+v %+v; want ECU 0 to answer and ECU 1 to stay silent", res[0], res[1])
		}
		if _, err := c1.Functional(ctx, h("3E 00")); !errors.Is(err, ErrNoFunctionalTransport) {
			t.Errorf("without functional transport: %v", err)
		}
	})
}

// TestClientCancelIsNoTimeout defends that a cancelled request says so
// rather than blaming a deadline.
func TestClientCancelIsNoTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClient(newScript(h("7F 31 78")), ClientOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		_, err := c.RoutineControl(ctx, StartRoutine, 1, nil)
		var te *TimeoutError
		if !errors.Is(err, context.Canceled) || errors.As(err, &te) {
			t.Errorf("err = %v", err)
		}
	})
}
