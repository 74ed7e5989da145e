package uds

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// exchange is one request and its response, as ISO 14229-1's examples
// write them, with the client call that makes the request and what the
// call returns for the response.
type exchange struct {
	name      string
	session   Session // the server's session for the server side; 0: default
	unlocked  bool    // the server has security level 1 unlocked
	req, resp string
	call      func(ctx context.Context, c *Client) (any, error)
	want      any
}

var exchanges = []exchange{
	{name: "DiagnosticSessionControl extended", req: "10 03", resp: "50 03 0032 01F4",
		call: func(ctx context.Context, c *Client) (any, error) {
			return c.DiagnosticSessionControl(ctx, ExtendedSession)
		},
		want: Timing{P2: 50 * time.Millisecond, P2Star: 5 * time.Second}},
	{name: "ECUReset hard", req: "11 01", resp: "51 01",
		call: func(ctx context.Context, c *Client) (any, error) { return c.ECUReset(ctx, HardReset) },
		want: byte(0)},
	{name: "ClearDiagnosticInformation all groups", req: "14 FFFFFF", resp: "54",
		call: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.ClearDiagnosticInformation(ctx, AllDTCGroups)
		}},
	{name: "ReadDTCInformation by status mask", req: "19 02 24", resp: "59 02 FF 123456 24 ABCDEF 2F",
		call: func(ctx context.Context, c *Client) (any, error) {
			a, d, err := c.ReadDTCByStatusMask(ctx, 0x24)
			return []any{a, d}, err
		},
		want: []any{byte(0xFF), []DTCRecord{{0x123456, 0x24}, {0xABCDEF, 0x2F}}}},
	{name: "ReadDataByIdentifier VIN", req: "22 F190", resp: "62 F190 " + hexOf("W0L000043MB541326"),
		call: func(ctx context.Context, c *Client) (any, error) { return c.ReadDataByIdentifier(ctx, DIDVIN) },
		want: []DataRecord{{DIDVIN, []byte("W0L000043MB541326")}}},
	{name: "ReadDataByIdentifier two DIDs", req: "22 F190 F189", resp: "62 F190 " + hexOf("W0L000043MB541326") + " F189 " + hexOf("1.2.3"),
		call: func(ctx context.Context, c *Client) (any, error) {
			return c.ReadDataByIdentifier(ctx, DIDVIN, DIDECUSoftwareVersionNumber)
		},
		want: []DataRecord{{DIDVIN, []byte("W0L000043MB541326")}, {DIDECUSoftwareVersionNumber, []byte("1.2.3")}}},
	{name: "SecurityAccess requestSeed and sendKey", session: ExtendedSession, req: "27 01|27 02 C9A9", resp: "67 01 3657|67 02",
		call: func(ctx context.Context, c *Client) (any, error) { return nil, c.SecurityAccess(ctx, 1, testKey) }},
	{name: "CommunicationControl disable", session: ExtendedSession, req: "28 03 01", resp: "68 03",
		call: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.CommunicationControl(ctx, DisableRxAndTx, NormalCommunicationMessages)
		}},
	{name: "WriteDataByIdentifier VIN", session: ExtendedSession, unlocked: true, req: "2E F190 " + hexOf("W0L000043MB541326"), resp: "6E F190",
		call: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.WriteDataByIdentifier(ctx, DIDVIN, []byte("W0L000043MB541326"))
		}},
	{name: "RoutineControl start", req: "31 01 FF01 AA", resp: "71 01 FF01 00",
		call: func(ctx context.Context, c *Client) (any, error) {
			return c.RoutineControl(ctx, StartRoutine, 0xFF01, []byte{0xAA})
		},
		want: []byte{0x00}},
	{name: "RoutineControl results", req: "31 03 FF01", resp: "71 03 FF01 0001",
		call: func(ctx context.Context, c *Client) (any, error) {
			return c.RoutineControl(ctx, RequestRoutineResults, 0xFF01, nil)
		},
		want: []byte{0x00, 0x01}},
	{name: "RequestDownload (ISO 14229-1 example)", session: ProgrammingSession, unlocked: true, req: "34 11 33 602000 00FFFF", resp: "74 20 0081",
		call: func(ctx context.Context, c *Client) (any, error) {
			return c.RequestDownload(ctx, DownloadRequest{DataFormat: 0x11, Address: 0x602000, Size: 0xFFFF, AddressLen: 3, SizeLen: 3})
		},
		want: uint64(0x81)},
	{name: "TesterPresent", req: "3E 00", resp: "7E 00",
		call: func(ctx context.Context, c *Client) (any, error) { return nil, c.TesterPresent(ctx, 0) }},
	{name: "ControlDTCSetting off", session: ExtendedSession, req: "85 02", resp: "C5 02",
		call: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.ControlDTCSetting(ctx, DTCSettingOff, nil)
		}},
}

