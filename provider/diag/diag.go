package diag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// MaxDIDs is how many DIDs one read-did may name: enough for any
// identification set, few enough that one exec cannot keep the ECU busy.
const MaxDIDs = 16

// RefusedError is a command that is not on the allow-list. Nothing was
// sent to the ECU.
type RefusedError struct {
	Command string
}

func (e *RefusedError) Error() string {
	allowed := strings.Join(Commands(), ", ")
	if e.Command == "" {
		return "diag: no command given; allowed: " + allowed
	}
	return fmt.Sprintf("diag: %.64q is not an allowed command; allowed: %s", e.Command, allowed)
}

// UsageError is an allowed command with arguments it cannot take. Nothing
// was sent to the ECU.
type UsageError struct {
	Command string
	Problem string
}

func (e *UsageError) Error() string {
	c, _ := find(e.Command)
	return fmt.Sprintf("diag: %s: %s; usage: %s", e.Command, e.Problem, c.usage())
}

// Exit statuses of ExitCode, as a shell reports them.
const (
	ExitFailed  = 1   // the ECU refused or did not answer
	ExitUsage   = 2   // bad arguments
	ExitRefused = 126 // not on the allow-list: the shell's "cannot execute"
)

// ExitCode returns the exit status kubectl should show for an error of
// Run: 0 for nil, ExitUsage, ExitRefused, or ExitFailed for the rest.
func ExitCode(err error) int {
	var re *RefusedError
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &re):
		return ExitRefused
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitFailed
}

// command is one entry of the allow-list. parse reads every argument and
// returns the action to run, so that bad arguments are refused before
// anything goes on the bus.
type command struct {
	name     string
	args     string // synopsis of the arguments
	summary  string
	min, max int // argument counts
	parse    func(args []string) (action, error)
}

// action is a parsed command, ready to speak to the ECU.
type action func(ctx context.Context, c *uds.Client, out io.Writer) error

func (c command) usage() string {
	return strings.TrimSpace(c.name + " " + c.args)
}

// allowed is the allow-list. help lists it, so it stands apart
// (helpCommand) to keep the table free of an initialization cycle.
var allowed = []command{
	{"read-did", "DID [DID...]", "read data identifiers (hex, 0x optional); identification DIDs as text", 1, MaxDIDs, readDID},
	{"read-dtc", "[MASK]", "read the DTCs whose status matches MASK (hex, default FF)", 0, 1, readDTC},
	{"clear-dtc", "[GROUP]", "clear the DTCs of GROUP (hex, default FFFFFF: all)", 0, 1, clearDTC},
	{"tester-present", "", "check that the ECU answers", 0, 0, noArgs(testerPresent)},
	{"identity", "", "read the ECU's identification DIDs (versions, hardware and part numbers, serial)", 0, 0, noArgs(identity)},
}

var helpCommand = command{name: "help", summary: "list the allowed commands"}

// Commands returns the names of the allowed commands.
func Commands() []string {
	names := make([]string, 0, len(allowed)+1)
	for _, c := range allowed {
		names = append(names, c.name)
	}
	return append(names, helpCommand.name)
}

