package uds

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Request is a request as a server handler sees it.
type Request struct {
	// Message is the whole request, SID first. Handlers must not modify
	// or retain it.
	Message []byte
	// Functional is true for a functionally addressed request.
	Functional bool
	// Session and Security are the server's state when the request came:
	// the active session and the unlocked security level (the odd
	// requestSeed value; 0 when locked).
	Session  Session
	Security byte

	after []func()
}

// SID returns the request's service.
func (r *Request) SID() SID { return SID(r.Message[0]) }

// SubFunction returns the sub-function without the suppress bit, for
// services that have one.
func (r *Request) SubFunction() byte {
	if len(r.Message) < 2 {
		return 0
	}
	return r.Message[1] &^ SuppressPositiveResponse
}

// AfterResponse schedules f to run once the response to this request is
// on its way (Serve runs it after sending; Handle before returning), so
// that an ECUReset handler, say, resets only after its answer went out.
func (r *Request) AfterResponse(f func()) { r.after = append(r.after, f) }

// HandlerFunc answers a request with the bytes of its positive response
// that follow the response SID and, for a service with sub-functions, the
// echoed sub-function; or with an error: an NRC to answer with, or any
// other error, answered with generalReject (0x10). The context ends when
// the server stops.
type HandlerFunc func(ctx context.Context, r *Request) ([]byte, error)

// Access limits where a service or sub-function may be used.
type Access struct {
	// Sessions are the sessions that allow it; nil allows all.
	Sessions []Session
	// Security lists security levels (their odd requestSeed values) any of
	// which must be unlocked; nil needs none.
	Security []byte
}

// check returns the NRC that refuses r, or 0. notInSession is the NRC for
// a session that does not allow it (0x7F for a service, 0x7E for a
// sub-function).
func (a Access) check(session Session, security byte, notInSession NRC) NRC {
	if a.Sessions != nil && !slices.Contains(a.Sessions, session) {
		return notInSession
	}
	if a.Security != nil && (security == 0 || !slices.Contains(a.Security, security)) {
		return SecurityAccessDenied
	}
	return 0
}

// Service is a service a Server offers.
type Service struct {
	Access
	// MinLen is the shortest valid request, SID (and sub-function)
	// included; shorter ones get incorrectMessageLengthOrInvalidFormat
	// after the session and security checks. Handlers check the exact
	// length themselves.
	MinLen int
	// Handler answers the service when it has no sub-functions.
	Handler HandlerFunc
	// SubFunctions, when not empty, make the second byte a sub-function
	// (with the suppress bit) and route each to its own handler.
	SubFunctions map[byte]SubFunction
}

// SubFunction is one sub-function of a Service.
type SubFunction struct {
	Access
	MinLen  int // as Service.MinLen, for this sub-function's requests
	Handler HandlerFunc
}

// SecurityLevel is a security level a Server unlocks with seed and key.
type SecurityLevel struct {
	// Sessions that allow requesting its seed; nil means the non-default
	// sessions, as ISO 14229-1 has it.
	Sessions []Session
	// Key computes the key expected for a seed.
	Key KeyFunc
	// SeedLen is the seed's length in bytes; 0 means 4.
	SeedLen int
}

// Server defaults.
const (
	DefaultMaxAttempts  = 3
	DefaultLockoutDelay = 10 * time.Second
	DefaultMaxBlock     = 0x0FFF // DownloadOptions.MaxBlockLength: a full ISO-TP message with 12-bit length
)