func hexOf(s string) string {
	const digits = "0123456789ABCDEF"
	var b []byte
	for _, c := range []byte(s) {
		b = append(b, digits[c>>4], digits[c&15])
	}
	return string(b)
}

func splitHex(s string) [][]byte {
	var out [][]byte
	for _, p := range bytes.Split([]byte(s), []byte("|")) {
		out = append(out, h(string(p)))
	}
	return out
}

// TestClientEncodesAndDecodesTheStandardExamples runs each exchange
// against a scripted ECU: the client must send the request byte for byte
// and decode the response.
func TestClientEncodesAndDecodesTheStandardExamples(t *testing.T) {
	for _, x := range exchanges {
		t.Run(x.name, func(t *testing.T) {
			ecu := newScript(splitHex(x.resp)...)
			c := NewClient(ecu, ClientOptions{})
			got, err := x.call(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if want := splitHex(x.req); !reflect.DeepEqual(ecu.requests(), want) {
				t.Errorf("sent % X, want % X", ecu.requests(), want)
			}
			if x.want != nil && !reflect.DeepEqual(got, x.want) {
				t.Errorf("got %#v, want %#v", got, x.want)
			}
		})
	}
}

// TestServerAnswersTheStandardExamples has the server framework answer
// the same requests with the same responses.
func TestServerAnswersTheStandardExamples(t *testing.T) {
	for _, x := range exchanges {
		t.Run(x.name, func(t *testing.T) {
			s, _ := newTestServer(h("3657"))
			ctx := context.Background()
			if x.session != 0 {
				s.Handle(ctx, []byte{0x10, byte(x.session)}, false)
			}
			if x.unlocked {
				s.Handle(ctx, h("27 01"), false)
				s.Handle(ctx, h("27 02 C9A9"), false)
				if s.SecurityLevel() != 1 {
					t.Fatal("could not unlock level 1")
				}
			}
			reqs, resps := splitHex(x.req), splitHex(x.resp)
			for i, req := range reqs {
				if got := s.Handle(ctx, req, false); !bytes.Equal(got, resps[i]) {
					t.Errorf("% X: answered % X, want % X", req, got, resps[i])
				}
			}
		})
	}
}

func TestTimingEncoding(t *testing.T) {
	tests := []struct {
		t    Timing
		wire string
	}{
		{Timing{50 * time.Millisecond, 5 * time.Second}, "0032 01F4"},
		{Timing{25 * time.Millisecond, 2 * time.Second}, "0019 00C8"},
		{Timing{time.Hour, time.Hour}, "FFFF FFFF"}, // saturates
	}
	for _, tt := range tests {
		if got := encodeTiming(tt.t); !bytes.Equal(got, h(tt.wire)) {
			t.Errorf("encodeTiming(%v) = % X, want %s", tt.t, got, tt.wire)
		}
	}
	if got := decodeTiming(h("0032 01F4")); got != (Timing{50 * time.Millisecond, 5 * time.Second}) {
		t.Errorf("decodeTiming = %v", got)
	}
}

func TestRequestDownloadFormat(t *testing.T) {
	tests := []struct {
		name string
		r    DownloadRequest
		wire string
		err  bool
	}{
		{"default lengths", DownloadRequest{Address: 0x8000, Size: 0x10000}, "34 00 44 00008000 00010000", false},
		{"one byte each", DownloadRequest{Address: 1, Size: 2, AddressLen: 1, SizeLen: 1}, "34 00 11 01 02", false},
		{"address too large", DownloadRequest{Address: 0x1000000, Size: 1, AddressLen: 3}, "", true},
		{"length out of range", DownloadRequest{AddressLen: 9}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeRequestDownload(tt.r)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if tt.err {
				return
			}
			if !bytes.Equal(b, h(tt.wire)) {
				t.Errorf("encoded % X, want %s", b, tt.wire)
			}
			back, err := parseRequestDownload(b)
			al, sl := cmp0(tt.r.AddressLen, 4), cmp0(tt.r.SizeLen, 4)
			want := tt.r
			want.AddressLen, want.SizeLen = al, sl
			if err != nil || back != want {
				t.Errorf("parsed back %+v, %v; want %+v", back, err, want)
			}
		})
	}
	for _, bad := range []struct {
		wire string
		nrc  NRC
	}{
		{"34 00", IncorrectMessageLengthOrInvalidFormat},
		{"34 00 44 0000", IncorrectMessageLengthOrInvalidFormat},
		{"34 00 09 00", RequestOutOfRange},
		{"34 00 90 00", RequestOutOfRange},
	} {
		if _, err := parseRequestDownload(h(bad.wire)); !errors.Is(err, bad.nrc) {
			t.Errorf("parse %s: %v, want %v", bad.wire, err, bad.nrc)
		}
	}
}

