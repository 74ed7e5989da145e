package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

const demoCarPath = "../../deploy/examples/demo-car.yaml"

// TestSimBusesRunLocallyOrOnTheirInterfaces: socketcand and mem buses
// become the simulator's own mem buses served at one address; SocketCAN
// buses stay on their interfaces.
func TestSimBusesRunLocallyOrOnTheirInterfaces(t *testing.T) {
	tests := []struct {
		name      string
		urls      []string
		listen    string // --listen, if given
		wantAddr  string
		wantServe bool
		wantURLs  []string
		wantErr   string
	}{
		{name: "socketcand URLs name the address",
			urls:     []string{"socketcand://127.0.0.1:29600/body", "socketcand://127.0.0.1:29600/chassis"},
			wantAddr: "127.0.0.1:29600", wantServe: true,
			wantURLs: []string{"mem://car-body", "mem://car-chassis"}},
		{name: "--listen overrides the URLs' address",
			urls: []string{"socketcand://127.0.0.1:29600/body", "socketcand://127.0.0.1:29601/chassis"}, listen: "127.0.0.1:0",
			wantAddr: "127.0.0.1:0", wantServe: true,
			wantURLs: []string{"mem://car-body", "mem://car-chassis"}},
		{name: "mem buses are served at the default address",
			urls:     []string{"mem://body", "mem://chassis"},
			wantAddr: defaultSimListen, wantServe: true,
			wantURLs: []string{"mem://car-body", "mem://car-chassis"}},
		{name: "SocketCAN buses stay on their interfaces, unserved",
			urls:     []string{"socketcan://vcan0", "socketcan://vcan1"},
			wantURLs: []string{"socketcan://vcan0", "socketcan://vcan1"}},
		{name: "SocketCAN buses served with --listen",
			urls: []string{"socketcan://vcan0", "socketcan://vcan1"}, listen: "127.0.0.1:0",
			wantAddr: "127.0.0.1:0", wantServe: true,
			wantURLs: []string{"socketcan://vcan0", "socketcan://vcan1"}},
		{name: "a socketcand bus must be served under its name",
			urls:    []string{"socketcand://127.0.0.1:29600/can0", "mem://chassis"},
			wantErr: `buses[0].url "socketcand://127.0.0.1:29600/can0" serves the bus as "can0"`},
		{name: "socketcand buses at two addresses",
			urls:    []string{"socketcand://127.0.0.1:29600/body", "socketcand://127.0.0.1:29601/chassis"},
			wantErr: "buses[1].url is served at 127.0.0.1:29601 but an earlier bus at 127.0.0.1:29600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desc := &vehicle.Vehicle{Name: "car", Buses: []vehicle.Bus{{Name: "body", URL: tt.urls[0]}, {Name: "chassis", URL: tt.urls[1]}}}
			listen := tt.listen
			if listen == "" {
				listen = defaultSimListen
			}
			addr, serve, err := simBuses(desc, listen, tt.listen != "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if addr != tt.wantAddr || serve != tt.wantServe {
				t.Errorf("serves at %q (%t), want %q (%t)", addr, serve, tt.wantAddr, tt.wantServe)
			}
			for i, b := range desc.Buses {
				if b.URL != tt.wantURLs[i] {
					t.Errorf("bus %s runs on %s, want %s", b.Name, b.URL, tt.wantURLs[i])
				}
			}
		})
	}
}

// TestWriteSimStatusShowsSlotsAndVersions: the status table names each
// ECU's state, running slot and both slots' versions and states.
func TestWriteSimStatusShowsSlotsAndVersions(t *testing.T) {
	frames := uint64(42)
	st := &sim.VehicleStatus{
		Name:  "demo-car",
		Buses: []sim.BusStatus{{Name: "chassis", URL: "socketcand://127.0.0.1:29536/chassis", Bitrate: 500000, DataBitrate: 2000000, FD: true, Frames: &frames}},
		ECUs: []sim.ECUStatus{
			{Name: "brake", State: sim.StateRunning, ActiveSlot: "B", Trial: true, Session: "programmingSession", BootCount: 3, Slots: []sim.SlotStatus{
				{Name: "A", State: sim.SlotConfirmed, Version: "1.2.0", ReleaseCounter: 4, Confirmed: true},
				{Name: "B", State: sim.SlotTrial, Version: "1.3.0", ReleaseCounter: 5, BootAttempts: 1},
			}},
			{Name: "airbag", State: sim.StateBooting, Slots: []sim.SlotStatus{{Name: "A", State: sim.SlotConfirmed, Version: "0.9.7", ReleaseCounter: 2}, {Name: "B", State: sim.SlotEmpty}}},
		},
	}
	var out bytes.Buffer
	if err := writeSimStatus(&out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^VEHICLE demo-car$`),
		regexp.MustCompile(`(?m)^chassis +socketcand://127.0.0.1:29536/chassis +500k FD/2000k +42$`),
		regexp.MustCompile(`(?m)^brake +running +B \(trial\) +programmingSession +3 +1.2.0 r4 confirmed +1.3.0 r5 trial \(1 boots\)$`),
		regexp.MustCompile(`(?m)^airbag +booting +- +- +0 +0.9.7 r2 confirmed +empty$`),
	} {
		if !want.Match(out.Bytes()) {
			t.Errorf("status lacks %s:\n%s", want, out.String())
		}
	}
}