// ServerConfig configures a Server. The zero value gives a server with the
// default, programming and extended sessions, ISO 14229-2's timing and no
// security levels.
type ServerConfig struct {
	// Timing is what the server promises and reports in its
	// DiagnosticSessionControl responses; zero values mean DefaultP2 and
	// DefaultP2Star.
	Timing Timing
	// S3 is the time without requests after which a non-default session
	// falls back to the default session; zero means DefaultS3Server.
	S3 time.Duration
	// Sessions the server offers besides the default session; nil means
	// ProgrammingSession and ExtendedSession.
	Sessions []Session
	// EnterSession, when set, may refuse a session change with an NRC
	// (usually ConditionsNotCorrect): a bootloader that enters the
	// programming session only from the extended one, say.
	EnterSession func(from, to Session) error
	// Security maps each level's odd requestSeed value to the level.
	Security map[byte]SecurityLevel
	// MaxAttempts is how many invalid keys in a row lock security access
	// for LockoutDelay; zero means DefaultMaxAttempts.
	MaxAttempts int
	// LockoutDelay is how long requestSeed is refused with
	// requiredTimeDelayNotExpired after too many invalid keys; zero means
	// DefaultLockoutDelay.
	LockoutDelay time.Duration
	// Rand supplies seeds; nil means crypto/rand.
	Rand io.Reader
	// OnError, when set, sees handler errors that are not NRCs (answered
	// with generalReject) and transport errors Serve carries on after.
	OnError func(error)
}

// Server is the diagnostic core of an ECU. Its state (session, security)
// changes only through Handle and the S3 timeout; its methods may be
// called from several goroutines.
type Server struct {
	cfg ServerConfig

	mu           sync.Mutex
	services     map[SID]Service
	session      Session
	security     byte      // unlocked level, 0 when locked
	seedLevel    byte      // the level whose seed was sent, 0 when none
	seed         []byte    // the seed sent for seedLevel
	attempts     int       // invalid keys in a row
	lockedUntil  time.Time // requestSeed refused until then
	lastActivity time.Time // for S3
	onSession    []func(from, to Session)
	dids         map[uint16]DataIdentifier
	routines     map[uint16]Routine
}

