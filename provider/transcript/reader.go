package transcript

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"
)

// PollInterval is how often a follower looks for lines that no writer of
// its own process announces: those of another process.
const PollInterval = time.Second

// MaxLineBytes bounds a line as read; the rest of a longer one, which no
// Writer writes, is dropped.
const MaxLineBytes = 64 << 10

// AllLines is the Tail that shows every line.
const AllLines = -1

// Options select what Open reads, as the kubelet's log endpoint does.
type Options struct {
	// Tail is how many of the last lines to show: AllLines (any negative
	// number) for all, 0 for none (with Follow: only new lines).
	Tail int
	// SinceTime, unless zero, leaves out lines written before it. Tail
	// counts lines before this filter, as the kubelet does.
	SinceTime time.Time
	// Timestamps keeps each line's RFC 3339 timestamp in front of it.
	Timestamps bool
	// LimitBytes, if positive, ends the output after that many bytes,
	// even in the middle of a line.
	LimitBytes int64
	// Follow goes on reading lines as they are written, until the writer
	// closes the transcript, the context ends or the reader is closed.
	Follow bool
}

// FromLogOpts returns the Options of a kubelet API log request.
// virtual-kubelet passes a Tail of 0 both when tailLines is absent and
// when it is 0, so 0 shows every line here; SinceSeconds counts back from
// now. Previous is for the caller, which chooses the file.
func FromLogOpts(o api.ContainerLogOpts) Options {
	opts := Options{
		Tail:       AllLines,
		SinceTime:  o.SinceTime,
		Timestamps: o.Timestamps,
		LimitBytes: int64(o.LimitBytes),
		Follow:     o.Follow,
	}
	if o.Tail > 0 {
		opts.Tail = o.Tail
	}
	if o.SinceSeconds > 0 {
		opts.SinceTime = time.Now().Add(-time.Duration(o.SinceSeconds) * time.Second)
	}
	return opts
}

// Open reads the transcript at path as opts say. With opts.Follow, Read
// waits for new lines until the writer closes the transcript (io.EOF), ctx
// ends (ctx's error) or the reader is closed.
func Open(ctx context.Context, path string, opts Options) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	start, err := tailStart(f, opts.Tail)
	if err == nil {
		_, err = f.Seek(start, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("transcript: %s: %w", path, err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	r := &reader{ctx: ctx, opts: opts, f: f, lines: newLines(f), remaining: -1, done: make(chan struct{})}
	if opts.LimitBytes > 0 {
		r.remaining = opts.LimitBytes
	}
	if opts.Follow {
		r.watch = acquire(path)
	}
	return r, nil
}

// tailStart returns the offset of the first line of the last tail lines
// (all for a negative tail) that are complete now.
func tailStart(f *os.File, tail int) (int64, error) {
	if tail < 0 {
		return 0, nil
	}
	l := newLines(f)
	var starts []int64 // a ring of the starts of the last tail lines
	n := 0
	for {
		start := l.off
		line, err := l.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		if _, text, ok := parseLine(line); ok && string(text) == endMarker {
			continue
		}
		if tail == 0 {
			continue
		}
		if len(starts) < tail {
			starts = append(starts, start)
		} else {
			starts[n%tail] = start
		}
		n++
	}
	switch {
	case tail == 0:
		return l.off, nil
	case n <= tail:
		return 0, nil
	}
	return starts[n%tail], nil
}

// lines splits a file into lines, keeping an unterminated last line until
// its end is written.
type lines struct {
	br      *bufio.Reader
	partial []byte
	over    bool  // the line is longer than MaxLineBytes; the rest is dropped
	off     int64 // the end of the last complete line
	n       int64 // bytes of the partial line in the file
}

func newLines(r io.Reader) *lines { return &lines{br: bufio.NewReader(r)} }

// next returns the next complete line without its newline, valid until
// the next call, or io.EOF when no complete line follows yet.
func (l *lines) next() ([]byte, error) {
	for {
		chunk, err := l.br.ReadSlice('\n')
		l.n += int64(len(chunk))
		if err == nil && len(l.partial) == 0 && !l.over {
			l.off += l.n
			l.n = 0
			return chunk[:len(chunk)-1], nil
		}
		if room := MaxLineBytes - len(l.partial); len(chunk) > room {
			chunk, l.over = chunk[:room], true
		}
		l.partial = append(l.partial, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		line := bytes.TrimSuffix(l.partial, []byte{'\n'})
		l.partial, l.over = l.partial[:0], false
		l.off += l.n
		l.n = 0
		return line, nil
	}
}

// parseLine splits a line into its time and its text; ok is false for a
// line that does not start with a timestamp, which is all text.
func parseLine(line []byte) (t time.Time, text []byte, ok bool) {
	i := bytes.IndexByte(line, ' ')
	if i <= 0 || i > len("2006-01-02T15:04:05.999999999+07:00") {
		return time.Time{}, line, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return time.Time{}, line, false
	}
	return t, line[i+1:], true
}

// reader is what Open returns.
type reader struct {
	ctx   context.Context
	opts  Options
	f     *os.File
	lines *lines
	watch *watch // with Follow

	pending   []byte    // output not yet read
	remaining int64     // bytes LimitBytes still allows; negative: no limit
	last      time.Time // of the last line with a timestamp
	ended     bool      // the last complete line is the end marker
	err       error     // what Read returns once pending is empty

	done      chan struct{}
	closeOnce sync.Once
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		select {
		case <-r.done:
			return 0, os.ErrClosed
		default:
		}
		var changed <-chan struct{}
		if r.opts.Follow {
			changed = r.watch.changed()
		}
		line, err := r.lines.next()
		switch {
		case err == nil:
			r.show(line)
		case err != io.EOF:
			r.err = fmt.Errorf("transcript: %w", err)
		case !r.opts.Follow || r.ended:
			r.err = io.EOF
		default:
			r.err = r.wait(changed)
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// wait waits for a line from a writer of this process, the next poll for
// one of another process, or the end of the reader.
func (r *reader) wait(changed <-chan struct{}) error {
	poll := time.NewTimer(PollInterval)
	defer poll.Stop()
	select {
	case <-changed:
	case <-poll.C:
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-r.done:
		return os.ErrClosed
	}
	return nil
}

// show adds line to the output, as the options say.
func (r *reader) show(line []byte) {
	t, text, ok := parseLine(line)
	if ok {
		r.last = t
		r.ended = string(text) == endMarker
		if r.ended {
			return
		}
	} else {
		r.ended = false
		t = r.last
	}
	if !r.opts.SinceTime.IsZero() && t.Before(r.opts.SinceTime) {
		return
	}
	if r.opts.Timestamps {
		text = line
	}
	r.pending = append(append(r.pending[:0], text...), '\n')
	if r.remaining >= 0 {
		if int64(len(r.pending)) >= r.remaining {
			r.pending = r.pending[:r.remaining]
			r.err = io.EOF
		}
		r.remaining -= int64(len(r.pending))
	}
}

// Close ends the reader; a Read waiting for lines returns.
func (r *reader) Close() error {
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		if r.watch != nil {
			r.watch.release()
		}
		err = r.f.Close()
	})
	return err
}
