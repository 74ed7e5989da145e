package diag

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzRun gives Run arbitrary command lines (fields separated by NUL, as
// kubectl passes argv) without an ECU: nothing may panic, a refusal names
// a command off the list, and only allowed commands with good arguments
// get as far as wanting the bus.
func FuzzRun(f *testing.F) {
	for _, s := range []string{"read-did\x00F189", "read-did\x000x\x00", "write-did\x00F189\x0000", "clear-dtc\x00FFFFFF", "help", "", "identity\x00\x00", "read-dtc\x00+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, "\x00")
		if line == "" {
			args = nil
		}
		var out bytes.Buffer
		err := Run(context.Background(), nil, args, &out)
		var re *RefusedError
		var ue *UsageError
		switch {
		case err == nil:
			if args[0] != "help" {
				t.Fatalf("%q ran without an ECU", args)
			}
		case errors.As(err, &re):
			if len(args) > 0 && slices.Contains(Commands(), args[0]) {
				t.Fatalf("%q refused: %v", args, err)
			}
		case errors.As(err, &ue):
			if !slices.Contains(Commands(), ue.Command) {
				t.Fatalf("usage error of %q for %q", ue.Command, args)
			}
		default:
			if !strings.Contains(err.Error(), "no UDS connection") {
				t.Fatalf("%q: %v", args, err)
			}
		}
		// Check refuses what Run refuses, and passes what Run would send.
		cerr := Check(args)
		if cerr != nil && ExitCode(cerr) != ExitCode(err) || cerr == nil && ExitCode(err) != 0 && ExitCode(err) != ExitFailed {
			t.Fatalf("%q: Check says %v, Run %v", args, cerr, err)
		}
		if err != nil && out.Len() > 0 {
			t.Fatalf("%q failed but printed %q", args, out.String())
		}
	})
}
