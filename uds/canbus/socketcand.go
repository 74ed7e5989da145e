package canbus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The socketcand protocol (linux-can/socketcand, doc/protocol.md) carries CAN
// frames over TCP as ASCII messages between '<' and '>'. This file holds its
// codec, shared by client and server, and the client; socketcand_server.go
// holds the server. Only raw mode is implemented: after
//
//	server: < hi >
//	client: < open BUS >     server: < ok >
//	client: < rawmode >      server: < ok >
//
// every frame on the bus reaches the client and the client may send.
//
// Received frames (server to client):
//
//	< frame ID SECS.USECS DATA >          classic data frame, as socketcand sends it
//	< fdframe ID SECS.USECS DATA [F] >    CAN FD frame
//	< rtrframe ID SECS.USECS LEN >        remote frame
//	< error CLASS SECS.USECS [DATA] >     error frame
//
// Sent frames (client to server):
//
//	< send ID LEN B0 B1 ... >             classic data frame, as socketcand reads it
//	< sendfd ID LEN B0 B1 ... [F] >       CAN FD frame
//	< sendrtr ID LEN >                    remote frame
//
// ID is hex; eight digits, or a value above 0x7FF, mean a 29-bit identifier.
// DATA is hex without spaces, Bn one hex byte each, LEN decimal.
//
// fdframe and sendfd follow the CAN FD draft of socketcand's maintainer
// (branch rawmode-canfd, issue linux-can/socketcand#12); the optional F is
// this project's addition, candump's FD flags digit (1 BRS, 2 ESI), written
// only when non-zero so that a frame without flags reads as the draft does.
// rtrframe, sendrtr and the DATA of error frames are this project's
// additions too: socketcand itself drops remote frames and sends only the
// error class. A server without them answers "< error unknown command >",
// which the client reports instead of losing frames silently.

// maxMessageLen bounds one message, and the whitespace before it.
// The longest raw-mode message, a sendfd of 64 bytes with flags
// ("< sendfd 1FFFFFFF 64 " + 64 × "ff " + "3 >"), has 216 bytes; the rest is
// room for spacing and server error texts. socketcand's own 8 KiB buffer
// exists for ISO-TP mode, which this package does not speak.
const maxMessageLen = 256

// maxBusNameLen is the longest bus name protocol.md allows in "< open >".
const maxBusNameLen = 16

// socketcandTimeout bounds connecting and the handshake, so that a server
// that accepts but never answers does not hang the dialer.
const socketcandTimeout = 10 * time.Second

// Errors of the socketcand transport; test with errors.Is.
var (
	// ErrProtocol means the peer sent bytes that are not the socketcand
	// protocol: no message framing, an overlong message, malformed fields,
	// or a message that makes no sense at that point.
	ErrProtocol = errors.New("socketcand protocol violation")
	// ErrRefused means the server answered a command with "< error ... >".
	ErrRefused = errors.New("refused by the server")
)

// SocketcandError reports a failure of a socketcand client: which step
// failed, and what the server said if it said anything.
type SocketcandError struct {
	Server string // host:port
	Bus    string // bus name on the server
	Step   string // connect, greeting, open, rawmode, receive or send
	Reply  string // the server's message, if one caused the failure
	Err    error  // the cause: ErrProtocol, ErrRefused, io.EOF, a net error
}

