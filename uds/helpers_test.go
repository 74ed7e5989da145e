package uds

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// h decodes hex with optional spaces: h("34 11 33 602000").
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// script is a Transport that plays an ECU from a list: each Send is
// recorded, and each Recv returns the next scripted response, or blocks
// until ctx ends when there is none.
type script struct {
	eof   bool // Recv returns io.EOF once the script is played
	mu    sync.Mutex
	sent  [][]byte
	resps chan []byte
}

func newScript(resps ...[]byte) *script {
	s := &script{resps: make(chan []byte, len(resps)+1)}
	for _, r := range resps {
		s.resps <- r
	}
	return s
}

func (s *script) Send(_ context.Context, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, slices.Clone(msg))
	return nil
}

func (s *script) Recv(ctx context.Context) ([]byte, error) {
	select {
	case r := <-s.resps:
		return r, nil
	default:
		if s.eof {
			return nil, io.EOF
		}
	}
	select {
	case r := <-s.resps:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *script) requests() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// lossy wraps a Transport and drops the messages drop picks, as a bus
// that loses them would.
type lossy struct {
	Transport
	drop func(msg []byte) bool
}

func (l lossy) Send(ctx context.Context, msg []byte) error {
	if l.drop(msg) {
		return nil
	}
	return l.Transport.Send(ctx, msg)
}

var busSeq atomic.Uint64

// rig is a mem bus at 500 kbit/s with a tester and ECUs on ISO-TP:
// ECU i takes requests on 0x7E0+i and answers on 0x7E8+i; functional
// requests go to 0x7DF. Make it inside the test's synctest bubble.
type rig struct {
	t     *testing.T
	url   string
	buses []canbus.Bus
	conns []*isotp.Conn
}

func newRig(t *testing.T) *rig {
	return &rig{t: t, url: fmt.Sprintf("mem://uds-test-%d", busSeq.Add(1))}
}

func (r *rig) dial(addr isotp.Address) *isotp.Conn {
	r.t.Helper()
	bus, err := canbus.Open(r.url, canbus.Config{Bitrate: 500000})
	if err != nil {
		r.t.Fatal(err)
	}
	c, err := isotp.Dial(bus, addr, isotp.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	r.buses = append(r.buses, bus)
	r.conns = append(r.conns, c)
	return c
}

// isotpAddr is the tester's physical address of ECU i.
func isotpAddr(i int) isotp.Address {
	return isotp.Address{TxID: 0x7E0 + uint32(i), RxID: 0x7E8 + uint32(i)}
}

// tester returns the physical transport to ECU i and the functional one.
func (r *rig) tester(i int) (phys, fun *isotp.Conn) {
	phys = r.dial(isotpAddr(i))
	// The functional Conn is only sent on; it receives on an unused identifier.
	fun = r.dial(isotp.Address{TxID: 0x7DF, RxID: 0x7D0 + uint32(i), Functional: true})
	return phys, fun
}

// ecu starts s serving as ECU i until the test ends.
func (r *rig) ecu(i int, s *Server, wrap func(Transport) Transport) {
	phys := Transport(r.dial(isotp.Address{TxID: 0x7E8 + uint32(i), RxID: 0x7E0 + uint32(i)}))
	fun := r.dial(isotp.Address{TxID: 0x7E8 + uint32(i), RxID: 0x7DF})
	if wrap != nil {
		phys = wrap(phys)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, phys, fun) }()
	r.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("Serve: %v", err)
		}
	})
}

// close ends every connection and bus; register it with t.Cleanup first
// so that it runs after the servers have stopped.
func (r *rig) close() {
	for _, c := range r.conns {
		c.Close()
	}
	for _, b := range r.buses {
		b.Close()
	}
}

// testKey is the key function of the tests' security levels: the seed
// plus 0x9352 per 16-bit word, so that the ISO 14229-1 example seed 3657
// gives its key C9A9.
func testKey(_ byte, seed []byte) ([]byte, error) {
	k := slices.Clone(seed)
	for i := 0; i+1 < len(k); i += 2 {
		v := uint16(k[i])<<8 | uint16(k[i+1]) + 0x9352
		k[i], k[i+1] = byte(v>>8), byte(v)
	}
	return k, nil
}

