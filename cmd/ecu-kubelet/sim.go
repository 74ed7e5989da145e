package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// Default addresses of `ecu-kubelet sim`.
const (
	defaultSimListen   = "127.0.0.1:29536" // socketcand's own default port
	defaultSimStatus   = "127.0.0.1:29537"
	simStatusPath      = "/status"
	simStatusMediaType = "application/json"
)

func newSimCmd(g *globals) *cobra.Command {
	var vehiclePath, listen, statusListen string
	cmd := &cobra.Command{
		Use:   "sim --vehicle FILE [--listen HOST:PORT] [--status-listen HOST:PORT]",
		Short: "Run a simulated vehicle: its ECUs with UDS servers and A/B bootloaders on its buses",
		Long: `Run every ECU of a vehicle description (its simulation sections: slots,
boot time, faults) until interrupted. Where a bus runs depends on its URL:

  socketcand://HOST:PORT/BUS  the simulator runs the bus in its own process and
                              is that socketcand server: it serves the bus under
                              BUS at HOST:PORT (or --listen), so the provider,
                              'ecu-kubelet flash' and 'ecu-kubelet uds' reach the
                              ECUs through the same file. BUS must be the bus's name.
  mem://NAME                  in-process too, served under the bus's name at
                              --listen (default ` + defaultSimListen + `)
  socketcan://IFACE           the ECUs sit on that interface (vcan or real CAN);
                              served over socketcand as well only with --listen

Logs (stderr) say what each ECU does: boots, resets, erases, downloads,
verifications, activations, confirmations, reverts and injected faults.
Once the buses are served a line on stdout says where, and where the status is:
an HTTP endpoint on loopback (GET ` + simStatusPath + `, JSON) that
'ecu-kubelet sim status' prints as a table of ECUs, slots and versions.`,
		Example: `  ecu-kubelet sim --vehicle deploy/examples/demo-car.yaml
  ecu-kubelet sim status
  ecu-kubelet uds --bus socketcand://127.0.0.1:29536/chassis --tx 7E0 --rx 7E8 read-did F189`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			desc, err := vehicle.Load(vehiclePath)
			if err != nil {
				return err
			}
			addr, serve, err := simBuses(desc, listen, cmd.Flags().Changed("listen"))
			if err != nil {
				return fmt.Errorf("%s: %w", vehiclePath, err)
			}
			return runSim(cmd.Context(), cmd.OutOrStdout(), log, desc, addr, serve, statusListen)
		},
	}
	cmd.Flags().StringVar(&vehiclePath, "vehicle", "", "vehicle description (YAML), e.g. deploy/examples/demo-car.yaml")
	cmd.Flags().StringVar(&listen, "listen", defaultSimListen, "address to serve the buses on over socketcand (default: the address of the socketcand:// bus URLs); port 0 picks a free one")
	cmd.Flags().StringVar(&statusListen, "status-listen", defaultSimStatus, `address of the HTTP status endpoint ("" turns it off); keep it on loopback: it has no authentication`)
	cmd.MarkFlagRequired("vehicle")
	cmd.AddCommand(newSimStatusCmd(), newSimImageCmd())
	return cmd
}

// simBuses moves the buses the simulator runs itself to mem buses of its
// process and returns the address to serve them on; serve is false when
// every bus is a SocketCAN interface and --listen was not given.
func simBuses(desc *vehicle.Vehicle, listen string, listenSet bool) (addr string, serve bool, err error) {
	serve = listenSet
	urlAddr := "" // the address the socketcand:// URLs name
	for i := range desc.Buses {
		b := &desc.Buses[i]
		u, err := url.Parse(b.URL)
		if err != nil {
			return "", false, err // Load checked the URLs
		}
		switch u.Scheme {
		case "socketcan":
			continue
		case "socketcand":
			if bus := u.Path[1:]; bus != b.Name {
				return "", false, fmt.Errorf("buses[%d].url %q serves the bus as %q, but the simulator serves it under its name; make the URL end in /%s", i, b.URL, bus, b.Name)
			}
			if urlAddr != "" && urlAddr != u.Host && !listenSet {
				return "", false, fmt.Errorf("buses[%d].url is served at %s but an earlier bus at %s; the simulator serves all buses at one address (or give --listen)", i, u.Host, urlAddr)
			}
			urlAddr = u.Host
		}
		serve = true
		b.URL = "mem://" + desc.Name + "-" + b.Name
	}
	if !serve {
		return "", false, nil
	}
	if !listenSet && urlAddr != "" {
		listen = urlAddr
	}
	return listen, true, nil
}