// Error says which server, bus and step, what the server said, and why.
func (e *SocketcandError) Error() string {
	s := fmt.Sprintf("canbus: socketcand server %s, bus %q: %s", e.Server, e.Bus, e.Step)
	if e.Reply != "" {
		s += fmt.Sprintf(": server said %q", e.Reply)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SocketcandError) Unwrap() error { return e.Err }

// msgKind tells which socketcand message was read.
type msgKind uint8

const (
	msgUnknown   msgKind = iota // well-formed, but a command this package does not speak
	msgHi                       // < hi >
	msgOK                       // < ok >
	msgEcho                     // < echo >
	msgErrorText                // < error TEXT >: the server refuses a command
	msgFrame                    // frame, fdframe, rtrframe or error frame received
	msgOpen                     // < open BUS >
	msgRawMode                  // < rawmode >
	msgBCMMode                  // < bcmmode >
	msgSend                     // send, sendfd or sendrtr
)

// message is one decoded socketcand message.
type message struct {
	kind  msgKind
	frame Frame     // msgFrame, msgSend
	time  time.Time // msgFrame: the server's timestamp
	text  string    // msgOpen: bus name; msgErrorText: text; msgUnknown: command word
}

// msgReader splits a byte stream into socketcand messages. It never holds
// more than maxMessageLen bytes of one message.
type msgReader struct {
	br *bufio.Reader
}

func newMsgReader(r io.Reader) *msgReader {
	return &msgReader{br: bufio.NewReaderSize(r, maxMessageLen)}
}

// next returns the next message, '<' to '>' inclusive, valid until the
// following call. It returns io.EOF at a clean end of stream (only
// whitespace after the last message), and an ErrProtocol error when the
// stream breaks the framing, after which no message can be trusted.
func (r *msgReader) next() ([]byte, error) {
	// Check the first byte as soon as it arrives, so that a peer speaking
	// another protocol is caught without waiting for a '>' that may never
	// come.
	for skipped := 0; ; skipped++ {
		c, err := r.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if skipped == maxMessageLen {
			return nil, fmt.Errorf("%d bytes of whitespace and no message: %w", skipped, ErrProtocol)
		}
		if isSpace(c) {
			continue
		}
		r.br.UnreadByte()
		if c != '<' {
			peek, _ := r.br.Peek(min(r.br.Buffered(), 64))
			return nil, fmt.Errorf("%q does not start with '<': %w", peek, ErrProtocol)
		}
		break
	}
	b, err := r.br.ReadSlice('>')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fmt.Errorf("no '>' within %d bytes after %q: %w", maxMessageLen, quoteStart(b), ErrProtocol)
	case err == io.EOF:
		return nil, fmt.Errorf("stream ends inside message %q: %w", quoteStart(b), io.ErrUnexpectedEOF)
	case err != nil:
		return nil, err
	}
	if bytes.IndexByte(b[1:], '<') >= 0 {
		return nil, fmt.Errorf("%q opens a message inside a message: %w", quoteStart(b), ErrProtocol)
	}
	return b, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// quoteStart returns at most 64 bytes of b for an error message.
func quoteStart(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// maxFields bounds the words of one message: sendfd with 64 data bytes and
// flags has 68.
const maxFields = 72

// parseMessage decodes one message as returned by msgReader.next: '<',
// words separated by ASCII whitespace, '>'. Frames are validated. A
// well-formed command this package does not implement is msgUnknown, not
// an error, so that a server can answer it as socketcand does.
func parseMessage(b []byte) (message, error) {
	var m message
	if len(b) < 2 || b[0] != '<' || b[len(b)-1] != '>' {
		return m, fmt.Errorf("%q is not enclosed in '<' and '>': %w", quoteStart(b), ErrProtocol)
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if !isSpace(c) && (c < 0x21 || c > 0x7E || c == '<' || c == '>') {
			return m, fmt.Errorf("%q has byte %#x, not printable ASCII: %w", quoteStart(b), c, ErrProtocol)
		}
	}
	var words [maxFields][]byte
	n := 0
	for i := 0; i < len(inner); {
		if isSpace(inner[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(inner) && !isSpace(inner[j]) {
			j++
		}
		if n == len(words) {
			return m, fmt.Errorf("%q has more than %d words: %w", quoteStart(b), maxFields, ErrProtocol)
		}
		words[n] = inner[i:j]
		n++
		i = j
	}
	if n == 0 {
		return m, fmt.Errorf("empty message %q: %w", quoteStart(b), ErrProtocol)
	}
	cmd, args := string(words[0]), words[1:n]
	var err error
	switch cmd {
	case "hi", "ok", "echo", "rawmode", "bcmmode":
		if len(args) != 0 {
			return m, fmt.Errorf("%q: %s takes no arguments: %w", quoteStart(b), cmd, ErrProtocol)
		}
		m.kind = bareCommands[cmd]
		return m, nil
	case "open":
		if len(args) != 1 || len(args[0]) > maxBusNameLen {
			return m, fmt.Errorf("%q: want < open BUS > with a bus name of 1 to %d characters: %w", quoteStart(b), maxBusNameLen, ErrProtocol)
		}
		m.kind, m.text = msgOpen, string(args[0])
		return m, nil
	case "error":
		if f, t, ok := parseErrorFrame(args); ok {
			m.kind, m.frame, m.time = msgFrame, f, t
			return m, nil
		}
		m.kind, m.text = msgErrorText, string(bytes.Join(args, []byte{' '}))
		return m, nil
	case "frame", "fdframe", "rtrframe":
		m.kind = msgFrame
		m.frame, m.time, err = parseReceived(cmd, args)
	case "send", "sendfd", "sendrtr":
		m.kind = msgSend
		m.frame, err = parseSend(cmd, args)
	default:
		m.kind, m.text = msgUnknown, cmd
		return m, nil
	}
	if err != nil {
		return message{}, fmt.Errorf("%q: %w", quoteStart(b), err)
	}
	return m, nil
}

// bareCommands are the messages without arguments.
var bareCommands = map[string]msgKind{"hi": msgHi, "ok": msgOK, "echo": msgEcho, "rawmode": msgRawMode, "bcmmode": msgBCMMode}

// parseReceived decodes the arguments of frame, fdframe and rtrframe.
func parseReceived(cmd string, args [][]byte) (Frame, time.Time, error) {
	var f Frame
	if len(args) < 2 {
		return f, time.Time{}, fmt.Errorf("%s needs an identifier and a timestamp: %w", cmd, ErrProtocol)
	}
	var err error
	if f.ID, f.Extended, err = parseID(args[0]); err != nil {
		return f, time.Time{}, err
	}
	t, err := parseTimestamp(args[1])
	if err != nil {
		return f, t, err
	}
	rest := args[2:]
	switch cmd {
	case "frame":
		if len(rest) > 1 {
			return f, t, fmt.Errorf("frame has %d data words, want one hex string: %w", len(rest), ErrProtocol)
		}
	case "fdframe":
		f.FD = true
		if n := len(rest); n > 0 && len(rest[n-1]) == 1 {
			// A single digit cannot be data (always an even number of
			// digits), so it is the flags word.
			if err := parseFDFlags(rest[n-1], &f); err != nil {
				return f, t, err
			}
			rest = rest[:n-1]
		}
		if len(rest) > 1 {
			return f, t, fmt.Errorf("fdframe has %d data words, want one hex string: %w", len(rest), ErrProtocol)
		}
	case "rtrframe":
		if len(rest) != 1 {
			return f, t, fmt.Errorf("rtrframe needs its length: %w", ErrProtocol)
		}
		n, err := parseLen(rest[0], MaxClassicLen)
		if err != nil {
			return f, t, err
		}
		f.RTR, f.Len = true, uint8(n)
		return f, t, validateWire(&f)
	}
	if len(rest) == 1 {
		if err := parseHexData(rest[0], &f); err != nil {
			return f, t, err
		}
	}
	return f, t, validateWire(&f)
}

// parseErrorFrame decodes "< error CLASS SECS.USECS [DATA] >"; ok is false
// when the words are not an error frame, making the message an error text.
func parseErrorFrame(args [][]byte) (f Frame, t time.Time, ok bool) {
	if len(args) < 2 || len(args) > 3 || len(args[0]) > 8 {
		return f, t, false
	}
	class, err := parseHex(args[0])
	if err != nil || class > MaxExtID {
		return f, t, false
	}
	if t, err = parseTimestamp(args[1]); err != nil {
		return f, t, false
	}
	f.Error, f.ID = true, uint32(class)
	if len(args) == 3 {
		if parseHexData(args[2], &f) != nil || f.Len > MaxClassicLen {
			return Frame{}, time.Time{}, false
		}
	}
	return f, t, true
}

// parseSend decodes the arguments of send, sendfd and sendrtr.
func parseSend(cmd string, args [][]byte) (Frame, error) {
	var f Frame
	if len(args) < 2 {
		return f, fmt.Errorf("%s needs an identifier and a length: %w", cmd, ErrProtocol)
	}
	var err error
	if f.ID, f.Extended, err = parseID(args[0]); err != nil {
		return f, err
	}
	maxLen := MaxClassicLen
	if cmd == "sendfd" {
		f.FD, maxLen = true, MaxFDLen
	}
	n, err := parseLen(args[1], maxLen)
	if err != nil {
		return f, err
	}
	f.Len = uint8(n)
	data := args[2:]
	switch {
	case cmd == "sendrtr":
		f.RTR = true
		if len(data) != 0 {
			return f, fmt.Errorf("sendrtr takes no data: %w", ErrProtocol)
		}
	case cmd == "sendfd" && len(data) == n+1:
		if err := parseFDFlags(data[n], &f); err != nil {
			return f, err
		}
		data = data[:n]
	}
	if !f.RTR && len(data) != n {
		return f, fmt.Errorf("%s announces %d data bytes but carries %d: %w", cmd, n, len(data), ErrProtocol)
	}
	if !f.RTR {
		for i, w := range data {
			if len(w) > 2 {
				return f, fmt.Errorf("data byte %q is more than two hex digits: %w", w, ErrProtocol)
			}
			v, err := parseHex(w)
			if err != nil {
				return f, err
			}
			f.Data[i] = byte(v)
		}
	}
	return f, validateWire(&f)
}

// validateWire validates a decoded frame, marking the error as a protocol
// violation while keeping Validate's typed cause.
func validateWire(f *Frame) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return nil
}

// parseID decodes a hex identifier: eight digits, as socketcand writes
// 29-bit identifiers, or a value beyond 11 bits (as python-can writes them,
// unpadded) make it extended.
func parseID(w []byte) (uint32, bool, error) {
	if len(w) > 8 {
		return 0, false, fmt.Errorf("identifier %q has more than 8 hex digits: %w", w, ErrProtocol)
	}
	v, err := parseHex(w)
	if err != nil {
		return 0, false, err
	}
	if v > MaxExtID {
		return 0, false, fmt.Errorf("identifier %q exceeds 29 bits: %w", w, ErrProtocol)
	}
	return uint32(v), len(w) == 8 || v > MaxStdID, nil
}

// parseHex decodes 1 to 8 hex digits.
func parseHex(w []byte) (uint64, error) {
	if len(w) == 0 || len(w) > 8 {
		return 0, fmt.Errorf("%q is not 1 to 8 hex digits: %w", w, ErrProtocol)
	}
	var v uint64
	for _, c := range w {
		d, ok := hexVal(rune(c))
		if !ok {
			return 0, fmt.Errorf("%q is not hex: %w", w, ErrProtocol)
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}

// parseLen decodes a decimal payload length of at most max.
func parseLen(w []byte, max int) (int, error) {
	if len(w) == 0 || len(w) > 2 {
		return 0, fmt.Errorf("length %q is not 0 to %d: %w", w, max, ErrProtocol)
	}
	n := 0
	for _, c := range w {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("length %q is not decimal: %w", w, ErrProtocol)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("length %d exceeds %d: %w", n, max, ErrProtocol)
	}
	return n, nil
}

// parseHexData decodes a run of hex byte pairs into f's payload.
func parseHexData(w []byte, f *Frame) error {
	if len(w)%2 != 0 || len(w) > 2*MaxFDLen {
		return fmt.Errorf("data %q is not an even number of hex digits, at most %d: %w", quoteStart(w), 2*MaxFDLen, ErrProtocol)
	}
	for i := 0; i < len(w); i += 2 {
		hi, ok1 := hexVal(rune(w[i]))
		lo, ok2 := hexVal(rune(w[i+1]))
		if !ok1 || !ok2 {
			return fmt.Errorf("data %q is not hex: %w", quoteStart(w), ErrProtocol)
		}
		f.Data[i/2] = hi<<4 | lo
	}
	f.Len = uint8(len(w) / 2)
	return nil
}

// parseFDFlags decodes candump's FD flags digit.
func parseFDFlags(w []byte, f *Frame) error {
	if len(w) != 1 {
		return fmt.Errorf("FD flags %q are not one digit 0-3 (1 BRS, 2 ESI): %w", w, ErrProtocol)
	}
	v, ok := hexVal(rune(w[0]))
	if !ok || v > 3 {
		return fmt.Errorf("FD flags %q are not one digit 0-3 (1 BRS, 2 ESI): %w", w, ErrProtocol)
	}
	f.BRS, f.ESI = v&1 != 0, v&2 != 0
	return nil
}

// parseTimestamp decodes SECS.FRACTION with 1 to 9 fraction digits.
func parseTimestamp(w []byte) (time.Time, error) {
	secs, frac, ok := bytes.Cut(w, []byte{'.'})
	if !ok || len(secs) == 0 || len(secs) > 18 || len(frac) == 0 || len(frac) > 9 {
		return time.Time{}, fmt.Errorf("timestamp %q is not SECONDS.FRACTION: %w", w, ErrProtocol)
	}
	var s, ns int64
	for _, c := range secs {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("timestamp %q is not decimal: %w", w, ErrProtocol)
		}
		s = s*10 + int64(c-'0')
	}
	for i := range 9 {
		ns *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return time.Time{}, fmt.Errorf("timestamp %q is not decimal: %w", w, ErrProtocol)
			}
			ns += int64(c - '0')
		}
	}
	return time.Unix(s, ns), nil
}

const (
	hexDigitsUpper = "0123456789ABCDEF"
	hexDigitsLower = "0123456789abcdef"
)

// appendID writes an identifier as socketcand does: three digits for 11-bit,
// eight for 29-bit identifiers and error classes.
func appendID(dst []byte, id uint32, long bool) []byte {
	n := 3
	if long {
		n = 8
	}
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigitsUpper[id>>(4*i)&0xF])
	}
	return dst
}