// find looks name up exactly: no prefixes, no case folding, so that
// nothing but an allowed command's own name runs it.
func find(name string) (command, bool) {
	if name == helpCommand.name {
		return helpCommand, true
	}
	for _, c := range allowed {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Run runs the diagnostic command args (its name, then its arguments)
// against the ECU behind c and writes what it read to out, one line per
// value. A command that is not on the allow-list is a *RefusedError and
// bad arguments a *UsageError, both before anything is sent; a refusal of
// the ECU is an error wrapping its *uds.NegativeResponse.
func Run(ctx context.Context, c *uds.Client, args []string, out io.Writer) error {
	cmd, act, err := prepare(args)
	switch {
	case err != nil:
		return err
	case cmd.name == helpCommand.name:
		return help(out)
	case c == nil:
		return fmt.Errorf("diag: %s: no UDS connection to the ECU", cmd.name)
	}
	return act(ctx, c, out)
}

// Check returns the *RefusedError or *UsageError that Run would return
// for args, or nil when Run would run them: a caller checks before it
// connects to the ECU.
func Check(args []string) error {
	_, _, err := prepare(args)
	return err
}

// prepare finds the command of args and parses its arguments. The action
// of help is nil: it needs no ECU.
func prepare(args []string) (command, action, error) {
	if len(args) == 0 {
		return command{}, nil, &RefusedError{Command: ""}
	}
	cmd, ok := find(args[0])
	if !ok {
		return command{}, nil, &RefusedError{Command: args[0]}
	}
	args = args[1:]
	switch {
	case len(args) < cmd.min:
		return cmd, nil, &UsageError{Command: cmd.name, Problem: "too few arguments"}
	case len(args) > cmd.max:
		return cmd, nil, &UsageError{Command: cmd.name, Problem: fmt.Sprintf("too many arguments (at most %d)", cmd.max)}
	case cmd.parse == nil:
		return cmd, nil, nil
	}
	act, err := cmd.parse(args)
	if err != nil {
		return cmd, nil, &UsageError{Command: cmd.name, Problem: err.Error()}
	}
	return cmd, act, nil
}

func help(out io.Writer) error {
	var b strings.Builder
	b.WriteString("allowed commands (kubectl exec POD -- COMMAND ARGS):\n")
	for _, c := range append(allowed, helpCommand) {
		fmt.Fprintf(&b, "  %-22s %s\n", c.usage(), c.summary)
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// readDID reads each DID in a request of its own: the ECU's response does
// not say where one value ends, so several in one request need lengths
// the provider does not know for manufacturer DIDs.
func readDID(args []string) (action, error) {
	dids, err := uds.ParseDIDs(args)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, c *uds.Client, out io.Writer) error {
		for _, did := range dids {
			recs, err := c.ReadDataByIdentifier(ctx, did)
			if err != nil {
				return fmt.Errorf("diag: read-did %04X: %w", did, err)
			}
			if err := printRecords(out, recs); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func printRecords(out io.Writer, recs []uds.DataRecord) error {
	for _, r := range recs {
		if _, err := fmt.Fprintln(out, r.Describe()); err != nil {
			return err
		}
	}
	return nil
}

// optionalHex reads the one optional argument of a command, def when it
// is absent.
func optionalHex(args []string, what string, bits int, def uint64) (uint64, error) {
	if len(args) == 0 {
		return def, nil
	}
	return uds.ParseHex(what, args[0], bits)
}

func readDTC(args []string) (action, error) {
	mask, err := optionalHex(args, "status mask", 8, 0xFF)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, c *uds.Client, out io.Writer) error {
		_, dtcs, err := c.ReadDTCByStatusMask(ctx, byte(mask))
		if err != nil {
			return fmt.Errorf("diag: read-dtc %02X: %w", mask, err)
		}
		var b strings.Builder
		if len(dtcs) == 0 {
			fmt.Fprintf(&b, "no DTCs match status mask %02X\n", mask)
		}
		for _, d := range dtcs {
			fmt.Fprintln(&b, d)
		}
		_, err = io.WriteString(out, b.String())
		return err
	}, nil
}

func clearDTC(args []string) (action, error) {
	group, err := optionalHex(args, "DTC group", 24, uint64(uds.AllDTCGroups))
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, c *uds.Client, out io.Writer) error {
		if err := c.ClearDiagnosticInformation(ctx, uint32(group)); err != nil {
			return fmt.Errorf("diag: clear-dtc %06X: %w", group, err)
		}
		_, err := fmt.Fprintf(out, "DTC group %06X cleared\n", group)
		return err
	}, nil
}

// noArgs is the parse of commands without arguments.
func noArgs(act action) func([]string) (action, error) {
	return func([]string) (action, error) { return act, nil }
}

func testerPresent(ctx context.Context, c *uds.Client, out io.Writer) error {
	if err := c.TesterPresent(ctx, 0); err != nil {
		return fmt.Errorf("diag: tester-present: %w", err)
	}
	_, err := fmt.Fprintln(out, "ECU present")
	return err
}

// identity reads every identification DID the uds package knows and
// leaves out those the ECU does not have (requestOutOfRange): no ECU
// carries all of them.
func identity(ctx context.Context, c *uds.Client, out io.Writer) error {
	found := 0
	for _, did := range uds.IdentificationDIDs() {
		recs, err := c.ReadDataByIdentifier(ctx, did)
		if errors.Is(err, uds.RequestOutOfRange) {
			continue
		}
		if err != nil {
			return fmt.Errorf("diag: identity: DID %04X: %w", did, err)
		}
		if err := printRecords(out, recs); err != nil {
			return err
		}
		found++
	}
	if found == 0 {
		return fmt.Errorf("diag: identity: the ECU has none of the identification DIDs %04X", uds.IdentificationDIDs())
	}
	return nil
}
