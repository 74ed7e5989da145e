package sim

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
	"go.uber.org/zap"
)

// TestNewECUOnCANFDWithNormalFixedAddressing runs an ECU through the
// public API from a whole vehicle description: 29-bit normal-fixed
// addressing on a CAN FD bus, identification by DID, a functional
// TesterPresent, and a JSON status.
func TestNewECUOnCANFDWithNormalFixedAddressing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		doc := fmt.Sprintf(`
name: fd-car
buses: [{name: chassis, url: "mem://sim-fd-%d", bitrate: 500000, dataBitrate: 2000000, fd: true}]
ecus:
  - name: gateway
    bus: chassis
    addressing: {mode: normal-fixed, ecuAddress: 0x10}
    hardwareId: GW-HW
    partNumber: GW-PN
    serial: GW-SN
    oem: {adapter: generic, settings: {seedKey: add, seedKeyConstant: 0x11223344, securityLevel: 0x11}}
    flash: {slotSize: 131072, sectorSize: 4096, slotA: 0x0, slotB: 0x20000}
    simulation:
      slots: {a: {version: "3.1.4", releaseCounter: 7, payloadSize: 50000}}
      txDL: 64
`, busSeq.Add(1))
		v, err := vehicle.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		spec := v.ECUs[0]
		busCfg, _ := v.Bus(spec.Bus)
		url := busCfg.URL
		ebus, err := canbus.Open(url, busCfg.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer ebus.Close()
		tbus, err := canbus.Open(url, busCfg.Config())
		if err != nil {
			t.Fatal(err)
		}
		defer tbus.Close()
		ecu, err := NewECU(spec, ebus, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if ecu.Name() != "gateway" {
			t.Errorf("Name = %q", ecu.Name())
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ecu.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		tester, _ := spec.Addresses()
		ftester, _ := spec.FunctionalAddresses()
		opts := isotp.Options{TxDL: 64}
		phys, err := isotp.Dial(tbus, tester, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer phys.Close()
		fun, err := isotp.Dial(tbus, ftester, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer fun.Close()
		c := uds.NewClient(phys, uds.ClientOptions{Functional: fun})
		time.Sleep(time.Second) // boot
		recs, err := c.ReadDataByIdentifier(ctx, uds.DIDECUSoftwareVersionNumber)
		if err != nil || string(recs[0].Data) != "3.1.4" {
			t.Fatalf("F189 = %v, %v", recs, err)
		}
		if _, err := c.DiagnosticSessionControl(ctx, uds.ProgrammingSession); err != nil {
			t.Fatal(err)
		}
		key, level, err := oem.SecurityAlgorithm(spec.OEM.Settings)
		if err != nil || level != 0x11 {
			t.Fatalf("SecurityAlgorithm: level %#x, %v", level, err)
		}
		if err := c.SecurityAccess(ctx, level, key); err != nil {
			t.Fatal(err)
		}
		res, err := c.Functional(ctx, []byte{0x3E, 0x00})
		if err != nil || len(res) != 1 || res[0].Err != nil || len(res[0].Response) == 0 {
			t.Fatalf("functional TesterPresent: %+v, %v", res, err)
		}
		// A whole flash in CAN FD frames.
		img, err := SyntheticImage(image.Header{Version: "3.2.0", HardwareID: "GW-HW", ReleaseCounter: 8}, 60000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RoutineControl(ctx, uds.StartRoutine, RoutineEraseInactive, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Download(ctx, uds.DownloadRequest{Address: spec.Flash.SlotB, Size: uint64(len(img))}, img, nil); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(img)
		if res, err := c.RoutineControl(ctx, uds.StartRoutine, RoutineVerify, sum[:]); err != nil || res[0] != VerifyOK {
			t.Fatalf("verify: % X, %v", res, err)
		}
		if _, err := c.RoutineControl(ctx, uds.StartRoutine, RoutineActivate, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ECUReset(ctx, uds.HardReset); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if _, err := c.RoutineControl(ctx, uds.StartRoutine, RoutineConfirm, nil); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(ecu.Status())
		if err != nil {
			t.Fatal(err)
		}
		var back ECUStatus
		if err := json.Unmarshal(js, &back); err != nil || back.ActiveSlot != "B" || back.Slots[1].Version != "3.2.0" || !back.Slots[1].Confirmed || back.Slots[0].Version != "3.1.4" || back.Session != uds.DefaultSession.String() {
			t.Fatalf("status %s: %+v, %v", js, back, err)
		}
	})
}

// TestDeltaFlashOfRealFirmware flashes detools' shell firmware pair
// (141,800 bytes) as a delta over ISO-TP: only the patch crosses the
// bus, and the ECU applies it from slot A into slot B.
func TestDeltaFlashOfRealFirmware(t *testing.T) {
	o, ok1 := detoolsFile(t, "shell/old")
	n, ok2 := detoolsFile(t, "shell/new")
	if !ok1 || !ok2 {
		t.Skip("shared/testdata/detools/shell not found beside the module root")
	}
	oldImg, newImg := mustBuild(t, "1.0.0", 1, o), mustBuild(t, "1.1.0", 2, n)
	patch := makeDelta(t, oldImg, newImg)
	synctest.Test(t, func(t *testing.T) {
		e := testVehicleSized(t, 256<<10, "slots: {a: {file: "+imageFile(t, oldImg)+"}}")
		b := newBench(t, e)
		start := time.Now()
		if err := b.program(context.Background(), FormatDelta, patch, newImg); err != nil {
			t.Fatal(err)
		}
		wantRunning(t, b, "B", newImg)
		t.Logf("a %d-byte patch for a %d-byte image flashed in %v (virtual, 500 kbit/s)", len(patch), len(newImg), time.Since(start).Round(time.Millisecond))
	})
}