// appendReceived writes f as the server sends it to clients, stamped t.
func appendReceived(dst []byte, f *Frame, t time.Time) []byte {
	switch {
	case f.Error:
		dst = append(dst, "< error "...)
		dst = appendID(dst, f.ID, true)
	case f.RTR:
		dst = append(dst, "< rtrframe "...)
		dst = appendID(dst, f.ID, f.Extended)
	case f.FD:
		dst = append(dst, "< fdframe "...)
		dst = appendID(dst, f.ID, f.Extended)
	default:
		dst = append(dst, "< frame "...)
		dst = appendID(dst, f.ID, f.Extended)
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, t.Unix(), 10)
	us := t.Nanosecond() / 1000
	dst = append(dst, '.', byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10), ' ')
	if f.RTR {
		dst = strconv.AppendUint(dst, uint64(f.Len), 10)
		return append(dst, " >"...)
	}
	// socketcand writes "< frame 123 1.000000  >" for an empty frame: the
	// data word is empty but both spaces remain, which python-can needs.
	for _, c := range f.Payload() {
		dst = append(dst, hexDigitsUpper[c>>4], hexDigitsUpper[c&0xF])
	}
	if flags := int(f.fdFlags()); f.FD && flags != 0 {
		dst = append(dst, ' ', hexDigitsUpper[flags])
	}
	return append(dst, " >"...)
}

