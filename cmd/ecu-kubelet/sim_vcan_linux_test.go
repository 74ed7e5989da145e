//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim/vcanvm"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

// vcanCar has an ECU on each of the VM's interfaces: classic CAN on vcan0,
// CAN FD with 29-bit normal-fixed addressing on vcan1.
const vcanCar = `
name: vcan-car
buses:
  - {name: body, url: "socketcan://vcan0", bitrate: 500000}
  - {name: chassis, url: "socketcan://vcan1", bitrate: 500000, dataBitrate: 2000000, fd: true}
ecus:
  - name: bcm
    bus: body
    addressing: {requestId: 0x726, responseId: 0x72E}
    hardwareId: BCM-HW-02
    flash: {slotSize: 131072, sectorSize: 4096, slotA: 0x0, slotB: 0x20000}
    simulation: {slots: {a: {version: "2.0.3", releaseCounter: 7, payloadSize: 32768}}}
  - name: airbag
    bus: chassis
    addressing: {mode: normal-fixed, ecuAddress: 0x15}
    hardwareId: ACU-HW-01
    flash: {slotSize: 131072, sectorSize: 4096, slotA: 0x0, slotB: 0x20000}
    simulation: {slots: {a: {version: "0.9.7", releaseCounter: 2, payloadSize: 32768}}, txDL: 64}
`

// TestVcanSim runs `ecu-kubelet sim` on the kernel's vcan interfaces in the
// microVM: the ECUs sit on vcan0 and vcan1 themselves, a tester on the same
// interfaces reads their versions over ISO-TP, classic and CAN FD, and
// `ecu-kubelet flash` updates both over real SocketCAN.
func TestVcanSim(t *testing.T) {
	if vcanvm.Run(t) {
		return
	}
	path := filepath.Join(t.TempDir(), "vcan-car.yaml")
	if err := os.WriteFile(path, []byte(vcanCar), 0o644); err != nil {
		t.Fatal(err)
	}
	desc, err := vehicle.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The watchdog bounds the waits so that a lost frame fails the test
	// instead of hanging the VM; it is no timing assertion.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	simCtx, stop := context.WithCancel(ctx)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"sim", "--vehicle", path, "--status-listen", "", "--log-level", "warn"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(simCtx) }()

	for _, want := range []struct{ ecu, version string }{{"bcm", "2.0.3"}, {"airbag", "0.9.7"}} {
		e, _ := desc.ECU(want.ecu)
		b, _ := desc.Bus(e.Bus)
		bus, err := canbus.Open(b.URL, b.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer bus.Close()
		opts := isotp.Options{}
		if b.FD {
			opts.TxDL = 64
		}
		addr, _ := e.Addresses()
		conn, err := isotp.Dial(bus, addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := uds.NewClient(conn, uds.ClientOptions{})
		if got := string(readWhenUp(ctx, t, c, uds.DIDECUSoftwareVersionNumber)); got != want.version {
			t.Errorf("%s: F189 = %q, want %q", want.ecu, got, want.version)
		}
	}
	flashWithCommand(t, path, "bcm", image.Header{Version: "2.1.0", HardwareID: "BCM-HW-02", ReleaseCounter: 8}, 32768)
	flashWithCommand(t, path, "airbag", image.Header{Version: "0.9.8", HardwareID: "ACU-HW-01", ReleaseCounter: 3}, 32768)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("sim: %v", err)
	}
	if !bytes.Contains(out.Bytes(), []byte("buses body=socketcan://vcan0 chassis=socketcan://vcan1")) {
		t.Errorf("sim did not say it sits on the interfaces: %q", out.String())
	}
}