// runSim runs the vehicle until ctx ends, serving its buses on addr (if
// serve) and its status on statusAddr (unless empty).
func runSim(ctx context.Context, stdout io.Writer, log *zap.Logger, desc *vehicle.Vehicle, addr string, serve bool, statusAddr string) error {
	var busLn, statusLn net.Listener
	var err error
	if serve {
		if busLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("serving the buses: %w; choose another address with --listen", err)
		}
		defer busLn.Close()
	}
	if statusAddr != "" {
		if statusLn, err = net.Listen("tcp", statusAddr); err != nil {
			return fmt.Errorf("serving the status: %w; choose another address with --status-listen, or \"\" for none", err)
		}
		defer statusLn.Close()
	}
	v, err := sim.NewVehicle(desc, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Status shows each bus as a client reaches it.
	reach := map[string]string{}
	for _, b := range desc.Buses {
		reach[b.Name] = b.URL
	}
	errc := make(chan error, 2) // what stops serving before Run returns
	var ready []string
	if busLn != nil {
		for _, b := range desc.Buses {
			reach[b.Name] = fmt.Sprintf("socketcand://%s/%s", busLn.Addr(), b.Name)
		}
		ready = append(ready, "socketcand "+busLn.Addr().String())
		go func() {
			if err := v.Serve(busLn); !errors.Is(err, canbus.ErrServerClosed) {
				errc <- err
				cancel()
			}
		}()
	}
	if statusLn != nil {
		srv := &http.Server{Handler: simStatusHandler(v, reach), ReadHeaderTimeout: 10 * time.Second}
		defer srv.Close()
		ready = append(ready, fmt.Sprintf("status http://%s%s", statusLn.Addr(), simStatusPath))
		go func() {
			if err := srv.Serve(statusLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("status endpoint: %w", err)
				cancel()
			}
		}()
	}
	var buses []string
	for _, b := range desc.Buses {
		buses = append(buses, b.Name+"="+reach[b.Name])
	}
	ready = append(ready, "buses "+strings.Join(buses, " "))
	fmt.Fprintf(stdout, "vehicle %s: %d ECUs; %s\n", desc.Name, len(desc.ECUs), strings.Join(ready, "; "))
	runErr := v.Run(ctx)
	select {
	case err := <-errc:
		return errors.Join(runErr, err)
	default:
		return runErr
	}
}

