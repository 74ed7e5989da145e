package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// udsFlags are what every uds subcommand shares: how to reach the ECU and
// how to print.
type udsFlags struct {
	bus     string
	tx, rx  string
	txDL    int
	brs     bool
	timeout time.Duration
	output  string
}

func newUDSCmd(g *globals) *cobra.Command {
	f := &udsFlags{}
	cmd := &cobra.Command{
		Use:   "uds --bus URL --tx 7E0 --rx 7E8 COMMAND",
		Short: "Speak UDS (ISO 14229) to one ECU over ISO-TP",
		Long: `Send one UDS request to an ECU and print its decoded response. A negative
response prints its NRC's name (requestOutOfRange (0x31)) and exits non-zero.
Identifiers are hex; eight digits or a value above 7FF mean 29-bit.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.bus, "bus", "", busURLHelp)
	pf.StringVar(&f.tx, "tx", "7E0", "CAN identifier the tester sends on (hex)")
	pf.StringVar(&f.rx, "rx", "7E8", "CAN identifier the ECU answers on (hex)")
	pf.IntVar(&f.txDL, "tx-dl", 8, "ISO-TP TX_DL: 8 for classic CAN, 12 to 64 for CAN FD (the bus URL then needs fd=true)")
	pf.BoolVar(&f.brs, "brs", false, "set the CAN FD bit rate switch")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "deadline for the request, responsePending answers included")
	pf.StringVarP(&f.output, "output", "o", "text", "output: text or json")
	cmd.MarkPersistentFlagRequired("bus")

	sub := func(use, short string, args cobra.PositionalArgs, do func(context.Context, *uds.Client, []string) (any, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args,
			RunE: func(cmd *cobra.Command, args []string) error {
				return f.run(cmd, args, do)
			},
		}
	}
	cmd.AddCommand(
		sub("session N", "DiagnosticSessionControl (0x10): 1 default, 2 programming, 3 extended", cobra.ExactArgs(1), udsSession),
		sub("reset N", "ECUReset (0x11): 1 hard, 2 key off/on, 3 soft", cobra.ExactArgs(1), udsReset),
		sub("read-did DID [DID...]", "ReadDataByIdentifier (0x22), identification DIDs decoded as text", cobra.MinimumNArgs(1), udsReadDID),
		sub("write-did DID HEX", "WriteDataByIdentifier (0x2E)", cobra.ExactArgs(2), udsWriteDID),
		sub("dtc [MASK]", "ReadDTCInformation (0x19 02): DTCs by status mask (default FF)", cobra.MaximumNArgs(1), udsDTC),
		sub("clear-dtc [GROUP]", "ClearDiagnosticInformation (0x14): a DTC group (default FFFFFF, all)", cobra.MaximumNArgs(1), udsClearDTC),
		sub("routine start|stop|results ID [HEX]", "RoutineControl (0x31)", cobra.RangeArgs(2, 3), udsRoutine),
		sub("tester-present", "TesterPresent (0x3E 00)", cobra.NoArgs, udsTesterPresent),
		sub("request HEX", "send any request and print the positive response", cobra.ExactArgs(1), udsRequest),
	)
	return cmd
}

// run opens the bus and ISO-TP, runs do with a client and prints its result.
func (f *udsFlags) run(cmd *cobra.Command, args []string, do func(context.Context, *uds.Client, []string) (any, error)) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("-o %q: want text or json", f.output)
	}
	tx, txExt, err := parseCANID(f.tx)
	if err != nil {
		return fmt.Errorf("--tx: %w", err)
	}
	rx, rxExt, err := parseCANID(f.rx)
	if err != nil {
		return fmt.Errorf("--rx: %w", err)
	}
	if txExt != rxExt {
		return fmt.Errorf("--tx %s and --rx %s: use two 11-bit or two 29-bit identifiers", f.tx, f.rx)
	}
	bus, err := canbus.Open(f.bus, canbus.Config{})
	if err != nil {
		return err
	}
	defer bus.Close()
	conn, err := isotp.Dial(bus, isotp.Address{TxID: tx, RxID: rx, Extended29: txExt}, isotp.Options{TxDL: f.txDL, BRS: f.brs})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	result, err := do(ctx, uds.NewClient(conn, uds.ClientOptions{Timeout: f.timeout}), args)
	if err != nil {
		return err
	}
	return printResult(cmd.OutOrStdout(), f.output, result)
}

// textResult is a result with a text form of its own.
type textResult interface{ Text() string }

func printResult(w io.Writer, format string, result any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		return enc.Encode(result)
	}
	if t, ok := result.(textResult); ok {
		_, err := fmt.Fprintln(w, t.Text())
		return err
	}
	_, err := fmt.Fprintln(w, result)
	return err
}

// parseCANID reads a hex CAN identifier; eight digits or a value above
// 0x7FF make it 29-bit.
func parseCANID(s string) (id uint32, extended bool, err error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil || v > canbus.MaxExtID {
		return 0, false, fmt.Errorf("%q is not a CAN identifier: want hex up to 1FFFFFFF", s)
	}
	return uint32(v), len(strings.TrimPrefix(strings.ToLower(s), "0x")) == 8 || v > canbus.MaxStdID, nil
}

// parseHexBytes reads a command argument of hex bytes; uds.ParseHex reads
// the numbers.
func parseHexBytes(what, s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", ":", "").Replace(s))
	if err != nil {
		return nil, fmt.Errorf("%s %q: want hex bytes such as 0A1B2C", what, s)
	}
	return b, nil
}

// sessionResult is the outcome of DiagnosticSessionControl.
type sessionResult struct {
	Session  byte    `json:"session"`
	P2MS     float64 `json:"p2_ms"`
	P2StarMS float64 `json:"p2_star_ms"`
}

func (r sessionResult) Text() string {
	return fmt.Sprintf("session %02X active; P2 %v ms, P2* %v ms", r.Session, r.P2MS, r.P2StarMS)
}

func udsSession(ctx context.Context, c *uds.Client, args []string) (any, error) {
	s, err := uds.ParseHex("session", args[0], 8)
	if err != nil {
		return nil, err
	}
	t, err := c.DiagnosticSessionControl(ctx, uds.Session(s))
	if err != nil {
		return nil, err
	}
	return sessionResult{byte(s), float64(t.P2) / 1e6, float64(t.P2Star) / 1e6}, nil
}

type resetResult struct {
	ResetType     byte `json:"reset_type"`
	PowerDownTime byte `json:"power_down_time_s,omitempty"`
}

func (r resetResult) Text() string { return fmt.Sprintf("ECU reset (type %02X) accepted", r.ResetType) }

func udsReset(ctx context.Context, c *uds.Client, args []string) (any, error) {
	t, err := uds.ParseHex("reset type", args[0], 8)
	if err != nil {
		return nil, err
	}
	pd, err := c.ECUReset(ctx, byte(t))
	if err != nil {
		return nil, err
	}
	return resetResult{byte(t), pd}, nil
}

// didValues are the DIDs read, one a line.
type didValues []uds.DIDValue

func (v didValues) Text() string {
	var b strings.Builder
	for i, d := range v {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

func udsReadDID(ctx context.Context, c *uds.Client, args []string) (any, error) {
	dids, err := uds.ParseDIDs(args)
	if err != nil {
		return nil, err
	}
	recs, err := c.ReadDataByIdentifier(ctx, dids...)
	if err != nil {
		return nil, err
	}
	out := make(didValues, len(recs))
	for i, r := range recs {
		out[i] = r.Describe()
	}
	return out, nil
}

type doneResult struct {
	Done string `json:"done"`
}

func (r doneResult) Text() string { return r.Done }

func udsWriteDID(ctx context.Context, c *uds.Client, args []string) (any, error) {
	did, err := uds.ParseHex("DID", args[0], 16)
	if err != nil {
		return nil, err
	}
	data, err := parseHexBytes("data", args[1])
	if err != nil {
		return nil, err
	}
	if err := c.WriteDataByIdentifier(ctx, uint16(did), data); err != nil {
		return nil, err
	}
	return doneResult{fmt.Sprintf("%04X written (%d bytes)", did, len(data))}, nil
}

type dtcEntry struct {
	DTC    string `json:"dtc"`
	Status string `json:"status"`
}

type dtcResult struct {
	Availability string     `json:"availability_mask"`
	DTCs         []dtcEntry `json:"dtcs"`
}

func (r dtcResult) Text() string {
	if len(r.DTCs) == 0 {
		return "no DTCs match"
	}
	var b strings.Builder
	for i, d := range r.DTCs {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s status %s", d.DTC, d.Status)
	}
	return b.String()
}

func udsDTC(ctx context.Context, c *uds.Client, args []string) (any, error) {
	mask := uint64(0xFF)
	if len(args) == 1 {
		var err error
		if mask, err = uds.ParseHex("status mask", args[0], 8); err != nil {
			return nil, err
		}
	}
	avail, dtcs, err := c.ReadDTCByStatusMask(ctx, byte(mask))
	if err != nil {
		return nil, err
	}
	r := dtcResult{Availability: fmt.Sprintf("%02X", avail), DTCs: []dtcEntry{}}
	for _, d := range dtcs {
		r.DTCs = append(r.DTCs, dtcEntry{fmt.Sprintf("%06X", d.DTC), fmt.Sprintf("%02X", d.Status)})
	}
	return r, nil
}

func udsClearDTC(ctx context.Context, c *uds.Client, args []string) (any, error) {
	group := uint64(0xFFFFFF)
	if len(args) == 1 {
		var err error
		if group, err = uds.ParseHex("DTC group", args[0], 24); err != nil {
			return nil, err
		}
	}
	if err := c.ClearDiagnosticInformation(ctx, uint32(group)); err != nil {
		return nil, err
	}
	return doneResult{fmt.Sprintf("DTC group %06X cleared", group)}, nil
}

type routineResult struct {
	Routine string `json:"routine"`
	Control string `json:"control"`
	Status  string `json:"status_hex"`
}

func (r routineResult) Text() string {
	if r.Status == "" {
		return fmt.Sprintf("routine %s: %s accepted", r.Routine, r.Control)
	}
	return fmt.Sprintf("routine %s: %s accepted, status %s", r.Routine, r.Control, r.Status)
}

func udsRoutine(ctx context.Context, c *uds.Client, args []string) (any, error) {
	controls := map[string]byte{"start": uds.StartRoutine, "stop": uds.StopRoutine, "results": uds.RequestRoutineResults}
	control, ok := controls[args[0]]
	if !ok {
		return nil, fmt.Errorf("routine %q: want start, stop or results", args[0])
	}
	id, err := uds.ParseHex("routine identifier", args[1], 16)
	if err != nil {
		return nil, err
	}
	var option []byte
	if len(args) == 3 {
		if option, err = parseHexBytes("routine option", args[2]); err != nil {
			return nil, err
		}
	}
	status, err := c.RoutineControl(ctx, control, uint16(id), option)
	if err != nil {
		return nil, err
	}
	return routineResult{fmt.Sprintf("%04X", id), args[0], strings.ToUpper(hex.EncodeToString(status))}, nil
}

func udsTesterPresent(ctx context.Context, c *uds.Client, _ []string) (any, error) {
	if err := c.TesterPresent(ctx, 0); err != nil {
		return nil, err
	}
	return doneResult{"ECU present"}, nil
}

type rawResult struct {
	Response string `json:"response_hex"`
}

func (r rawResult) Text() string { return r.Response }

func udsRequest(ctx context.Context, c *uds.Client, args []string) (any, error) {
	req, err := parseHexBytes("request", args[0])
	if err != nil {
		return nil, err
	}
	if len(req) == 0 {
		return nil, fmt.Errorf("request: empty; give at least a service identifier")
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return rawResult{strings.ToUpper(hex.EncodeToString(resp))}, nil
}
