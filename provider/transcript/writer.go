package transcript

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// Limits of what a line shows.
const (
	// MaxMessageBytes is the longest UDS message shown in full; a longer
	// one (a TransferData block) shows its first AbbreviatedBytes and its
	// length.
	MaxMessageBytes  = 64
	AbbreviatedBytes = 16
	// MaxTextBytes bounds the text of a line the provider writes.
	MaxTextBytes = 4096
)

// endMarker is the text of the line Close appends. Every other line's
// text starts with "->", "<-" or "--", so none can be taken for it.
const endMarker = "== end"

// ErrClosed is the error of writes after Close or Release.
var ErrClosed = errors.New("transcript: closed")

// Writer appends records to a transcript file. Its methods may be called
// from several goroutines. Writes do not return errors, so that its
// methods can be a flash.Engine's Transcript function: the first error is
// kept, and Err and Close report it.
type Writer struct {
	watch *watch
	mu    sync.Mutex
	f     *os.File // nil once closed
	err   error
	buf   []byte
}

// Create opens the transcript at path for appending, creating the file
// and its directory if needed. A file that exists already, such as the
// transcript of a flash that the provider's previous process began, is
// continued (after its end marker, if it was closed: followers then go on).
// Nothing is synced to disk: a transcript outlives the process, not a
// power loss of the host.
func Create(path string) (*Writer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	// A process that died in the middle of a line left it unterminated:
	// end it, so that the next record starts a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err != nil && err != io.EOF {
			f.Close()
			return nil, fmt.Errorf("transcript: %w", err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return nil, fmt.Errorf("transcript: %w", err)
			}
		}
	}
	return &Writer{f: f, watch: acquire(path)}, nil
}

// Entry appends one UDS message. Its signature is that of
// flash.Engine.Transcript.
func (w *Writer) Entry(e flash.TranscriptEntry) {
	w.line(e.Time, entryText(e))
}

// Note appends a line of the provider's own, such as a phase change or
// the outcome, at time t (now if zero). Control characters in text become
// spaces, so a note is always one line.
func (w *Writer) Note(t time.Time, text string) {
	w.line(t, "-- "+clean(text))
}

// Event appends a flash engine's progress report as a note.
func (w *Writer) Event(ev flash.Event) {
	w.Note(ev.Time, eventText(ev))
}

// Err returns the first error of a write, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close marks the transcript finished, which ends every reader that
// follows it, and closes the file. It returns the first error of any
// write.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeLocked(time.Now(), endMarker)
	return w.releaseLocked()
}

// Release closes the file without marking the transcript finished: for a
// process that stops while the flash is still to be resumed, by a later
// Create of the same path. Followers go on waiting for lines.
func (w *Writer) Release() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.releaseLocked()
}

func (w *Writer) releaseLocked() error {
	if w.f == nil {
		return w.err
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("transcript: %w", err)
	}
	w.f = nil
	w.watch.release()
	return w.err
}

func (w *Writer) line(t time.Time, text string) {
	if t.IsZero() {
		t = time.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeLocked(t, text)
}

// writeLocked writes one record in a single write, so that lines of
// concurrent writers to the same file (O_APPEND) never interleave, and
// wakes the followers. It goes on after a failed write, so that the end
// marker still gets its chance once the disk has room again.
func (w *Writer) writeLocked(t time.Time, text string) {
	if w.f == nil {
		if w.err == nil {
			w.err = ErrClosed
		}
		return
	}
	b := t.UTC().AppendFormat(w.buf[:0], time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, '\n')
	w.buf = b
	if _, err := w.f.Write(b); err != nil && w.err == nil {
		w.err = fmt.Errorf("transcript: %w", err)
	}
	w.watch.notify()
}

func entryText(e flash.TranscriptEntry) string {
	var b strings.Builder
	if e.Sent {
		b.WriteString("-> ")
	} else {
		b.WriteString("<- ")
	}
	switch {
	case e.Service != "":
		b.WriteString(clean(e.Service))
	case len(e.Message) == 0:
		b.WriteString("(empty message)")
	default:
		b.WriteString("(unknown service)")
	}
	if e.NRC != "" {
		b.WriteByte(' ')
		b.WriteString(clean(e.NRC))
	}
	if len(e.Message) > 0 {
		b.WriteByte(' ')
		if n := secret(e.Message); n > 0 {
			b.WriteString(hexBytes(e.Message[:len(e.Message)-n]))
			fmt.Fprintf(&b, " (%d bytes withheld)", n)
		} else {
			b.WriteString(hexBytes(e.Message))
		}
	}
	if e.Elapsed > 0 {
		fmt.Fprintf(&b, " (+%v)", e.Elapsed.Round(time.Microsecond))
	}
	return b.String()
}

// secret returns how many bytes at the end of msg are a SecurityAccess
// seed or key, which a transcript never shows: one pair is often enough to
// work out an OEM's secret. The service and sub-function stay, so the
// transcript still says which level was unlocked.
func secret(msg []byte) int {
	if len(msg) < 2 {
		return 0
	}
	switch msg[0] {
	case byte(uds.SecurityAccess), byte(uds.SecurityAccess) + 0x40: // request (key) and positive response (seed)
		return len(msg) - 2
	}
	return 0
}

// hexBytes shows msg as "36 01 5A ...", or for a message longer than
// MaxMessageBytes its first AbbreviatedBytes and its length: a transcript
// of a megabyte's flash stays readable and small.
func hexBytes(msg []byte) string {
	if len(msg) <= MaxMessageBytes {
		return fmt.Sprintf("% X", msg)
	}
	return fmt.Sprintf("% X ... (%d bytes)", msg[:AbbreviatedBytes], len(msg))
}

func eventText(ev flash.Event) string {
	var b strings.Builder
	b.WriteString(string(ev.Phase))
	switch {
	case ev.Total > 0 && ev.Bytes > 0:
		fmt.Fprintf(&b, " %d/%d bytes (%d%%)", ev.Bytes, ev.Total, ev.Bytes*100/ev.Total)
	case ev.Total > 0:
		fmt.Fprintf(&b, " %d bytes", ev.Total)
	}
	if ev.Rate > 0 {
		fmt.Fprintf(&b, ", %.1f KiB/s", ev.Rate/1024)
	}
	if ev.ETA > 0 {
		fmt.Fprintf(&b, ", ETA %v", ev.ETA.Round(time.Second))
	}
	if ev.Note != "" {
		b.WriteString(": ")
		b.WriteString(ev.Note)
	}
	return b.String()
}

// clean makes s one line of valid UTF-8 of at most MaxTextBytes.
func clean(s string) string {
	n := len(s)
	if n > MaxTextBytes {
		s = s[:MaxTextBytes]
	}
	s = strings.ToValidUTF8(s, string(utf8.RuneError))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, s)
	if n > MaxTextBytes {
		s += fmt.Sprintf("... (%d bytes)", n)
	}
	return s
}
