package plugin_test

// These tests run the example plugin (cmd/ecu-kubelet-oem-acme) as the
// separate process it is in production, against a simulated Acme ECU on
// a mem bus. They run in real time, not in a testing/synctest bubble: a
// bubble's clock advances only while all its goroutines are durably
// blocked, and a goroutine waiting for another process's answer on a
// socket never is, so a hung plugin would stop the clock that is to time
// it out. The simulated ECU boots in 20 ms and its bus is untimed, so a
// whole flash takes a fraction of a second.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/plugin"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

const (
	testHW      = "ACME-HW-1"
	testPayload = 12 << 10
)

var (
	buildOnce  sync.Once
	pluginPath string
	buildErr   error
	busSeq     atomic.Uint64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginPath != "" {
		os.RemoveAll(filepath.Dir(pluginPath))
	}
	os.Exit(code)
}

// examplePlugin builds the example plugin once per test binary (the Go
// build cache makes it quick after the first time) and returns its path
// and hex SHA-256.
func examplePlugin(t testing.TB) (path, sum string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "oem-plugin-test")
		if err != nil {
			buildErr = err
			return
		}
		pluginPath = filepath.Join(dir, "ecu-kubelet-oem-acme")
		out, err := exec.Command("go", "build", "-o", pluginPath, "github.com/ecu-kubelet/ecu-kubelet/cmd/ecu-kubelet-oem-acme").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the example plugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pluginPath, fileSum(t, pluginPath)
}

func fileSum(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// acmeOEM is the oem section of an ECU using the plugin at path.
func acmeOEM(path, sum, settings string) string {
	return fmt.Sprintf("{adapter: acme, plugin: %q, sha256: %q, settings: {%s}}", path, sum, settings)
}

// acmeCar is a vehicle of one ECU with the oem section oemYAML, running
// image 1.0.0, simulated as an Acme ECU with simExtra in its simulation
// section.
func acmeCar(t testing.TB, oemYAML, simExtra string) *vehicle.Vehicle {
	t.Helper()
	doc := fmt.Sprintf(`name: acme-car
buses:
  - {name: body, url: "mem://oem-plugin-test-%d"}
ecus:
  - name: engine
    bus: body
    addressing: {requestId: 0x7E0, responseId: 0x7E8}
    hardwareId: %s
    oem: %s
    flash: {slotSize: 65536, sectorSize: 4096, slotA: 0x10000, slotB: 0x20000}
    simulation:
      maker: acme
      bootTime: 20ms
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: %d}}
%s`, busSeq.Add(1), testHW, oemYAML, testPayload, simExtra)
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return v
}

// rig is one simulated ECU on a mem bus and an engine whose adapters come
// from a plugin host.
type rig struct {
	t    *testing.T
	ecu  vehicle.ECU
	sim  *sim.ECU
	host *plugin.Host
	eng  *flash.Engine
}

func newRig(t *testing.T, v *vehicle.Vehicle) *rig {
	t.Helper()
	ecu := v.ECUs[0]
	open := func() canbus.Bus {
		b, err := canbus.Open(v.Buses[0].URL, canbus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	e, err := sim.NewECU(ecu, open(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r := &rig{t: t, ecu: ecu, sim: e, host: &plugin.Host{}}
	r.eng = &flash.Engine{
		Buses:          map[string]canbus.Bus{ecu.Bus: open()},
		StateDir:       t.TempDir(),
		NewAdapter:     r.host.New,
		SecurityDelay:  10 * time.Millisecond,
		UpTimeout:      5 * time.Second,
		ConfirmTimeout: 10 * time.Second,
	}
	t.Cleanup(func() {
		r.host.Close()
		cancel()
		<-done
	})
	r.running()
	return r
}

// running waits until the ECU answers and returns its status. The bound
// only turns a hang into a failure.
func (r *rig) running() sim.ECUStatus {
	r.t.Helper()
	for range 1000 {
		if st := r.sim.Status(); st.State == sim.StateRunning {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("the ECU does not run: %+v", r.sim.Status())
	return sim.ECUStatus{}
}

// checkBoots asserts invariant 1: the ECU runs a verified image, one of
// imgs, confirmed unless trialOK.
func (r *rig) checkBoots(trialOK bool, imgs ...[]byte) {
	r.t.Helper()
	st := r.running()
	for _, s := range st.Slots {
		if s.Name != st.ActiveSlot {
			continue
		}
		for _, img := range imgs {
			if s.Digest == oem.Digest(image.Digest(img)).String() && (s.Confirmed || trialOK) {
				return
			}
		}
		r.t.Fatalf("the ECU runs slot %s %+v, none of the expected images", st.ActiveSlot, s)
	}
	r.t.Fatalf("no slot runs: %+v", st)
}

// flash runs a job with the ECU's oem settings changed by settings.
func (r *rig) flash(fw *artifact.Firmware, settings map[string]any) flash.Result {
	ecu := r.ecu
	ecu.OEM.Settings = maps.Clone(ecu.OEM.Settings)
	if ecu.OEM.Settings == nil {
		ecu.OEM.Settings = map[string]any{}
	}
	maps.Copy(ecu.OEM.Settings, settings)
	return r.eng.Flash(context.Background(), flash.Job{ECU: ecu, Firmware: fw})
}

func synthetic(t *testing.T, version string, release uint32) []byte {
	t.Helper()
	img, err := sim.SyntheticImage(image.Header{Version: version, HardwareID: testHW, ReleaseCounter: release}, testPayload)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func firmware(img []byte) *artifact.Firmware {
	hdr, _, _ := image.Parse(img)
	return &artifact.Firmware{
		Ref: "test/" + hdr.Version,
		Config: artifact.Config{HardwareIDs: []string{hdr.HardwareID}, Version: hdr.Version, ReleaseCounter: hdr.ReleaseCounter,
			Size: int64(len(img)), SHA256: oem.Digest(image.Digest(img)).String()},
		OpenImage: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(img)), nil },
	}
}

func expect(t *testing.T, res flash.Result, want flash.Outcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("outcome %v (%v), want %v", res.Outcome, res.Err, want)
	}
}

func pluginError(t *testing.T, err error, want oem.PluginFailure, call string) *oem.PluginError {
	t.Helper()
	var pe *oem.PluginError
	if !errors.As(err, &pe) || pe.Failure != want || pe.Call != call {
		t.Fatalf("error %v; want a plugin failure %d in %s", err, want, call)
	}
	return pe
}