// flash is a Memory of size bytes at base that records its writes.
type flash struct {
	mu      sync.Mutex
	base    uint64
	data    []byte
	writes  int
	fail    bool // Write fails
	aborted int
	dl      DownloadRequest
}

func newFlash(base uint64, size int) *flash { return &flash{base: base, data: make([]byte, size)} }

func (f *flash) StartDownload(r DownloadRequest) error {
	if r.DataFormat != 0 && r.DataFormat != 0x11 {
		return RequestOutOfRange
	}
	if r.Address < f.base || r.Address+r.Size > f.base+uint64(len(f.data)) {
		return RequestOutOfRange
	}
	f.dl = r
	return nil
}

func (f *flash) Write(addr uint64, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return fmt.Errorf("flash cell stuck")
	}
	f.writes++
	copy(f.data[addr-f.base:], data)
	return nil
}

func (f *flash) FinishDownload() ([]byte, error) { return nil, nil }
func (f *flash) AbortDownload()                  { f.aborted++ }

func (f *flash) bytes(addr uint64, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.data[addr-f.base : addr-f.base+uint64(n)])
}

// dtcStore is a fixed DTCStore.
type dtcStore struct {
	avail   byte
	dtcs    []DTCRecord
	cleared []uint32
}

func (d *dtcStore) DTCs() (byte, []DTCRecord) { return d.avail, d.dtcs }
func (d *dtcStore) ClearDTCs(g uint32) error {
	if g != AllDTCGroups {
		return RequestOutOfRange
	}
	d.cleared = append(d.cleared, g)
	d.dtcs = nil
	return nil
}

// newTestServer returns an ECU with every service the client speaks:
// security level 1 (extended and programming session), DIDs F190 (VIN)
// and F189, routine FF01, DTCs, download into 0x602000..0x6FFFFF, reset,
// communication control and DTC setting. Its seeds come from seeds.
func newTestServer(seeds []byte) (*Server, *flash) {
	s := NewServer(ServerConfig{
		Security: map[byte]SecurityLevel{1: {Key: testKey, SeedLen: 2}},
		Rand:     bytes.NewReader(seeds),
	})
	vin := []byte("W0L000043MB541326")
	s.RegisterDID(DIDVIN, DataIdentifier{
		Read:        func() ([]byte, error) { return vin, nil },
		Write:       func(d []byte) error { vin = d; return nil },
		WriteAccess: Access{Sessions: []Session{ExtendedSession}, Security: []byte{1}},
		Len:         17,
	})
	s.RegisterDID(DIDECUSoftwareVersionNumber, DataIdentifier{Read: func() ([]byte, error) { return []byte("1.2.3"), nil }})
	s.RegisterRoutine(0xFF01, Routine{
		Start:   func(context.Context, *Request) ([]byte, error) { return []byte{0x00}, nil },
		Results: func(context.Context, *Request) ([]byte, error) { return []byte{0x00, 0x01}, nil },
	})
	s.RegisterDTCs(&dtcStore{avail: 0xFF, dtcs: []DTCRecord{{0x123456, 0x24}, {0xABCDEF, 0x2F}, {0x000001, 0x40}}})
	fl := newFlash(0x602000, 0x100000)
	NewDownload(s, fl, DownloadOptions{Access: Access{Sessions: []Session{ProgrammingSession}, Security: []byte{1}}, MaxBlockLength: 0x81})
	ok := func(context.Context, *Request) ([]byte, error) { return nil, nil }
	s.Register(ECUReset, Service{SubFunctions: map[byte]SubFunction{HardReset: {Handler: func(_ context.Context, r *Request) ([]byte, error) {
		r.AfterResponse(s.Reset)
		return nil, nil
	}}}})
	s.Register(CommunicationControl, Service{Access: Access{Sessions: []Session{ExtendedSession, ProgrammingSession}}, SubFunctions: map[byte]SubFunction{
		EnableRxAndTx: {MinLen: 3, Handler: ok}, DisableRxAndTx: {MinLen: 3, Handler: ok},
	}})
	s.Register(ControlDTCSetting, Service{Access: Access{Sessions: []Session{ExtendedSession, ProgrammingSession}}, SubFunctions: map[byte]SubFunction{
		DTCSettingOn: {Handler: ok}, DTCSettingOff: {Handler: ok},
	}})
	return s, fl
}