// appendSend writes f as a client sends it.
func appendSend(dst []byte, f *Frame) []byte {
	switch {
	case f.RTR:
		dst = append(dst, "< sendrtr "...)
	case f.FD:
		dst = append(dst, "< sendfd "...)
	default:
		dst = append(dst, "< send "...)
	}
	dst = appendID(dst, f.ID, f.Extended)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(f.Len), 10)
	if !f.RTR {
		for _, c := range f.Payload() {
			dst = append(dst, ' ', hexDigitsLower[c>>4], hexDigitsLower[c&0xF])
		}
	}
	if flags := int(f.fdFlags()); f.FD && flags != 0 {
		dst = append(dst, ' ', hexDigitsUpper[flags])
	}
	return append(dst, " >"...)
}

// socketcandBus is a client attachment to a bus of a socketcand server.
type socketcandBus struct {
	server, bus string
	conn        net.Conn
	hub         Hub

	// sendSem serializes writes; a channel rather than a mutex so that a
	// Send waiting for another can give up when its context ends.
	sendSem chan struct{}

	closing    atomic.Bool
	readerDone chan struct{}
	closeOnce  sync.Once

	mu  sync.Mutex
	err error // why the connection ended, once it has
}

// DialSocketcand connects to the socketcand server at hostport (TCP) and
// opens bus in raw mode. Connecting and the handshake time out after 10 s;
// errors are *SocketcandError and say which step failed and what the
// server said. Of cfg only QueueLen applies: bit rates and CAN FD are the
// server's bus's business.
//
// Like a SocketCAN socket, the attachment sees the frames it sends itself
// and every frame of the other attachments of the bus. socketcand does not
// return a client's own frames, so they are delivered locally once written:
// a frame of another attachment that the server has not yet forwarded then
// arrives after this attachment's later frame, an order the bus never had.
//
// When the connection is lost, every subscription is closed and Send
// returns the reason.
func DialSocketcand(hostport, bus string, cfg Config) (Bus, error) {
	fail := func(step, reply string, err error) error {
		return &SocketcandError{Server: hostport, Bus: bus, Step: step, Reply: reply, Err: err}
	}
	if bus == "" || len(bus) > maxBusNameLen || strings.ContainsAny(bus, " \t\r\n<>") {
		return nil, fail("open", "", fmt.Errorf("bus name must have 1 to %d characters without spaces or '<' '>'", maxBusNameLen))
	}
	conn, err := net.DialTimeout("tcp", hostport, socketcandTimeout)
	if err != nil {
		return nil, fail("connect", "", err)
	}
	if err := conn.SetDeadline(time.Now().Add(socketcandTimeout)); err != nil {
		conn.Close()
		return nil, fail("connect", "", err)
	}
	r := newMsgReader(conn)
	// expect reads the server's answer at one handshake step; on failure it
	// reports the step and the server's words.
	expect := func(step string, want msgKind, hint, refusedHint string) error {
		raw, err := r.next()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("server closed the connection (%w)", io.ErrUnexpectedEOF)
			}
			return fail(step, "", err)
		}
		m, err := parseMessage(raw)
		switch {
		case err != nil:
			return fail(step, string(raw), err)
		case m.kind == msgErrorText:
			return fail(step, string(raw), fmt.Errorf("%w%s", ErrRefused, refusedHint))
		case m.kind != want:
			return fail(step, string(raw), fmt.Errorf("%s: %w", hint, ErrProtocol))
		}
		return nil
	}
	steps := []struct {
		step, send    string
		want          msgKind
		hint, refused string
	}{
		{"greeting", "", msgHi, "expected < hi >; is this a socketcand server?", ""},
		{"open", "< open " + bus + " >", msgOK, "expected < ok > to < open " + bus + " >", "; is a bus called " + bus + " served there?"},
		{"rawmode", "< rawmode >", msgOK, "expected < ok > to < rawmode >", "; the server does not offer raw mode"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := io.WriteString(conn, s.send); err != nil {
				conn.Close()
				return nil, fail(s.step, "", err)
			}
		}
		if err := expect(s.step, s.want, s.hint, s.refused); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fail("rawmode", "", err)
	}
	b := &socketcandBus{
		server:     hostport,
		bus:        bus,
		conn:       conn,
		hub:        Hub{QueueLen: cfg.QueueLen},
		sendSem:    make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	go b.receive(r)
	return b, nil
}

