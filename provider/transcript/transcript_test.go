package transcript

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
)

var base = time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)

// at is the time of line i of written.
func at(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

// written makes a closed transcript of notes "line 0" to "line n-1", line
// i at at(i), and returns its path.
func written(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flash.log")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		w.Note(at(i), fmt.Sprintf("line %d", i))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func read(t *testing.T, path string, opts Options) string {
	t.Helper()
	r, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading %+v: %v", opts, err)
	}
	return string(b)
}

// notes are the lines "-- line i" for i in from..to-1.
func notes(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "-- line %d\n", i)
	}
	return b.String()
}

func TestEntriesAreOneLineEach(t *testing.T) {
	block := make([]byte, 4093)
	block[0], block[1] = 0x36, 0x01
	for i := 2; i < len(block); i++ {
		block[i] = byte(i)
	}
	tests := []struct {
		name string
		e    flash.TranscriptEntry
		want string
	}{
		{"request", flash.TranscriptEntry{Sent: true, Service: "ReadDataByIdentifier", Message: []byte{0x22, 0xF1, 0x89}},
			"-> ReadDataByIdentifier 22 F1 89"},
		{"response with its delay", flash.TranscriptEntry{Service: "ReadDataByIdentifier", Message: []byte{0x62, 0xF1, 0x89, 0x31}, Elapsed: 1234567 * time.Nanosecond},
			"<- ReadDataByIdentifier 62 F1 89 31 (+1.235ms)"},
		{"negative response", flash.TranscriptEntry{Service: "RoutineControl", NRC: "requestOutOfRange", Message: []byte{0x7F, 0x31, 0x31}},
			"<- RoutineControl requestOutOfRange 7F 31 31"},
		{"transfer block abbreviated", flash.TranscriptEntry{Sent: true, Service: "TransferData", Message: block},
			"-> TransferData 36 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F ... (4093 bytes)"},
		{"64 bytes in full", flash.TranscriptEntry{Sent: true, Service: "WriteDataByIdentifier", Message: block[:64]},
			"-> WriteDataByIdentifier " + fmt.Sprintf("% X", block[:64])},
		{"empty", flash.TranscriptEntry{Sent: true}, "-> (empty message)"},
		{"names cannot break the line", flash.TranscriptEntry{Service: "a\nb", NRC: "c\r\nd", Message: []byte{0x7F}},
			"<- a b c  d 7F"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.log")
			w, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			tt.e.Time = base
			w.Entry(tt.e)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := read(t, path, Options{Tail: AllLines}); got != tt.want+"\n" {
				t.Errorf("got  %q\nwant %q", got, tt.want+"\n")
			}
			if got := read(t, path, Options{Tail: AllLines, Timestamps: true}); got != "2026-11-21T14:00:00Z "+tt.want+"\n" {
				t.Errorf("with timestamps: %q", got)
			}
		})
	}
}

func TestNotesAndEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.log")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Note(base, "outcome: rolled back\nthe new image did not confirm")
	w.Event(flash.Event{Time: base, Phase: flash.PhaseTransfer, Bytes: 4096, Total: 65536, Rate: 42189, ETA: 1400 * time.Millisecond})
	w.Event(flash.Event{Time: base, Phase: flash.PhasePlan, Total: 1048576, Note: "full image: no delta for the running image"})
	w.Event(flash.Event{Time: base, Phase: flash.PhaseDone, Note: "the target image runs and is confirmed"})
	w.Note(base, strings.Repeat("x", MaxTextBytes+10))
	w.Note(base, "== end") // not the end marker
	if err := w.Release(); err != nil {
		t.Fatal(err)
	}
	want := "-- outcome: rolled back the new image did not confirm\n" +
		"-- transfer 4096/65536 bytes (6%), 41.2 KiB/s, ETA 1s\n" +
		"-- plan 1048576 bytes: full image: no delta for the running image\n" +
		"-- done: the target image runs and is confirmed\n" +
		"-- " + strings.Repeat("x", MaxTextBytes) + fmt.Sprintf("... (%d bytes)\n", MaxTextBytes+10) +
		"-- == end\n"
	if got := read(t, path, Options{Tail: AllLines}); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTail(t *testing.T) {
	path := written(t, 10)
	tests := []struct {
		tail int
		want string
	}{
		{AllLines, notes(0, 10)},
		{-7, notes(0, 10)},
		{0, ""},
		{1, notes(9, 10)},
		{3, notes(7, 10)},
		{10, notes(0, 10)},
		{11, notes(0, 10)},
		{1 << 40, notes(0, 10)},
	}
	for _, tt := range tests {
		if got := read(t, path, Options{Tail: tt.tail}); got != tt.want {
			t.Errorf("tail %d:\n%s\nwant\n%s", tt.tail, got, tt.want)
		}
	}
}

