package transcript

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzOpen reads arbitrary files: the reader must not panic or hang, and
// must keep to Tail and LimitBytes.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("2026-11-21T14:00:00Z -- line 0\n2026-11-21T14:00:01Z -> TesterPresent 3E 00\n2026-11-21T14:00:02Z == end\n"), 1, int64(0), int64(1), true)
	f.Add([]byte("no time\n\n\n 2026-11-21T14:00:00Z x\n2026-11-21T14:00:00.999999999+01:00 y"), -1, int64(5), int64(0), false)
	f.Add([]byte("2026-11-21T14:00:00Z == end\n2026-11-21T14:00:00Z == end"), 0, int64(0), int64(-3), true)
	f.Fuzz(func(t *testing.T, content []byte, tail int, limit, sinceSeconds int64, timestamps bool) {
		path := filepath.Join(t.TempDir(), "t.log")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		opts := Options{Tail: tail, LimitBytes: limit, Timestamps: timestamps}
		if sinceSeconds != 0 {
			opts.SinceTime = base.Add(time.Duration(sinceSeconds) * time.Second)
		}
		for _, follow := range []bool{false, true} {
			// A follower of a file nobody writes ends with its context.
			ctx, cancel := context.WithCancel(context.Background())
			if follow {
				cancel()
			}
			opts.Follow = follow
			r, err := Open(ctx, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(r)
			r.Close()
			cancel()
			if err != nil && err != context.Canceled {
				t.Fatalf("follow %v: %v", follow, err)
			}
			if limit > 0 && int64(len(out)) > limit {
				t.Fatalf("%d bytes with LimitBytes %d", len(out), limit)
			}
			if n := bytes.Count(out, []byte{'\n'}); tail >= 0 && n > tail {
				t.Fatalf("%d lines with Tail %d", n, tail)
			}
			if len(out) > len(content)+1 {
				t.Fatalf("%d bytes out of a %d-byte file", len(out), len(content))
			}
		}
	})
}