func TestDownloadResponseFormat(t *testing.T) {
	if got := encodeDownloadResponse(0x81); !bytes.Equal(got, h("74 20 0081")) {
		t.Errorf("encode 0x81 = % X", got)
	}
	if got := encodeDownloadResponse(0x12345); !bytes.Equal(got, h("74 30 012345")) {
		t.Errorf("encode 0x12345 = % X", got)
	}
	for _, tt := range []struct {
		wire string
		max  uint64
		ok   bool
	}{
		{"74 20 0081", 0x81, true},
		{"74 10 FF", 0xFF, true},
		{"74 40 00000400", 0x400, true},
		{"74 20 00", 0, false},   // shorter than announced
		{"74 00", 0, false},      // no length
		{"74 20 0002", 0, false}, // no room for data
		{"74", 0, false},
	} {
		m, p := decodeDownloadResponse(h(tt.wire))
		if (p == "") != tt.ok || m != tt.max {
			t.Errorf("decode %s = %d, %q", tt.wire, m, p)
		}
	}
}

func TestNRCNames(t *testing.T) {
	tests := []struct {
		n    NRC
		want string
	}{
		{SecurityAccessDenied, "securityAccessDenied (0x33)"},
		{ResponsePending, "requestCorrectlyReceivedResponsePending (0x78)"},
		{WrongBlockSequenceCounter, "wrongBlockSequenceCounter (0x73)"},
		{0x40, "reservedByExtendedDataLinkSecurityDocument (0x40)"},
		{0xA0, "reservedForSpecificConditionsNotCorrect (0xA0)"},
		{0xF5, "vehicleManufacturerSpecificConditionsNotCorrect (0xF5)"},
		{0x01, "ISOSAEReserved (0x01)"},
		{0xFF, "ISOSAEReserved (0xFF)"},
	}
	for _, tt := range tests {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("%#x: %q, want %q", byte(tt.n), got, tt.want)
		}
	}
	err := error(&NegativeResponse{Service: SecurityAccess, Code: InvalidKey})
	if !errors.Is(err, InvalidKey) || errors.Is(err, SecurityAccessDenied) {
		t.Error("errors.Is does not match the NRC")
	}
	if got, want := err.Error(), "uds: SecurityAccess (0x27) refused: invalidKey (0x35)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestIdentificationString(t *testing.T) {
	tests := []struct {
		did  uint16
		data []byte
		want string
		ok   bool
	}{
		{DIDVIN, []byte("W0L000043MB541326"), "W0L000043MB541326", true},
		{DIDECUSoftwareVersionNumber, []byte("1.2.3\x00\x00"), "1.2.3", true},
		{DIDSparePartNumber, []byte("12345   "), "12345", true},
		{DIDApplicationSoftwareIdentification, []byte("\x01APP-7"), "APP-7", true},
		{DIDECUSerialNumber, []byte{0x01, 0x80}, "", false},
		{0x1234, []byte("text"), "", false},
	}
	for _, tt := range tests {
		s, ok := IdentificationString(tt.did, tt.data)
		if s != tt.want || ok != tt.ok {
			t.Errorf("IdentificationString(%04X, %q) = %q, %v", tt.did, tt.data, s, ok)
		}
	}
	if DIDName(DIDVIN) != "VIN" || DIDName(0x1234) != "DID 0x1234" {
		t.Error("DIDName")
	}
}