func TestSince(t *testing.T) {
	path := written(t, 10)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"since the start", Options{Tail: AllLines, SinceTime: base}, notes(0, 10)},
		{"since a line's time includes it", Options{Tail: AllLines, SinceTime: at(6)}, notes(6, 10)},
		{"between two lines", Options{Tail: AllLines, SinceTime: at(6).Add(time.Nanosecond)}, notes(7, 10)},
		{"after the last", Options{Tail: AllLines, SinceTime: at(20)}, ""},
		// The kubelet takes the tail first, then leaves out older lines.
		{"tail then since", Options{Tail: 5, SinceTime: at(3)}, notes(5, 10)},
		{"since within the tail", Options{Tail: 5, SinceTime: at(8)}, notes(8, 10)},
		{"in another zone", Options{Tail: AllLines, SinceTime: at(8).In(time.FixedZone("CET", 3600))}, notes(8, 10)},
	}
	for _, tt := range tests {
		if got := read(t, path, tt.opts); got != tt.want {
			t.Errorf("%s:\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

func TestLimitBytes(t *testing.T) {
	path := written(t, 10)
	all := notes(0, 10)
	stamped := read(t, path, Options{Tail: AllLines, Timestamps: true})
	tests := []struct {
		opts Options
		want string
	}{
		{Options{Tail: AllLines, LimitBytes: 1}, all[:1]},
		{Options{Tail: AllLines, LimitBytes: 11}, all[:11]},                       // one whole line
		{Options{Tail: AllLines, LimitBytes: 15}, all[:15]},                       // in the middle of a line
		{Options{Tail: AllLines, LimitBytes: int64(len(all))}, all},               //
		{Options{Tail: AllLines, LimitBytes: 1 << 30}, all},                       //
		{Options{Tail: 2, LimitBytes: 13}, notes(8, 10)[:13]},                     // after the tail
		{Options{Tail: AllLines, LimitBytes: 40, Timestamps: true}, stamped[:40]}, // timestamps count
	}
	for _, tt := range tests {
		if got := read(t, path, tt.opts); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.opts, got, tt.want)
		}
	}
}

func TestTimestampsAreRFC3339Nano(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.log")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	when := []time.Time{base.Add(123456789), base.Add(time.Millisecond).In(time.FixedZone("CET", 3600)), base}
	for _, tm := range when {
		w.Note(tm, "x")
	}
	w.Close()
	got := strings.Split(strings.TrimSuffix(read(t, path, Options{Tail: AllLines, Timestamps: true}), "\n"), "\n")
	if len(got) != len(when) {
		t.Fatalf("%d lines, want %d: %q", len(got), len(when), got)
	}
	for i, l := range got {
		stamp, text, _ := strings.Cut(l, " ")
		tm, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil || !tm.Equal(when[i]) || text != "-- x" || !strings.HasSuffix(stamp, "Z") {
			t.Errorf("line %q: want %s in UTC, then the text", l, when[i].UTC().Format(time.RFC3339Nano))
		}
	}
}

func TestOpenMissingTranscript(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "none.log"), Options{Tail: AllLines})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// follow reads path with Follow in a goroutine; the result arrives on
// the channel when the reader ends.
func follow(ctx context.Context, t *testing.T, path string, opts Options) <-chan string {
	t.Helper()
	opts.Follow = true
	r, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			b = append(b, "error: "+err.Error()...)
		}
		out <- string(b)
	}()
	return out
}

// ended reports whether the follower has returned, once every goroutine
// of the bubble waits.
func ended(out <-chan string) (string, bool) {
	synctest.Wait()
	select {
	case s := <-out:
		return s, true
	default:
		return "", false
	}
}

func TestFollowEndsAtClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.log")
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w.Note(at(0), "line 0")
		w.Note(at(1), "line 1")
		tail1 := follow(context.Background(), t, path, Options{Tail: 1})
		all := follow(context.Background(), t, path, Options{Tail: AllLines})
		onlyNew := follow(context.Background(), t, path, Options{Tail: 0})
		for i := 2; i < 5; i++ {
			time.Sleep(10 * time.Millisecond)
			w.Note(at(i), fmt.Sprintf("line %d", i))
		}
		if _, done := ended(all); done {
			t.Fatal("a follower ended before the transcript was closed")
		}
		w.Close()
		for _, c := range []struct {
			out  <-chan string
			want string
		}{{tail1, notes(1, 5)}, {all, notes(0, 5)}, {onlyNew, notes(2, 5)}} {
			got, done := ended(c.out)
			if !done {
				t.Fatal("a follower did not end when the transcript was closed")
			}
			if got != c.want {
				t.Errorf("follower read\n%s\nwant\n%s", got, c.want)
			}
		}
		// Following a finished transcript reads it and ends.
		if got, done := ended(follow(context.Background(), t, path, Options{Tail: 2})); !done || got != notes(3, 5) {
			t.Errorf("following a closed transcript: %q, ended %v", got, done)
		}
	})
}

func TestFollowEndsWithItsContextOrClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := written(t, 0)
		os.WriteFile(path, []byte("2026-11-21T14:00:00Z -- open\n"), 0o640) // an unfinished transcript
		ctx, cancel := context.WithCancel(context.Background())
		out := follow(ctx, t, path, Options{Tail: AllLines})
		time.Sleep(time.Hour)
		if _, done := ended(out); done {
			t.Fatal("a follower of an unfinished transcript ended by itself")
		}
		cancel()
		if got, done := ended(out); !done || got != "-- open\nerror: context canceled" {
			t.Fatalf("after its context ended the follower read %q, ended %v", got, done)
		}

		r, err := Open(context.Background(), path, Options{Tail: AllLines, Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(r)
			errc <- err
		}()
		synctest.Wait()
		r.Close()
		if err := <-errc; !errors.Is(err, os.ErrClosed) {
			t.Fatalf("a Read waiting when the reader closed returned %v, want os.ErrClosed", err)
		}
	})
}

// TestFollowConcurrentWriters: lines written by several goroutines at
// once reach every follower whole and exactly once.
func TestFollowConcurrentWriters(t *testing.T) {
	const writers, each = 4, 200
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.log")
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		var outs []<-chan string
		for range 3 {
			outs = append(outs, follow(context.Background(), t, path, Options{Tail: AllLines}))
		}
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				for i := range each {
					w.Entry(flash.TranscriptEntry{Time: at(i), Sent: true, Service: "TransferData", Message: bytes.Repeat([]byte{byte(g)}, 100+i)})
					w.Note(at(i), fmt.Sprintf("writer %d line %d", g, i))
				}
			})
		}
		wg.Wait()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want := strings.Split(read(t, path, Options{Tail: AllLines}), "\n")
		if len(want) != 2*writers*each+1 {
			t.Fatalf("the file has %d lines, want %d", len(want)-1, 2*writers*each)
		}
		for _, l := range want[:len(want)-1] {
			if !strings.HasPrefix(l, "-> TransferData ") && !strings.HasPrefix(l, "-- writer ") {
				t.Fatalf("a line is torn: %q", l)
			}
		}
		for _, out := range outs {
			got, done := ended(out)
			if !done {
				t.Fatal("a follower did not end")
			}
			if g := strings.Split(got, "\n"); !slices.Equal(g, want) {
				t.Errorf("a follower read %d lines, want the file's %d", len(g), len(want))
			}
		}
	})
}

// TestReopenAfterRestart: a transcript outlives its process. A flash
// resumed by the next process continues the same file: its followers are
// woken by the new writer, and those of a file that another process
// writes find its lines by polling.
func TestReopenAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "pods", "default_brake-fw", "1.log")
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w.Note(at(0), "line 0")
		w.Release() // the process stops mid-flash
		// ... after dying in the middle of a line.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("2026-11-21T14:00:01Z -- line 1 torn")
		f.Close()
		if got := read(t, path, Options{Tail: AllLines}); got != notes(0, 1) {
			t.Fatalf("before the restart: %q; want the complete lines", got)
		}

		// The new process: a follower first, then the resumed flash.
		out := follow(context.Background(), t, path, Options{Tail: AllLines})
		w, err = Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w.Note(at(2), "line 2")
		if got, done := ended(out); done {
			t.Fatalf("the follower ended early: %q", got)
		}
		// Another process appends (no notification): the poll finds it.
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("2026-11-21T14:00:03Z -- line 3\n")
		f.Close()
		time.Sleep(PollInterval)
		w.Note(at(4), "line 4")
		w.Close()
		want := notes(0, 1) + "-- line 1 torn\n" + notes(2, 5)
		if got, done := ended(out); !done || got != want {
			t.Fatalf("the follower read\n%s(ended %v), want\n%s", got, done, want)
		}
		if got := read(t, path, Options{Tail: AllLines}); got != want {
			t.Fatalf("after the restart:\n%s\nwant\n%s", got, want)
		}
	})
}

// TestPollFindsAnotherProcessesLines: with no writer in this process, a
// follower sees appended lines within PollInterval, and the end marker
// another process writes ends it.
func TestPollFindsAnotherProcessesLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "t.log")
		os.WriteFile(path, nil, 0o640)
		out := follow(context.Background(), t, path, Options{Tail: AllLines})
		start := time.Now()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteString("2026-11-21T14:00:00Z -- line 0\n2026-11-21T14:00:01Z == end\n")
		got, done := ended(out)
		for ; !done; got, done = ended(out) {
			time.Sleep(time.Millisecond)
		}
		if got != notes(0, 1) {
			t.Errorf("read %q", got)
		}
		if waited := time.Since(start); waited > PollInterval {
			t.Errorf("the follower took %v to find the lines, longer than PollInterval", waited)
		}
	})
}

