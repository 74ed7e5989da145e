package uds

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestServerNRCOrder defends ISO 14229-1's order of checks (figures 5 and
// 6): each request fails several checks, and the first in the standard's
// order must win.
func TestServerNRCOrder(t *testing.T) {
	tests := []struct {
		name     string
		session  Session
		unlocked bool
		req      string
		want     string
	}{
		{"unknown service", DefaultSession, false, "AA 01", "7F AA 11"},
		{"service not in session before length", DefaultSession, false, "28", "7F 28 7F"},
		{"service security before sub-function", ProgrammingSession, false, "34 00", "7F 34 33"},
		{"sub-function length before sub-function", ExtendedSession, false, "28", "7F 28 13"},
		{"sub-function not supported", ExtendedSession, false, "28 05 01", "7F 28 12"},
		{"sub-function not in session", DefaultSession, false, "27 01", "7F 27 7E"},
		{"sub-function minimum length", ExtendedSession, false, "28 03", "7F 28 13"},
		{"unknown session", DefaultSession, false, "10 05", "7F 10 12"},
		{"session request too long", DefaultSession, false, "10 03 00", "7F 10 13"},
		{"tester present too long", DefaultSession, false, "3E 00 00", "7F 3E 13"},
		{"DID list odd", DefaultSession, false, "22 F1", "7F 22 13"},
		{"no DID supported", DefaultSession, false, "22 1234", "7F 22 31"},
		{"unsupported DID skipped", DefaultSession, false, "22 1234 F189", "62 F189 " + hexOf("1.2.3")},
		{"DID not writable in session", DefaultSession, false, "2E F190 00", "7F 2E 31"},
		{"DID write security", ExtendedSession, false, "2E F190 00", "7F 2E 33"},
		{"DID write length after security", ExtendedSession, true, "2E F190 00", "7F 2E 13"},
		{"routine unknown", DefaultSession, false, "31 01 1234", "7F 31 31"},
		{"routine control type without handler", DefaultSession, false, "31 02 FF01", "7F 31 12"},
		{"routine too short", DefaultSession, false, "31 01 FF", "7F 31 13"},
		{"sendKey without seed", ExtendedSession, false, "27 02 0000", "7F 27 24"},
		{"requestSeed too long", ExtendedSession, false, "27 01 00", "7F 27 13"},
		{"seed of an unlocked level is zero", ExtendedSession, true, "27 01", "67 01 0000"},
		{"clear unknown group", DefaultSession, false, "14 000001", "7F 14 31"},
		{"transfer without download", ProgrammingSession, true, "36 01 00", "7F 36 24"},
		{"transfer exit without download", ProgrammingSession, true, "37", "7F 37 24"},
		{"download outside memory", ProgrammingSession, true, "34 00 44 00000000 00000010", "7F 34 31"},
		{"download empty", ProgrammingSession, true, "34 00 44 00602000 00000000", "7F 34 31"},
		{"download wrong length", ProgrammingSession, true, "34 00 44 00602000 0000", "7F 34 13"},
		{"suppressed positive response", DefaultSession, false, "3E 80", ""},
		{"suppress bit does not silence an NRC", ExtendedSession, false, "28 83", "7F 28 13"},
		{"suppress bit is not part of the sub-function", DefaultSession, false, "10 81", ""},
		{"empty request", DefaultSession, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(h("3657"))
			ctx := context.Background()
			if tt.session != DefaultSession {
				s.Handle(ctx, []byte{0x10, byte(tt.session)}, false)
			}
			if tt.unlocked {
				s.Handle(ctx, h("27 01"), false)
				s.Handle(ctx, h("27 02 C9A9"), false)
			}
			got := s.Handle(ctx, h(tt.req), false)
			if want := h(tt.want); !bytes.Equal(got, want) {
				t.Errorf("% X: answered % X, want % X", h(tt.req), got, want)
			}
		})
	}
}

// TestServerSilentOnFunctional defends the NRCs that a functionally
// addressed request never gets, and that the others are still sent.
func TestServerSilentOnFunctional(t *testing.T) {
	tests := []struct{ req, want string }{
		{"AA", ""},       // 0x11
		{"28 03 01", ""}, // 0x7F
		{"10 07", ""},    // 0x12
		{"27 01", ""},    // 0x7E
		{"22 1234", ""},  // 0x31
		{"3E 80", ""},    // suppressed
		{"10 03 00", "7F 10 13"},
		{"3E 00", "7E 00"},
	}
	for _, tt := range tests {
		s, _ := newTestServer(nil)
		if got := s.Handle(context.Background(), h(tt.req), true); !bytes.Equal(got, h(tt.want)) {
			t.Errorf("functional %s: answered % X, want %s", tt.req, got, tt.want)
		}
	}
}