// receive feeds frames from the server into the hub until the connection
// ends.
func (b *socketcandBus) receive(r *msgReader) {
	defer close(b.readerDone)
	for {
		raw, err := r.next()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("server closed the connection (%w)", io.ErrUnexpectedEOF)
			}
			b.fail("receive", "", err)
			return
		}
		m, err := parseMessage(raw)
		switch {
		case err != nil:
			b.fail("receive", string(raw), err)
			return
		case m.kind == msgFrame:
			b.hub.Deliver(m.frame)
		case m.kind == msgErrorText:
			b.fail("receive", string(raw), fmt.Errorf("the server rejected a command, so frames were lost (a server without CAN FD or remote-frame support rejects sendfd and sendrtr): %w", ErrRefused))
			return
		default:
			b.fail("receive", string(raw), fmt.Errorf("unexpected message in raw mode: %w", ErrProtocol))
			return
		}
	}
}

// fail ends the connection for the reason given, unless Close ended it.
func (b *socketcandBus) fail(step, reply string, err error) {
	if b.closing.Load() {
		return
	}
	b.mu.Lock()
	if b.err == nil {
		b.err = &SocketcandError{Server: b.server, Bus: b.bus, Step: step, Reply: reply, Err: err}
	}
	b.mu.Unlock()
	b.conn.Close()
	b.hub.Close()
}