// NewServer returns a server in the default session with
// DiagnosticSessionControl, SecurityAccess and TesterPresent registered.
// It panics on a security level that is even, above 0x7D or without a
// Key, a programming error.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Timing.P2 <= 0 {
		cfg.Timing.P2 = DefaultP2
	}
	if cfg.Timing.P2Star <= 0 {
		cfg.Timing.P2Star = DefaultP2Star
	}
	if cfg.S3 <= 0 {
		cfg.S3 = DefaultS3Server
	}
	if cfg.Sessions == nil {
		cfg.Sessions = []Session{ProgrammingSession, ExtendedSession}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.LockoutDelay <= 0 {
		cfg.LockoutDelay = DefaultLockoutDelay
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	s := &Server{cfg: cfg, services: map[SID]Service{}, session: DefaultSession, lastActivity: time.Now()}
	s.registerBuiltins()
	return s
}

// Register offers a service, replacing any earlier registration of sid
// (the built-in ones included).
func (s *Server) Register(sid SID, svc Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[sid] = svc
}

// OnSessionChange registers f to be called after every change of session,
// the S3 timeout and Reset included, outside the server's lock.
func (s *Server) OnSessionChange(f func(from, to Session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSession = append(s.onSession, f)
}

// Session returns the active session, after applying the S3 timeout.
func (s *Server) Session() Session {
	s.expire()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// SecurityLevel returns the unlocked security level, 0 when locked.
func (s *Server) SecurityLevel() byte {
	s.expire()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.security
}

// Timing returns the P2 and P2* the server works to.
func (s *Server) Timing() Timing { return s.cfg.Timing }

// Reset puts the server back in the state of power-up: the default
// session, security locked. The lockout delay, if running, continues, as
// ISO 14229-1 asks of a reset during it.
func (s *Server) Reset() {
	s.mu.Lock()
	from := s.session
	s.enterLocked(DefaultSession)
	s.security = 0
	hooks := slices.Clone(s.onSession)
	s.mu.Unlock()
	for _, f := range hooks {
		f(from, DefaultSession)
	}
}

// enterLocked switches to session; leaving a session for another locks
// security and forgets a seed sent.
func (s *Server) enterLocked(to Session) {
	if to != s.session {
		s.security = 0
	}
	s.session = to
	s.seedLevel, s.seed = 0, nil
}

// expire applies the S3 timeout.
func (s *Server) expire() {
	s.mu.Lock()
	from := s.session
	if from == DefaultSession || time.Since(s.lastActivity) < s.cfg.S3 {
		s.mu.Unlock()
		return
	}
	s.enterLocked(DefaultSession)
	hooks := slices.Clone(s.onSession)
	s.mu.Unlock()
	for _, f := range hooks {
		f(from, DefaultSession)
	}
}

// touch restarts S3.
func (s *Server) touch() {
	s.mu.Lock()
	s.lastActivity = time.Now()
	s.mu.Unlock()
}

// Handle answers one request and returns the response to send, or nil
// when none is to be sent: for a suppressed positive response, for the
// NRCs a functional request does not get, and for an empty request. It
// runs the request's AfterResponse functions before it returns. It does
// no I/O and never sends responsePending; Serve does that.
func (s *Server) Handle(ctx context.Context, req []byte, functional bool) []byte {
	resp, send, after := s.handle(ctx, req, functional)
	for _, f := range after {
		f()
	}
	if !send {
		return nil
	}
	return resp
}

// handle answers req: resp is the response, send whether to send it
// (false when suppressed or silent), after the functions to run once it
// is sent.
func (s *Server) handle(ctx context.Context, req []byte, functional bool) (resp []byte, send bool, after []func()) {
	if len(req) == 0 {
		return nil, false, nil
	}
	s.expire()
	s.touch()
	defer s.touch()
	sid := SID(req[0])
	s.mu.Lock()
	svc, ok := s.services[sid]
	r := &Request{Message: req, Functional: functional, Session: s.session, Security: s.security}
	s.mu.Unlock()

	nrc, h := s.route(svc, ok, r)
	var data []byte
	if nrc == 0 {
		var err error
		data, err = h(ctx, r)
		if err != nil {
			if !errors.As(err, &nrc) || nrc == 0 || nrc == ResponsePending {
				s.reportError(fmt.Errorf("uds server: %v handler: %w", sid, err))
				nrc = GeneralReject
			}
		}
	}
	if nrc != 0 {
		silent := functional && (nrc == ServiceNotSupported || nrc == SubFunctionNotSupported ||
			nrc == ServiceNotSupportedInActiveSession || nrc == SubFunctionNotSupportedInActiveSession ||
			nrc == RequestOutOfRange)
		return []byte{NegativeResponseSID, byte(sid), byte(nrc)}, !silent, r.after
	}
	resp = []byte{byte(sid) + 0x40}
	sub := len(svc.SubFunctions) > 0
	if sub {
		resp = append(resp, r.SubFunction())
	}
	resp = append(resp, data...)
	return resp, !(sub && req[1]&SuppressPositiveResponse != 0), r.after
}

// route applies ISO 14229-1's general checks in the order of its figures
// 5 and 6 and returns the NRC they end with, or the handler to run.
func (s *Server) route(svc Service, ok bool, r *Request) (NRC, HandlerFunc) {
	if !ok {
		return ServiceNotSupported, nil
	}
	if nrc := svc.Access.check(r.Session, r.Security, ServiceNotSupportedInActiveSession); nrc != 0 {
		return nrc, nil
	}
	if len(svc.SubFunctions) == 0 {
		if len(r.Message) < svc.MinLen {
			return IncorrectMessageLengthOrInvalidFormat, nil
		}
		if svc.Handler == nil {
			return ServiceNotSupported, nil
		}
		return 0, svc.Handler
	}
	if len(r.Message) < 2 {
		return IncorrectMessageLengthOrInvalidFormat, nil
	}
	sf, ok := svc.SubFunctions[r.SubFunction()]
	if !ok || sf.Handler == nil {
		return SubFunctionNotSupported, nil
	}
	if nrc := sf.Access.check(r.Session, r.Security, SubFunctionNotSupportedInActiveSession); nrc != 0 {
		return nrc, nil
	}
	if len(r.Message) < max(svc.MinLen, sf.MinLen) {
		return IncorrectMessageLengthOrInvalidFormat, nil
	}
	return 0, sf.Handler
}

func (s *Server) reportError(err error) {
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}

// registerBuiltins registers the services the server answers itself.
func (s *Server) registerBuiltins() {
	sessions := map[byte]SubFunction{byte(DefaultSession): {Handler: s.sessionControl}}
	for _, ss := range s.cfg.Sessions {
		sessions[byte(ss)] = SubFunction{Handler: s.sessionControl}
	}
	s.services[DiagnosticSessionControl] = Service{SubFunctions: sessions}
	s.services[TesterPresent] = Service{SubFunctions: map[byte]SubFunction{0x00: {Handler: exactLen(2, nil)}}}
	if len(s.cfg.Security) > 0 {
		levels := map[byte]SubFunction{}
		for l, lv := range s.cfg.Security {
			if l%2 == 0 || l > 0x7D || lv.Key == nil {
				panic(fmt.Sprintf("uds: security level 0x%02X must be an odd requestSeed value up to 0x7D with a Key function", l))
			}
			sessions := lv.Sessions
			if sessions == nil {
				sessions = slices.DeleteFunc(slices.Clone(s.cfg.Sessions), func(ss Session) bool { return ss == DefaultSession })
			}
			levels[l] = SubFunction{Access: Access{Sessions: sessions}, Handler: s.requestSeed}
			levels[l+1] = SubFunction{Access: Access{Sessions: sessions}, Handler: s.sendKey}
		}
		s.services[SecurityAccess] = Service{SubFunctions: levels}
	}
}

// exactLen returns a handler that checks the request's length and answers
// with resp.
func exactLen(n int, resp []byte) HandlerFunc {
	return func(_ context.Context, r *Request) ([]byte, error) {
		if len(r.Message) != n {
			return nil, IncorrectMessageLengthOrInvalidFormat
		}
		return resp, nil
	}
}

func (s *Server) sessionControl(_ context.Context, r *Request) ([]byte, error) {
	if len(r.Message) != 2 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	to := Session(r.SubFunction())
	if s.cfg.EnterSession != nil {
		if err := s.cfg.EnterSession(r.Session, to); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	from := s.session
	s.enterLocked(to)
	hooks := slices.Clone(s.onSession)
	s.mu.Unlock()
	if from != to {
		for _, f := range hooks {
			f(from, to)
		}
	}
	return encodeTiming(s.cfg.Timing), nil
}

func (s *Server) requestSeed(_ context.Context, r *Request) ([]byte, error) {
	level := r.SubFunction()
	lv := s.cfg.Security[level]
	n := lv.SeedLen
	if n <= 0 {
		n = 4
	}
	if len(r.Message) != 2 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Now().Before(s.lockedUntil) {
		return nil, RequiredTimeDelayNotExpired
	}
	if s.security == level {
		return make([]byte, n), nil // unlocked already: a zero seed
	}
	seed := make([]byte, n)
	// A zero seed means "unlocked"; draw again, a few times at most.
	for try := 0; allZero(seed); try++ {
		if try == 8 {
			return nil, errors.New("making a seed: ServerConfig.Rand gives only zeros")
		}
		if _, err := io.ReadFull(s.cfg.Rand, seed); err != nil {
			return nil, fmt.Errorf("making a seed: %w; check ServerConfig.Rand", err)
		}
	}
	s.seedLevel, s.seed = level, seed
	return slices.Clone(seed), nil
}

func (s *Server) sendKey(_ context.Context, r *Request) ([]byte, error) {
	level := r.SubFunction() - 1
	if len(r.Message) < 3 {
		return nil, IncorrectMessageLengthOrInvalidFormat
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seedLevel != level {
		return nil, RequestSequenceError
	}
	seed := s.seed
	s.seedLevel, s.seed = 0, nil // every key answers one seed
	want, err := s.cfg.Security[level].Key(level, seed)
	if err != nil {
		return nil, fmt.Errorf("computing the key of level 0x%02X: %w", level, err)
	}
	if !slices.Equal(want, r.Message[2:]) {
		s.attempts++
		if s.attempts >= s.cfg.MaxAttempts {
			// After the delay one more attempt is allowed; another
			// invalid key locks again at once.
			s.attempts = s.cfg.MaxAttempts - 1
			s.lockedUntil = time.Now().Add(s.cfg.LockoutDelay)
			return nil, ExceededNumberOfAttempts
		}
		return nil, InvalidKey
	}
	s.attempts = 0
	s.security = level
	return nil, nil
}