// TestServerHandlerErrors defends how handler errors become NRCs.
func TestServerHandlerErrors(t *testing.T) {
	var reported []error
	s := NewServer(ServerConfig{OnError: func(err error) { reported = append(reported, err) }})
	s.Register(0x23, Service{Handler: func(context.Context, *Request) ([]byte, error) {
		return nil, errors.New("disk on fire")
	}})
	s.Register(0x2F, Service{Handler: func(context.Context, *Request) ([]byte, error) {
		return nil, ConditionsNotCorrect
	}})
	ctx := context.Background()
	if got := s.Handle(ctx, h("23"), false); !bytes.Equal(got, h("7F 23 10")) {
		t.Errorf("plain error: % X, want generalReject", got)
	}
	if len(reported) != 1 {
		t.Errorf("OnError saw %d errors, want 1", len(reported))
	}
	if got := s.Handle(ctx, h("2F"), false); !bytes.Equal(got, h("7F 2F 22")) {
		t.Errorf("NRC error: % X", got)
	}
}

// TestServerS3 defends the fall back to the default session after S3
// without requests, with security locked again, and that each request
// restarts S3.
func TestServerS3(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestServer(h("3657"))
		var changes []Session
		s.OnSessionChange(func(_, to Session) { changes = append(changes, to) })
		ctx := context.Background()
		s.Handle(ctx, h("10 03"), false)
		s.Handle(ctx, h("27 01"), false)
		s.Handle(ctx, h("27 02 C9A9"), false)
		for range 3 {
			time.Sleep(DefaultS3Server - time.Millisecond)
			s.Handle(ctx, h("3E 80"), false)
		}
		if s.Session() != ExtendedSession || s.SecurityLevel() != 1 {
			t.Fatalf("session %v level %d after TesterPresent within S3", s.Session(), s.SecurityLevel())
		}
		time.Sleep(DefaultS3Server)
		if s.Session() != DefaultSession || s.SecurityLevel() != 0 {
			t.Fatalf("session %v level %d after S3", s.Session(), s.SecurityLevel())
		}
		if len(changes) != 2 || changes[1] != DefaultSession {
			t.Errorf("session changes %v", changes)
		}
	})
}

// TestServerSecurityLockout defends the attempt counter and the delay:
// two invalid keys get invalidKey, the third exceededNumberOfAttempts;
// requestSeed is then refused with requiredTimeDelayNotExpired for exactly
// the delay, after which one attempt is allowed.
func TestServerSecurityLockout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestServer(bytes.Repeat(h("3657"), 10))
		ctx := context.Background()
		do := func(req, want string) {
			t.Helper()
			if got := s.Handle(ctx, h(req), false); !bytes.Equal(got, h(want)) {
				t.Fatalf("% X: answered % X, want %s", h(req), got, want)
			}
		}
		// wait sleeps d while TesterPresent holds the session.
		wait := func(d time.Duration) {
			for ; d > 0; d -= time.Second {
				time.Sleep(min(d, time.Second))
				s.Handle(ctx, h("3E 80"), false)
			}
		}
		do("10 03", "50 03 0032 01F4")
		for _, want := range []string{"7F 27 35", "7F 27 35", "7F 27 36"} {
			do("27 01", "67 01 3657")
			do("27 02 0000", want)
		}
		do("27 01", "7F 27 37")
		wait(DefaultLockoutDelay - time.Millisecond)
		do("27 01", "7F 27 37")
		wait(time.Millisecond)
		do("27 01", "67 01 3657")
		do("27 02 0000", "7F 27 36") // one attempt after the delay
		wait(DefaultLockoutDelay)
		do("27 01", "67 01 3657")
		do("27 02 C9A9", "67 02")
		do("27 01", "67 01 0000")
	})
}

// TestServerSessionChangeLocksSecurity defends that security is relocked
// on a change of session and kept on a request for the same one.
func TestServerSessionChangeLocksSecurity(t *testing.T) {
	s, _ := newTestServer(h("3657"))
	ctx := context.Background()
	s.Handle(ctx, h("10 03"), false)
	s.Handle(ctx, h("27 01"), false)
	s.Handle(ctx, h("27 02 C9A9"), false)
	s.Handle(ctx, h("10 03"), false)
	if s.SecurityLevel() != 1 {
		t.Error("same session relocked security")
	}
	s.Handle(ctx, h("10 02"), false)
	if s.SecurityLevel() != 0 {
		t.Error("new session kept security")
	}
}

// TestServerEnterSession defends the EnterSession hook's refusal.
func TestServerEnterSession(t *testing.T) {
	s := NewServer(ServerConfig{EnterSession: func(from, to Session) error {
		if to == ProgrammingSession && from != ExtendedSession {
			return ConditionsNotCorrect
		}
		return nil
	}})
	ctx := context.Background()
	if got := s.Handle(ctx, h("10 02"), false); !bytes.Equal(got, h("7F 10 22")) {
		t.Errorf("from default: % X", got)
	}
	s.Handle(ctx, h("10 03"), false)
	if got := s.Handle(ctx, h("10 02"), false); got[0] != 0x50 || s.Session() != ProgrammingSession {
		t.Errorf("from extended: % X", got)
	}
}

// TestServerReset defends ECUReset's AfterResponse: the answer first,
// then the reset to the default session.
func TestServerReset(t *testing.T) {
	s, _ := newTestServer(nil)
	ctx := context.Background()
	s.Handle(ctx, h("10 03"), false)
	if got := s.Handle(ctx, h("11 01"), false); !bytes.Equal(got, h("51 01")) {
		t.Errorf("reset answered % X", got)
	}
	if s.Session() != DefaultSession {
		t.Error("reset kept the session")
	}
}