// simStatusHandler serves the vehicle's status as JSON at simStatusPath,
// each bus's URL as clients reach it.
func simStatusHandler(v *sim.Vehicle, reach map[string]string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+simStatusPath, func(w http.ResponseWriter, _ *http.Request) {
		st := v.Status()
		for i := range st.Buses {
			st.Buses[i].URL = reach[st.Buses[i].Name]
		}
		w.Header().Set("Content-Type", simStatusMediaType)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	return mux
}

func newSimImageCmd() *cobra.Command {
	var vehicleFile, ecuName, slot, out string
	cmd := &cobra.Command{
		Use:   "image --vehicle FILE --ecu NAME [--slot a|b] -o IMAGE",
		Short: "Write the image a simulated ECU holds in a slot at power-up",
		Long: `Write the firmware image the simulator gives ECU NAME's slot at power-up
(its simulation section: a file, or a synthetic image of a version, release counter
and payload size). Firmware built against it can carry a delta: 'firmware pack
--delta-from IMAGE' adds a patch that the ECU applies to what it runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := vehicle.Load(vehicleFile)
			if err != nil {
				return err
			}
			e, ok := v.ECU(ecuName)
			if !ok {
				return fmt.Errorf("--ecu %q: %s has no such ECU", ecuName, vehicleFile)
			}
			cfg, err := sim.DecodeConfig(e)
			if err != nil {
				return err
			}
			s := map[string]*sim.SlotImage{"a": cfg.Slots.A, "b": cfg.Slots.B}[slot]
			switch {
			case slot != "a" && slot != "b":
				return fmt.Errorf("--slot %q: want a or b", slot)
			case s == nil:
				return fmt.Errorf("ECU %s has no image in slot %s at power-up (simulation.slots.%s)", ecuName, slot, slot)
			}
			if err := os.WriteFile(out, s.Image(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: slot %s of %s, %d bytes\n", out, slot, ecuName, len(s.Image()))
			return nil
		},
	}
	cmd.Flags().StringVar(&vehicleFile, "vehicle", "", "vehicle description (YAML)")
	cmd.Flags().StringVar(&ecuName, "ecu", "", "the ECU")
	cmd.Flags().StringVar(&slot, "slot", "a", "the slot: a or b")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the image file to write")
	for _, n := range []string{"vehicle", "ecu", "output"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newSimStatusCmd() *cobra.Command {
	var server, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status [--server HOST:PORT] [-o text|json]",
		Short: "Show a running simulator's ECUs: state, running slot, each slot's image and boot state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			st, err := fetchSimStatus(cmd.Context(), server, timeout)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return writeSimStatus(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringVar(&server, "server", defaultSimStatus, "the simulator's --status-listen address")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "deadline for the status request")
	return cmd
}

func fetchSimStatus(ctx context.Context, server string, timeout time.Duration) (*sim.VehicleStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+server+simStatusPath, nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no simulator status at %s: %w; is `ecu-kubelet sim` running with --status-listen %s?", server, err, server)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("simulator status at %s: %s", server, resp.Status)
	}
	var st sim.VehicleStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("simulator status at %s is not a vehicle status: %w", server, err)
	}
	return &st, nil
}

// writeSimStatus prints a status as two tables, buses and ECUs.
func writeSimStatus(w io.Writer, st *sim.VehicleStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "VEHICLE %s\n\n", st.Name)
	fmt.Fprintln(tw, "BUS\tURL\tBITRATE\tFRAMES")
	for _, b := range st.Buses {
		rate := "untimed"
		if b.Bitrate > 0 {
			rate = fmt.Sprintf("%dk", b.Bitrate/1000)
		}
		if b.FD {
			data := b.DataBitrate
			if data == 0 {
				data = b.Bitrate
			}
			rate += fmt.Sprintf(" FD/%dk", data/1000)
		}
		frames := "-"
		if b.Frames != nil {
			frames = fmt.Sprint(*b.Frames)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Name, b.URL, rate, frames)
	}
	fmt.Fprintln(tw, "\nECU\tSTATE\tRUNS\tSESSION\tBOOTS\tSLOT A\tSLOT B")
	for _, e := range st.ECUs {
		runs := "-"
		if e.ActiveSlot != "" {
			runs = e.ActiveSlot
			if e.Trial {
				runs += " (trial)"
			}
		}
		session := e.Session
		if session == "" {
			session = "-"
		}
		slots := [2]string{"-", "-"}
		for i, s := range e.Slots {
			if i < 2 {
				slots[i] = slotText(s)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Name, e.State, runs, session, e.BootCount, slots[0], slots[1])
	}
	return tw.Flush()
}

// slotText is one slot in a status table: "1.2.0 r4 confirmed".
func slotText(s sim.SlotStatus) string {
	if s.Version == "" {
		return s.State
	}
	t := fmt.Sprintf("%s r%d %s", s.Version, s.ReleaseCounter, s.State)
	if s.BootAttempts > 0 {
		t += fmt.Sprintf(" (%d boots)", s.BootAttempts)
	}
	return t
}