// TestGarbageLinesReadAsText: lines without a timestamp are shown as
// they are and take the time of the line before for SinceTime.
func TestGarbageLinesReadAsText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.log")
	long := strings.Repeat("y", MaxLineBytes+100)
	content := "no timestamp\n" +
		"2026-11-21T14:00:05Z -- five\n" +
		"also none\n" +
		"2026-13-21T14:00:00Z bad month\n" +
		"2026-11-21T14:00:01Z == end\n" + // an end marker that is not the last line
		long + "\n" +
		"\n"
	os.WriteFile(path, []byte(content), 0o640)
	want := "no timestamp\n-- five\nalso none\n2026-13-21T14:00:00Z bad month\n" + long[:MaxLineBytes] + "\n\n"
	if got := read(t, path, Options{Tail: AllLines}); got != want {
		t.Errorf("read %q", got)
	}
	if got := read(t, path, Options{Tail: 3}); got != "2026-13-21T14:00:00Z bad month\n"+long[:MaxLineBytes]+"\n\n" {
		t.Errorf("tail 3 read %q", got)
	}
	if got := read(t, path, Options{Tail: AllLines, SinceTime: at(5)}); !strings.HasPrefix(got, "-- five\nalso none\n2026-13") {
		t.Errorf("since read %q", got)
	}
}

func TestFromLogOpts(t *testing.T) {
	since := base.Add(-time.Hour)
	tests := []struct {
		in   api.ContainerLogOpts
		want Options
	}{
		{api.ContainerLogOpts{}, Options{Tail: AllLines}},
		{api.ContainerLogOpts{Tail: 20, LimitBytes: 100, Timestamps: true, Follow: true, SinceTime: since},
			Options{Tail: 20, LimitBytes: 100, Timestamps: true, Follow: true, SinceTime: since}},
	}
	for _, tt := range tests {
		if got := FromLogOpts(tt.in); got != tt.want {
			t.Errorf("FromLogOpts(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		got := FromLogOpts(api.ContainerLogOpts{SinceSeconds: 30})
		if want := time.Now().Add(-30 * time.Second); !got.SinceTime.Equal(want) {
			t.Errorf("SinceSeconds 30 gives SinceTime %v, want %v", got.SinceTime, want)
		}
	})
}

func TestWriterAfterCloseKeepsTheError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.log")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Note(base, "x")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Note(base, "after")
	if !errors.Is(w.Err(), ErrClosed) || !errors.Is(w.Close(), ErrClosed) {
		t.Fatalf("a note after Close: Err %v; want ErrClosed", w.Err())
	}
	if got := read(t, path, Options{Tail: AllLines}); got != "-- x\n" {
		t.Fatalf("read %q", got)
	}
}

func BenchmarkAppend(b *testing.B) {
	path := filepath.Join(b.TempDir(), "t.log")
	w, err := Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	block := make([]byte, 4093)
	block[0] = 0x36
	e := flash.TranscriptEntry{Time: base, Sent: true, Service: "TransferData", Message: block}
	b.ReportAllocs()
	for b.Loop() {
		w.Entry(e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// TestSecurityAccessSecretsWithheld: seeds and keys never reach a
// transcript; the level and the outcome do.
func TestSecurityAccessSecretsWithheld(t *testing.T) {
	for _, tc := range []struct {
		msg  []byte
		want string
	}{
		{[]byte{0x27, 0x11}, "-> SecurityAccess 27 11"},
		{[]byte{0x67, 0x11, 0xDE, 0xAD, 0xBE, 0xEF}, "<- SecurityAccess 67 11 (4 bytes withheld)"},
		{[]byte{0x27, 0x12, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}, "-> SecurityAccess 27 12 (8 bytes withheld)"},
		{[]byte{0x67, 0x12}, "<- SecurityAccess 67 12"},
		{[]byte{0x22, 0xF1, 0x89}, "-> SecurityAccess 22 F1 89"}, // other services are shown whole
	} {
		got := entryText(flash.TranscriptEntry{Sent: tc.msg[0] < 0x40, Service: "SecurityAccess", Message: tc.msg})
		if got != tc.want {
			t.Errorf("%X: %q, want %q", tc.msg, got, tc.want)
		}
		for _, secret := range []string{"DE AD", "05 06"} {
			if strings.Contains(got, secret) {
				t.Errorf("%X: %q shows the secret", tc.msg, got)
			}
		}
	}
}
