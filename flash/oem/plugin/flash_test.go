package plugin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
)

// TestPluginFlashesAcmeECU: the example plugin programs an ECU that
// demands Acme's seed/key, routines, fingerprint and preconditions.
func TestPluginFlashesAcmeECU(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	r := newRig(t, acmeCar(t, acmeOEM(path, sum, "minBatteryMillivolts: 12000"), ""))
	next := synthetic(t, "2.0.0", 2)
	res := r.flash(firmware(next), nil)
	expect(t, res, flash.Done)
	r.checkBoots(false, next)
}

// TestPluginGenericAdapterFailsOnAcmeECU: the generic adapter cannot
// unlock an Acme ECU: the ECU has no level 0x01, and at Acme's level 0x11
// its 8-byte seeds are not the generic algorithm's. The ECU keeps its
// image.
func TestPluginGenericAdapterFailsOnAcmeECU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		settings map[string]any
		want     string
	}{
		{nil, "subFunctionNotSupported"},
		{map[string]any{"securityLevel": 0x11}, "seed of 8 bytes; the xor algorithm takes 4"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, acmeCar(t, "{adapter: generic}", ""))
			res := r.flash(firmware(synthetic(t, "2.0.0", 2)), tc.settings)
			expect(t, res, flash.Failed)
			if !strings.Contains(res.Err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", res.Err, tc.want)
			}
			r.checkBoots(false, synthetic(t, "1.0.0", 1))
		})
	}
}

// TestPluginGenericAdapterOnDefaultECU: a plugin host gives ECUs without
// a plugin the generic adapter, which flashes the simulator's defaults.
func TestPluginGenericAdapterOnDefaultECU(t *testing.T) {
	t.Parallel()
	r := newRig(t, withoutMaker(t, acmeCar(t, "{adapter: generic}", "")))
	next := synthetic(t, "2.0.0", 2)
	expect(t, r.flash(firmware(next), nil), flash.Done)
	r.checkBoots(false, next)
}

// withoutMaker is v with its ECU's simulation as the generic simulator's.
func withoutMaker(t *testing.T, v *vehicle.Vehicle) *vehicle.Vehicle {
	t.Helper()
	raw, err := vehicle.RawYAML(`{bootTime: 20ms, slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 12288}}}`)
	if err != nil {
		t.Fatal(err)
	}
	v.ECUs[0].Simulation = raw
	return v
}

// TestPluginPreFlashChecks: Acme's plugin refuses a moving vehicle and a
// weak battery from the DIDs the engine read for it; nothing is written.
func TestPluginPreFlashChecks(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	for _, tc := range []struct{ vehicle, want string }{
		{"speedKmh: 30", "moves at 30 km/h"},
		{"batteryMillivolts: 11000", "battery at 11000 mV"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), "      vehicle: {"+tc.vehicle+"}\n"))
			res := r.flash(firmware(synthetic(t, "2.0.0", 2)), nil)
			expect(t, res, flash.Refused)
			if !strings.Contains(res.Err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", res.Err, tc.want)
			}
			r.checkBoots(false, synthetic(t, "1.0.0", 1))
		})
	}
}

// TestPluginCrash: a plugin that exits during a call fails the job with
// a reason that names it, the call and its exit status; the ECU keeps its
// image, and the next job gets a new plugin process and succeeds.
func TestPluginCrash(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), ""))
	next := synthetic(t, "2.0.0", 2)
	res := r.flash(firmware(next), map[string]any{"testFault": "crash:Key"})
	expect(t, res, flash.Failed)
	pe := pluginError(t, res.Err, oem.PluginCrashed, "Key")
	want := "oem plugin acme (" + path + "): crashed during Key: exit status 2; it will be restarted for the next job"
	if pe.Error() != want {
		t.Errorf("error %q,\nwant %q", pe, want)
	}
	r.checkBoots(false, synthetic(t, "1.0.0", 1))

	expect(t, r.flash(firmware(next), nil), flash.Done)
	r.checkBoots(false, next)
}

// TestPluginCrashAfterActivation: a plugin that dies once the new image
// runs on trial leaves it on trial (both images stay verified); the next
// job, with a new process, confirms it.
func TestPluginCrashAfterActivation(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), ""))
	base, next := synthetic(t, "1.0.0", 1), synthetic(t, "2.0.0", 2)
	// DecodeSlots runs in the plan, after the unlock, and then after the
	// reset into the new image: the third call is after activation.
	res := r.flash(firmware(next), map[string]any{"testFault": "crash:DecodeSlots:3"})
	expect(t, res, flash.Failed)
	pluginError(t, res.Err, oem.PluginCrashed, "DecodeSlots")
	if !strings.HasPrefix(res.Err.Error(), "oem plugin acme") {
		t.Errorf("error %q: the engine went on waiting for the ECU after its plugin failed", res.Err)
	}
	r.checkBoots(true, base, next)
	if st := r.running(); !st.Trial {
		t.Errorf("the new image is not on trial: %+v", st)
	}

	expect(t, r.flash(firmware(next), nil), flash.Done)
	r.checkBoots(false, next)
}