// readWhenUp reads did from a simulated ECU, retrying until it answers
// (it boots in real time) or ctx ends.
// Requests sent before it boots time out; the client skips their late
// answers.
func readWhenUp(ctx context.Context, t *testing.T, c *uds.Client, did uint16) []byte {
	t.Helper()
	for {
		recs, err := c.ReadDataByIdentifier(ctx, did)
		if err == nil {
			return recs[0].Data
		}
		if ctx.Err() != nil {
			t.Fatalf("the ECU never answered: %v", err)
		}
	}
}

// buildBinary builds ecu-kubelet into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ecu-kubelet")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var simReady = regexp.MustCompile(`socketcand (127\.0\.0\.1:\d+); status http://(127\.0\.0\.1:\d+)/status`)

// TestSimProcessServesUDSToAnotherProcess starts `ecu-kubelet sim` as a
// real process on loopback ports, talks UDS to ECUs on both buses through
// its socketcand server, flashes one with `ecu-kubelet flash` through it,
// reads its status with `sim status`, and stops it with SIGINT.
func TestSimProcessServesUDSToAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	vehiclePath, err := filepath.Abs(demoCarPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "sim", "--vehicle", vehiclePath, "--listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	m := simReady.FindStringSubmatch(line)
	if m == nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the simulator did not say where it serves: %q, %v\n%s", line, err, stderr.String())
	}
	busAddr, statusAddr := m[1], m[2]

	desc, err := vehicle.Load(vehiclePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"door-fl", "brake", "airbag"} {
		e, _ := desc.ECU(name)
		b, _ := desc.Bus(e.Bus)
		bus, err := canbus.Open("socketcand://"+busAddr+"/"+b.Name, b.Config())
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := e.Addresses()
		conn, err := isotp.Dial(bus, addr, isotp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := uds.NewClient(conn, uds.ClientOptions{})
		got := string(readWhenUp(ctx, t, c, uds.DIDECUSoftwareVersionNumber))
		cfg, err := sim.DecodeConfig(e)
		if err != nil {
			t.Fatal(err)
		}
		if want := cfg.Slots.A.Version; got != want {
			t.Errorf("%s: F189 = %q, want %q", name, got, want)
		}
		conn.Close()
		bus.Close()
	}

	flashThroughSimProcess(t, vehiclePath, busAddr)

	out, err := exec.CommandContext(ctx, bin, "sim", "status", "--server", statusAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("sim status: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^brake +running +A +\S+ +1 +1\.2\.0 r4 confirmed +1\.1\.0 r3 `).Match(out) {
		t.Errorf("sim status does not show the brake running 1.2.0 from slot A:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^door-fl +running +B .* 1\.4\.0 r6 confirmed`).Match(out) {
		t.Errorf("sim status does not show door-fl running the flashed 1.4.0 from slot B:\n%s", out)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("the simulator did not stop cleanly on SIGINT: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{`"ecu": "brake", "slot": "A", "version": "1.2.0"`, "vehicle stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, stderr.String())
		}
	}
}

// TestSimRefusesBadVehicles: a description the simulator cannot run is
// refused with the file and the field.
func TestSimRefusesBadVehicles(t *testing.T) {
	good, err := os.ReadFile(demoCarPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, wantErr string
	}{
		{"image larger than its slot", `payloadSize: 131072}`, `payloadSize: 600000}`, "ecus[6].simulation.slots.a"},
		{"socketcand bus under another name", `127.0.0.1:29536/body"`, `127.0.0.1:29536/can0"`, `buses[0].url`},
		{"unknown simulation key", `confirmWithin: 2`, `confirmWithn: 2`, "field confirmWithn not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(good, []byte(tt.from)) {
				t.Fatalf("demo-car.yaml no longer has %q", tt.from)
			}
			path := filepath.Join(t.TempDir(), "car.yaml")
			if err := os.WriteFile(path, bytes.Replace(good, []byte(tt.from), []byte(tt.to), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			root := newRootCmd()
			root.SetArgs([]string{"sim", "--vehicle", path, "--listen", "127.0.0.1:0", "--status-listen", ""})
			root.SetOut(&bytes.Buffer{})
			err := root.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("sim: %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

// TestSimImageWritesWhatTheECURuns: the image `sim image` writes is the
// one the simulated ECU reports running, so firmware can carry a delta
// from it.
func TestSimImageWritesWhatTheECURuns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "brake.img")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), &stdout, &stderr, "sim", "image", "--vehicle", demoCarPath, "--ecu", "brake", "-o", out); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, err := image.Parse(b)
	if err != nil || hdr.Version != "1.2.0" || hdr.HardwareID != "BRK-HW-01" || hdr.ReleaseCounter != 4 {
		t.Fatalf("header %+v, %v: want brake's slot A, 1.2.0 release 4 for BRK-HW-01", hdr, err)
	}
	v, err := vehicle.Load(demoCarPath)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := v.ECU("brake")
	bus, err := canbus.Open("mem://sim-image-test", canbus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	ecu, err := sim.NewECU(e, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := image.Digest(b)
	want := "sha256:" + hex.EncodeToString(d[:])
	found := false
	for _, s := range ecu.Status().Slots {
		if s.Name == "A" {
			found = true
			if s.Digest != want {
				t.Errorf("the ECU's slot A holds %s, the file %s", s.Digest, want)
			}
		}
	}
	if !found {
		t.Errorf("the ECU reports no slot A: %+v", ecu.Status().Slots)
	}
	err = run(t.Context(), &stdout, &stderr, "sim", "image", "--vehicle", demoCarPath, "--ecu", "steering", "--slot", "b", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "no image in slot b") {
		t.Errorf("an empty slot: %v", err)
	}
}
