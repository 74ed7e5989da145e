package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
)

// Exit codes of ecu-kubelet flash (docs/flash-engine.md). 1 is also any
// error before the job starts (flags, configuration, artifact).
const (
	exitFlashDone       = 0
	exitFlashFailed     = 1
	exitFlashRefused    = 3
	exitFlashRolledBack = 4
)

// flashExit ends the process with a job's exit code; tests replace it.
var flashExit = os.Exit

type flashFlags struct {
	config, ecu, image string
	allowDowngrade     bool
	output             string
	stateDir           string
	dockerConfig       string
	plainHTTP          bool
	confirmTimeout     time.Duration
}

func newFlashCmd(g *globals) *cobra.Command {
	f := &flashFlags{}
	cmd := &cobra.Command{
		Use:   "flash --config vehicle.yaml --ecu NAME --image REF",
		Short: "Flash a firmware artifact onto one ECU and confirm it (rolled back if it does not come up)",
		Long: `Flash the firmware artifact REF (HOST/REPO:TAG or oci-layout:DIR:TAG) onto an ECU
of the vehicle: plan (identity, hardware id, release counter, delta or full image),
program the inactive slot, reset into it and confirm it; an image that does not come
back healthy is rolled back. A job killed midway resumes from --state-dir.

Progress is a bar on a terminal (stderr); -o json prints events and the result as
JSON lines on stdout. Exit codes: 0 done (or already running), 1 failed (the ECU
runs its previous image), 3 refused (nothing written), 4 rolled back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := f.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != exitFlashDone {
				flashExit(code)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "vehicle description (YAML)")
	fl.StringVar(&f.ecu, "ecu", "", "name of the ECU to flash")
	fl.StringVar(&f.image, "image", "", "firmware artifact: HOST[:PORT]/REPO:TAG, ...@sha256:<hex> or oci-layout:DIR:TAG")
	fl.BoolVar(&f.allowDowngrade, "allow-downgrade", false, "flash an image whose release counter is below the running one's")
	fl.StringVarP(&f.output, "output", "o", "text", "output: text or json")
	fl.StringVar(&f.stateDir, "state-dir", defaultFlashStateDir(), "directory of the journals of running jobs")
	fl.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "talk HTTP to a loopback registry")
	fl.DurationVar(&f.confirmTimeout, "confirm-timeout", flash.DefaultConfirmTimeout, "time the new image has to come back and confirm")
	for _, n := range []string{"config", "ecu", "image"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func defaultFlashStateDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ecu-kubelet", "flash")
	}
	return filepath.Join(os.TempDir(), "ecu-kubelet-flash")
}

// run flashes and returns the job's exit code; err is for failures
// before the job.
func (f *flashFlags) run(ctx context.Context, stdout, stderr io.Writer) (int, error) {
	if f.output != "text" && f.output != "json" {
		return 0, fmt.Errorf("-o %q: want text or json", f.output)
	}
	v, err := vehicle.Load(f.config)
	if err != nil {
		return 0, err
	}
	var ecu *vehicle.ECU
	for i := range v.ECUs {
		if v.ECUs[i].Name == f.ecu {
			ecu = &v.ECUs[i]
		}
	}
	if ecu == nil {
		return 0, fmt.Errorf("--ecu %q: %s has no such ECU", f.ecu, f.config)
	}
	fw, err := artifact.Resolve(ctx, f.image, &artifact.Options{DockerConfig: f.dockerConfig, PlainHTTP: f.plainHTTP})
	if err != nil {
		return 0, err
	}
	buses, err := openBuses(v, ecu.Bus)
	if err != nil {
		return 0, err
	}
	defer closeBuses(buses)
	desc, _ := v.Bus(ecu.Bus)
	events := make(chan flash.Event)
	eng := &flash.Engine{Buses: buses, BusDescriptions: map[string]vehicle.Bus{ecu.Bus: desc}, StateDir: f.stateDir, Events: events, ConfirmTimeout: f.confirmTimeout}
	done := make(chan struct{})
	show := f.progress(stdout, stderr)
	go func() {
		defer close(done)
		for ev := range events {
			show(ev)
		}
	}()
	res := eng.Flash(ctx, flash.Job{ECU: *ecu, Firmware: fw, AllowDowngrade: f.allowDowngrade})
	close(events)
	<-done
	if err := f.report(stdout, stderr, res); err != nil {
		return 0, err
	}
	switch res.Outcome {
	case flash.Done:
		return exitFlashDone, nil
	case flash.Refused:
		return exitFlashRefused, nil
	case flash.RolledBack:
		return exitFlashRolledBack, nil
	}
	return exitFlashFailed, nil
}

// progress returns what shows an event: a JSON line with -o json, a bar
// on a terminal, a line per phase otherwise.
func (f *flashFlags) progress(stdout, stderr io.Writer) func(flash.Event) {
	if f.output == "json" {
		enc := json.NewEncoder(stdout)
		return func(ev flash.Event) {
			enc.Encode(struct {
				Type string `json:"event"`
				flash.Event
			}{"progress", ev})
		}
	}
	tty := isTerminal(stderr)
	var last flash.Phase
	return func(ev flash.Event) {
		switch {
		case tty && ev.Phase == flash.PhaseTransfer && ev.Total > 0:
			const width = 30
			n := int(ev.Bytes * width / ev.Total)
			bar := make([]byte, width)
			for i := range bar {
				bar[i] = '.'
				if i < n {
					bar[i] = '#'
				}
			}
			fmt.Fprintf(stderr, "\r%s %-9s [%s] %3d%% %7.1f KB/s ETA %-8v", ev.ECU, ev.Phase, bar, ev.Bytes*100/ev.Total, ev.Rate/1000, ev.ETA.Round(time.Second))
		case ev.Phase != last || ev.Note != "":
			if tty && last == flash.PhaseTransfer {
				fmt.Fprintln(stderr)
			}
			fmt.Fprintf(stderr, "%s %s %s\n", ev.ECU, ev.Phase, ev.Note)
		}
		last = ev.Phase
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// report prints the result.
func (f *flashFlags) report(stdout, stderr io.Writer, res flash.Result) error {
	msg := ""
	if res.Err != nil {
		msg = res.Err.Error()
	}
	if f.output == "json" {
		return json.NewEncoder(stdout).Encode(struct {
			Type string `json:"event"`
			flash.Result
			Error string `json:"error,omitempty"`
		}{"result", res, msg})
	}
	kind := "full image"
	if res.Plan.Delta {
		kind = "delta"
	}
	switch {
	case res.Outcome == flash.Done && res.Plan.NoOp:
		_, err := fmt.Fprintf(stdout, "%s: %s already runs, confirmed; nothing to do\n", res.ECU, res.Plan.Version)
		return err
	case res.Outcome == flash.Done:
		_, err := fmt.Fprintf(stdout, "%s: %s flashed (%s, %d bytes) and confirmed\n", res.ECU, res.Plan.Version, kind, res.Plan.Size)
		return err
	}
	var re *flash.RefusedError
	if errors.As(res.Err, &re) || res.Outcome != flash.Failed {
		_, err := fmt.Fprintf(stdout, "%s: %v: %s\n", res.ECU, res.Outcome, msg)
		return err
	}
	_, err := fmt.Fprintf(stdout, "%s: failed, the ECU runs its previous image: %s\n", res.ECU, msg)
	return err
}
