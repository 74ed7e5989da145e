package sim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"

	"github.com/ecu-kubelet/ecu-kubelet/flash/delta"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
	"github.com/ecu-kubelet/ecu-kubelet/uds/isotp"
)

var busSeq atomic.Uint64

const testHW = "SIM-HW-1"

// testVehicle is a one-ECU vehicle on a fresh 500 kbit/s mem bus with a
// 64 KiB slot geometry and the given simulation section.
func testVehicle(t testing.TB, simulation string) vehicle.ECU {
	t.Helper()
	return testVehicleSized(t, 65536, simulation)
}

// testVehicleSized is testVehicle with slots of slotSize bytes.
func testVehicleSized(t testing.TB, slotSize int, simulation string) vehicle.ECU {
	t.Helper()
	doc := fmt.Sprintf(`
name: test-car
buses: [{name: body, url: "mem://sim-test-%d", bitrate: 500000}]
ecus:
  - name: brake
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: %s
    partNumber: PN-1
    serial: SN-1
    flash: {slotSize: %d, sectorSize: 4096, eraseTimePerSector: 20ms, writeTimePerKiB: 1ms, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
%s
`, busSeq.Add(1), testHW, slotSize, indent(simulation, "      "))
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return v.ECUs[0]
}

func indent(s, by string) string {
	var b bytes.Buffer
	for _, l := range bytes.Split([]byte(s), []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		b.WriteString(by)
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func testImage(t testing.TB, version string, release uint32, size int) []byte {
	t.Helper()
	img, err := SyntheticImage(image.Header{Version: version, HardwareID: testHW, ReleaseCounter: release}, size)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// bench is a running ECU and a tester connected to it over ISO-TP on the
// ECU's mem bus. Make it inside a synctest bubble.
type bench struct {
	t      *testing.T
	ecu    *ECU
	client *uds.Client
	cancel context.CancelFunc
	done   chan error
	buses  []canbus.Bus
}

func newBench(t *testing.T, e vehicle.ECU) *bench {
	t.Helper()
	cfg, err := DecodeConfig(e)
	if err != nil {
		t.Fatal(err)
	}
	return newBenchConfig(t, cfg)
}

func newBenchConfig(t *testing.T, cfg ECUConfig) *bench {
	t.Helper()
	url := fmt.Sprintf("mem://sim-bench-%d", busSeq.Add(1))
	ebus, err := canbus.Open(url, canbus.Config{Bitrate: 500000})
	if err != nil {
		t.Fatal(err)
	}
	tbus, err := canbus.Open(url, canbus.Config{Bitrate: 500000})
	if err != nil {
		t.Fatal(err)
	}
	ecu, err := newECU(cfg, ebus, nil)
	if err != nil {
		t.Fatal(err)
	}
	tester, _ := cfg.ECU.Addresses()
	conn, err := isotp.Dial(tbus, tester, isotp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &bench{t: t, ecu: ecu, client: uds.NewClient(conn, uds.ClientOptions{Timeout: time.Minute}), cancel: cancel, done: make(chan error, 1), buses: []canbus.Bus{ebus, tbus}}
	go func() { b.done <- ecu.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-b.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		conn.Close()
		for _, bus := range b.buses {
			bus.Close()
		}
	})
	b.waitRunning()
	return b
}

// waitRunning waits (in virtual time) until the ECU answers again.
func (b *bench) waitRunning() {
	b.t.Helper()
	for range 1000 {
		if st := b.ecu.Status(); st.State == StateRunning || st.State == StateBootloader {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.t.Fatalf("the ECU did not come up: %+v", b.ecu.Status())
}

func (b *bench) key() uds.KeyFunc {
	k, _, err := oem.SecurityAlgorithm(b.ecu.cfg.ECU.OEM.Settings)
	if err != nil {
		b.t.Fatal(err)
	}
	return k
}

// unlock enters the programming session and unlocks security.
func (b *bench) unlock(ctx context.Context) error {
	if _, err := b.client.DiagnosticSessionControl(ctx, uds.ExtendedSession); err != nil {
		return err
	}
	if _, err := b.client.DiagnosticSessionControl(ctx, uds.ProgrammingSession); err != nil {
		return err
	}
	return b.client.SecurityAccess(ctx, b.ecu.level, b.key())
}

// program runs a whole flash of data (an image, or a delta envelope and
// patch with format FormatDelta) with the digest of the image it makes,
// up to activation and reset. It returns the first error.
func (b *bench) program(ctx context.Context, format byte, data []byte, target []byte) error {
	if err := b.unlock(ctx); err != nil {
		return err
	}
	if _, err := b.client.RoutineControl(ctx, uds.StartRoutine, RoutineEraseInactive, nil); err != nil {
		return err
	}
	slot := b.ecu.writable()
	if slot < 0 {
		return fmt.Errorf("no writable slot")
	}
	if _, err := b.client.Download(ctx, uds.DownloadRequest{DataFormat: format, Address: b.ecu.slotBase(slot), Size: uint64(len(data))}, data, nil); err != nil {
		return err
	}
	d := image.Digest(target)
	res, err := b.client.RoutineControl(ctx, uds.StartRoutine, RoutineVerify, d[:])
	if err != nil {
		return err
	}
	if res[0] != VerifyOK {
		return fmt.Errorf("verify: result %d", res[0])
	}
	if _, err := b.client.RoutineControl(ctx, uds.StartRoutine, RoutineActivate, nil); err != nil {
		return err
	}
	if _, err := b.client.ECUReset(ctx, uds.HardReset); err != nil {
		return err
	}
	return nil
}

// makeDelta returns an envelope and patch from old to new.
func makeDelta(t testing.TB, old, new []byte) []byte {
	t.Helper()
	env, err := delta.NewEnvelope(old, new, delta.CompressionLZMA).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(env)
	if err := delta.Create(&buf, old, new, &delta.CreateOptions{Compression: delta.CompressionLZMA, LZMADictCap: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustBuild(t testing.TB, version string, release uint32, payload []byte) []byte {
	t.Helper()
	img, err := image.Build(image.Header{Version: version, HardwareID: testHW, ReleaseCounter: release}, payload)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func imageHeader(version, hw string) image.Header {
	return image.Header{Version: version, HardwareID: hw, ReleaseCounter: 1}
}

// detoolsFile reads a file of shared/testdata/detools, which sits beside
// the module root (../shared from a checkout), as flash/delta's tests
// find it. Without it ok is false, except under CI=true where a missing
// file is a failure.
func detoolsFile(tb testing.TB, rel string) (b []byte, ok bool) {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	dir := wd
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			tb.Fatalf("no go.mod above %s", wd)
		}
		dir = filepath.Dir(dir)
	}
	p := filepath.Join(dir, "..", "shared", "testdata", "detools", rel)
	b, err = os.ReadFile(p)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("detools test data missing: %v; check out shared/ beside the module", err)
		}
		return nil, false
	}
	return b, true
}

// imageFile writes img to a file of the test's temporary directory and
// returns its path as a YAML double-quoted string, for the `file:` of a
// slot (subtest names put spaces and commas in the path).
func imageFile(tb testing.TB, img []byte) string {
	tb.Helper()
	f, err := os.CreateTemp(tb.TempDir(), "image-*.bin")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(img); err != nil {
		tb.Fatal(err)
	}
	return strconv.Quote(f.Name())
}
