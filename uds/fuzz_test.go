package uds

import (
	"bytes"
	"context"
	"testing"
)

// FuzzClientResponse feeds any bytes to every client method as the ECU's
// response: none may panic, and none may succeed on a response that does
// not echo its request's service.
func FuzzClientResponse(f *testing.F) {
	for _, x := range exchanges {
		for _, r := range splitHex(x.resp) {
			f.Add(r)
		}
	}
	f.Add(h("7F 22 78"))
	f.Add(h("7F 22 31"))
	f.Add(h("74 80 0000000000000000"))
	f.Add(h("62 F190"))
	ctx := context.Background()
	calls := []struct {
		sid  SID
		call func(c *Client) error
	}{
		{DiagnosticSessionControl, func(c *Client) error { _, err := c.DiagnosticSessionControl(ctx, ExtendedSession); return err }},
		{ECUReset, func(c *Client) error { _, err := c.ECUReset(ctx, EnableRapidPowerShutDown); return err }},
		{ClearDiagnosticInformation, func(c *Client) error { return c.ClearDiagnosticInformation(ctx, AllDTCGroups) }},
		{ReadDTCInformation, func(c *Client) error { _, _, err := c.ReadDTCByStatusMask(ctx, 0xFF); return err }},
		{ReadDataByIdentifier, func(c *Client) error {
			_, err := c.ReadDataByIdentifier(ctx, DIDVIN, DIDECUSoftwareVersionNumber)
			return err
		}},
		{SecurityAccess, func(c *Client) error { return c.SecurityAccess(ctx, 1, testKey) }},
		{CommunicationControl, func(c *Client) error { return c.CommunicationControl(ctx, 3, 1) }},
		{WriteDataByIdentifier, func(c *Client) error { return c.WriteDataByIdentifier(ctx, DIDVIN, h("00")) }},
		{RoutineControl, func(c *Client) error { _, err := c.RoutineControl(ctx, StartRoutine, 0xFF01, nil); return err }},
		{RequestDownload, func(c *Client) error { _, err := c.RequestDownload(ctx, DownloadRequest{Size: 1}); return err }},
		{TransferData, func(c *Client) error { _, err := c.TransferData(ctx, 1, h("00")); return err }},
		{RequestTransferExit, func(c *Client) error { _, err := c.RequestTransferExit(ctx, nil); return err }},
		{TesterPresent, func(c *Client) error { return c.TesterPresent(ctx, 0) }},
		{ControlDTCSetting, func(c *Client) error { return c.ControlDTCSetting(ctx, DTCSettingOff, nil) }},
	}
	f.Fuzz(func(t *testing.T, resp []byte) {
		for _, cl := range calls {
			ecu := newScript(resp, resp)
			ecu.eof = true
			err := cl.call(NewClient(ecu, ClientOptions{TransferRetries: -1}))
			if err == nil && (len(resp) == 0 || resp[0] != byte(cl.sid)+0x40) {
				t.Errorf("%v accepted % X", cl.sid, resp)
			}
		}
	})
}

// FuzzServerRequest feeds any bytes to a server with every service, in
// the session the first byte picks: it must not panic, and must answer
// with nothing, a well-formed negative response to the request's service
// or a positive response to it.
func FuzzServerRequest(f *testing.F) {
	for _, x := range exchanges {
		for _, r := range splitHex(x.req) {
			f.Add(byte(x.session), r, false)
		}
	}
	f.Add(byte(2), h("34 00 44 00602000 00000010"), false)
	f.Add(byte(2), h("36 01 00"), true)
	f.Add(byte(1), h("22 F190 F189 1234"), false)
	f.Fuzz(func(t *testing.T, session byte, req []byte, functional bool) {
		s, _ := newTestServer(h("3657"))
		ctx := context.Background()
		if session := Session(session%3 + 1); session != DefaultSession {
			s.Handle(ctx, []byte{0x10, byte(session)}, false)
			s.Handle(ctx, h("27 01"), false)
			s.Handle(ctx, h("27 02 C9A9"), false)
			if session == ProgrammingSession {
				s.Handle(ctx, h("34 00 44 00602000 00000100"), false)
			}
		}
		resp := s.Handle(ctx, req, functional)
		switch {
		case resp == nil:
		case resp[0] == NegativeResponseSID:
			if len(resp) != 3 || resp[1] != req[0] || resp[2] == 0 || resp[2] == byte(ResponsePending) {
				t.Errorf("% X: malformed negative response % X", req, resp)
			}
		case resp[0] != req[0]+0x40:
			t.Errorf("% X: answered % X", req, resp)
		case bytes.Equal(req, resp):
			t.Errorf("% X: echoed", req)
		}
	})
}
