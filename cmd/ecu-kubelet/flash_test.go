package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// TestFlashCommandExitCodes flashes a simulated ECU through the command,
// with artifacts in an OCI layout, and checks the JSON lines and the exit
// code of each outcome.
func TestFlashCommandExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		version  string
		release  uint32
		hw       string
		args     []string
		wantCode int
		want     string
	}{
		{name: "done", version: "2.0.0", release: 2, hw: "CLI-HW", wantCode: exitFlashDone, want: `"outcome":"done"`},
		{name: "same image is a no-op", version: "1.0.0", release: 1, hw: "CLI-HW", wantCode: exitFlashDone, want: `"noop":true`},
		{name: "downgrade refused", version: "0.5.0", release: 0, hw: "CLI-HW", wantCode: exitFlashRefused, want: `"outcome":"refused"`},
		{name: "other hardware refused", version: "2.0.0", release: 2, hw: "OTHER", wantCode: exitFlashRefused, want: "hardware id"},
		{name: "never confirms, rolled back", version: "9.9.9", release: 9, hw: "CLI-HW", wantCode: exitFlashRolledBack, want: `"outcome":"rolled-back"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dir := t.TempDir()
				cfg := fmt.Sprintf(`
name: cli-car
buses: [{name: body, url: "mem://flash-cli-%s", bitrate: 500000}]
ecus:
  - name: brake
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8, functionalId: 0x7DF}
    hardwareId: CLI-HW
    partNumber: PN-1
    serial: SN-1
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 20ms, writeTimePerKiB: 1ms, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 8192}}
      faults: [{kind: neverConfirm, version: "9.9.9"}]
`, strings.NewReplacer(" ", "-", ",", "").Replace(tt.name))
				path := filepath.Join(dir, "car.yaml")
				if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
					t.Fatal(err)
				}
				v, err := vehicle.Parse([]byte(cfg))
				if err != nil {
					t.Fatal(err)
				}
				stop := runSimECU(t, v)
				defer stop()

				img, err := sim.SyntheticImage(image.Header{Version: tt.version, HardwareID: tt.hw, ReleaseCounter: tt.release}, 8192)
				if err != nil {
					t.Fatal(err)
				}
				if tt.version == "1.0.0" {
					img, _ = sim.SyntheticImage(image.Header{Version: "1.0.0", HardwareID: "CLI-HW", ReleaseCounter: 1}, 8192)
				}
				p, err := artifact.Pack(context.Background(), img, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				ref := "oci-layout:" + filepath.Join(dir, "layout") + ":v"
				if _, err := p.Push(context.Background(), ref, nil); err != nil {
					t.Fatal(err)
				}

				code, out := runFlashCommand(t, append([]string{"--config", path, "--ecu", "brake", "--image", ref, "-o", "json", "--state-dir", filepath.Join(dir, "state")}, tt.args...)...)
				if code != tt.wantCode {
					t.Errorf("exit code %d, want %d\n%s", code, tt.wantCode, out.String())
				}
				lines := strings.Split(strings.TrimSpace(out.String()), "\n")
				for _, l := range lines {
					if !json.Valid([]byte(l)) {
						t.Errorf("not a JSON line: %s", l)
					}
				}
				if last := lines[len(lines)-1]; !strings.Contains(last, `"event":"result"`) || !strings.Contains(last, tt.want) {
					t.Errorf("last line %s: want a result with %s", last, tt.want)
				}
			})
		})
	}
}

// runSimECU runs the vehicle's one ECU on its mem bus until stop.
func runSimECU(t *testing.T, v *vehicle.Vehicle) (stop func()) {
	t.Helper()
	bus, err := canbus.Open(v.Buses[0].URL, v.Buses[0].Config())
	if err != nil {
		t.Fatal(err)
	}
	e, err := sim.NewECU(v.ECUs[0], bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for e.Status().State != sim.StateRunning {
		time.Sleep(10 * time.Millisecond) // virtual time: the ECU boots
	}
	return func() {
		cancel()
		wg.Wait()
		bus.Close()
	}
}
