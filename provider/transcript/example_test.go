package transcript_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/provider/transcript"
)

// The provider gives a flash job's messages and events to a Writer and
// serves the kubelet's log requests with Open.
func Example() {
	dir, err := os.MkdirTemp("", "transcripts")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "default", "brake-fw", "1.log")

	w, err := transcript.Create(path)
	if err != nil {
		panic(err)
	}
	// A flash.Engine{Transcript: w.Entry} records every UDS message of
	// its jobs, and the provider adds the job's events; here, by hand:
	now := time.Date(2026, 11, 21, 14, 0, 0, 0, time.UTC)
	w.Event(flash.Event{Time: now, Phase: flash.PhaseUnlock})
	w.Entry(flash.TranscriptEntry{Time: now, Sent: true, Service: "DiagnosticSessionControl", Message: []byte{0x10, 0x02}})
	w.Entry(flash.TranscriptEntry{Time: now, Service: "DiagnosticSessionControl", NRC: "conditionsNotCorrect", Message: []byte{0x7F, 0x10, 0x22}, Elapsed: 3 * time.Millisecond})
	w.Note(now, "outcome: failed")
	w.Close()

	// The kubelet API's log handler, for `kubectl logs --tail=2`.
	r, err := transcript.Open(context.Background(), path, transcript.FromLogOpts(api.ContainerLogOpts{Tail: 2}))
	if err != nil {
		panic(err)
	}
	defer r.Close()
	io.Copy(os.Stdout, r)
	// Output:
	// <- DiagnosticSessionControl conditionsNotCorrect 7F 10 22 (+3ms)
	// -- outcome: failed
}