func (b *socketcandBus) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Send writes f to the server and delivers it to this attachment's own
// subscriptions. Error frames cannot be sent: the protocol has no command
// for them. A write interrupted by ctx may leave half a message on the
// connection, so it ends the connection.
func (b *socketcandBus) Send(ctx context.Context, f Frame) error {
	if err := f.Validate(); err != nil {
		return err
	}
	if f.Error {
		return fmt.Errorf("canbus: socketcand cannot carry error frames from a client: %w", ErrFlags)
	}
	select {
	case b.sendSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.sendSem }()
	if b.closing.Load() {
		return ErrClosed
	}
	if err := b.failure(); err != nil {
		return err
	}
	var buf [maxMessageLen]byte
	if err := b.write(ctx, appendSend(buf[:0], &f)); err != nil {
		if b.closing.Load() {
			return ErrClosed
		}
		b.fail("send", "", err)
		return b.failure()
	}
	b.hub.Deliver(f)
	return nil
}

// write writes msg, giving up when ctx ends. A context that ends after the
// write completed must not leave its deadline behind for the next write.
func (b *socketcandBus) write(ctx context.Context, msg []byte) error {
	var mu sync.Mutex
	written := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !written {
			b.conn.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	_, err := b.conn.Write(msg)
	mu.Lock()
	written = true
	mu.Unlock()
	if !stop() {
		if err != nil {
			return errors.Join(ctx.Err(), err)
		}
		return b.conn.SetWriteDeadline(time.Time{})
	}
	return err
}

func (b *socketcandBus) Subscribe(filters ...Filter) *Subscription {
	return b.hub.Subscribe(filters...)
}

// Close ends the connection and closes every subscription.
func (b *socketcandBus) Close() error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		b.conn.Close()
		<-b.readerDone
		b.hub.Close()
	})
	return nil
}