// TestPluginHang: a plugin that never answers is timed out and stopped;
// the job fails, the ECU keeps its image, the next job works.
func TestPluginHang(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), ""))
	// Long enough for every other call on a loaded machine.
	r.host.CallTimeout = 2 * time.Second
	next := synthetic(t, "2.0.0", 2)
	res := r.flash(firmware(next), map[string]any{"testFault": "hang:Key"})
	expect(t, res, flash.Failed)
	pe := pluginError(t, res.Err, oem.PluginHung, "Key")
	if !strings.Contains(pe.Error(), "will be restarted for the next job") {
		t.Errorf("error %q does not say what happens next", pe)
	}
	r.checkBoots(false, synthetic(t, "1.0.0", 1))

	expect(t, r.flash(firmware(next), nil), flash.Done)
	r.checkBoots(false, next)
}

// TestPluginWrongKey: a plugin whose keys the ECU refuses fails the job
// on the ECU's NRC; nothing is written.
func TestPluginWrongKey(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), ""))
	res := r.flash(firmware(synthetic(t, "2.0.0", 2)), map[string]any{"testFault": "wrong-key"})
	expect(t, res, flash.Failed)
	if !strings.Contains(res.Err.Error(), "invalidKey") && !strings.Contains(res.Err.Error(), "exceededNumberOfAttempts") && !strings.Contains(res.Err.Error(), "requiredTimeDelayNotExpired") {
		t.Errorf("error %q does not carry the ECU's refusal", res.Err)
	}
	r.checkBoots(false, synthetic(t, "1.0.0", 1))
}

// TestPluginNonsense: answers that cannot be right are refused before
// they reach the ECU or the engine's decisions.
func TestPluginNonsense(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	for _, tc := range []struct {
		fault, call, want string
	}{
		{"short-key", "Key", "a key of 4 bytes; the profile says 8"},
		{"bad-slots", "DecodeSlots", `slot B state "haunted"`},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, acmeCar(t, acmeOEM(path, sum, ""), ""))
			res := r.flash(firmware(synthetic(t, "2.0.0", 2)), map[string]any{"testFault": tc.fault})
			expect(t, res, flash.Failed)
			pe := pluginError(t, res.Err, oem.PluginInvalid, tc.call)
			if !strings.Contains(pe.Error(), tc.want) {
				t.Errorf("error %q does not say %q", pe, tc.want)
			}
			r.checkBoots(false, synthetic(t, "1.0.0", 1))
		})
	}
}

// TestPluginChecksumMismatch: a binary whose SHA-256 is not the vehicle
// file's is never run.
func TestPluginChecksumMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	bin := filepath.Join(dir, "impostor")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, sum := examplePlugin(t) // a real plugin's checksum, another file's
	r := newRig(t, acmeCar(t, acmeOEM(bin, sum, ""), ""))
	res := r.flash(firmware(synthetic(t, "2.0.0", 2)), nil)
	expect(t, res, flash.Failed)
	pe := pluginError(t, res.Err, oem.PluginNotStarted, "start")
	if !strings.Contains(pe.Error(), "checksum mismatch") || !strings.Contains(pe.Error(), sum) {
		t.Errorf("error %q does not name the mismatch", pe)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the impostor binary ran")
	}
	r.checkBoots(false, synthetic(t, "1.0.0", 1))
}

// TestPluginExampleVehicle: deploy/examples/acme-car.yaml, with its
// plugin path and checksum set to this build's and its bus in memory,
// flashes its Acme ECU through the plugin.
func TestPluginExampleVehicle(t *testing.T) {
	t.Parallel()
	path, sum := examplePlugin(t)
	v, err := vehicle.Load("../../../deploy/examples/acme-car.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v.Buses[0].URL = fmt.Sprintf("mem://oem-plugin-example-%d", busSeq.Add(1))
	v.ECUs = v.ECUs[:1]
	v.ECUs[0].OEM.Plugin, v.ECUs[0].OEM.SHA256 = path, sum
	// Real time: erasing the 1 MiB slot would take its 5 s.
	v.ECUs[0].Flash.EraseTimePerSector, v.ECUs[0].Flash.WriteTimePerKiB = 0, 0
	r := newRig(t, v)
	img, err := sim.SyntheticImage(image.Header{Version: "7.2.0", HardwareID: v.ECUs[0].HardwareID, ReleaseCounter: 22}, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r.flash(firmware(img), nil), flash.Done)
	r.checkBoots(false, img)
}

// TestPluginNotStarted: a binary with the right checksum that is no
// plugin of this protocol version fails the job before any UDS.
func TestPluginNotStarted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, script, want string }{
		{"exits", "exit 3", "Failed to read any lines from plugin's stdout"},
		{"other protocol version", "echo '1|2|unix|/nonexistent|grpc|'; sleep 5", "incompatible API version with plugin. Plugin version: 2, Client versions: [1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(t.TempDir(), "not-a-plugin")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			r := newRig(t, acmeCar(t, acmeOEM(bin, fileSum(t, bin), ""), ""))
			res := r.flash(firmware(synthetic(t, "2.0.0", 2)), nil)
			expect(t, res, flash.Failed)
			pe := pluginError(t, res.Err, oem.PluginNotStarted, "start")
			if !strings.Contains(pe.Error(), tc.want) || !strings.Contains(pe.Error(), "protocol version 1") {
				t.Errorf("error %q does not say %q and the protocol version", pe, tc.want)
			}
			r.checkBoots(false, synthetic(t, "1.0.0", 1))
		})
	}
}
