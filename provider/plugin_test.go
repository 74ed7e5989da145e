package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
)

// acmeVehicle is two ECUs of Acme Motors, the example maker, programmed
// through the example plugin at path; the second one's plugin crashes
// when asked for a key.
func acmeVehicle(t *testing.T, path string) *vehicle.Vehicle {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	doc := fmt.Sprintf("name: acme\nbuses:\n  - {name: pt, url: \"mem://provider-acme-%d\", bitrate: 500000}\necus:\n", busSeq.Add(1))
	for i, fault := range []string{"", `, testFault: "crash:Key"`} {
		doc += fmt.Sprintf(`  - name: engine%d
    bus: pt
    addressing: {requestId: 0x%X, responseId: 0x%X}
    hardwareId: ACME-ECM-7
    partNumber: ACME-7700-ECM
    serial: ACME-%d
    oem:
      adapter: acme
      plugin: %s
      sha256: "%s"
      settings: {minBatteryMillivolts: 12000, workshop: 0x4B42%s}
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 5ms, writeTimePerKiB: 1ms, slotA: 0x08000000, slotB: 0x08100000}
    simulation:
      maker: acme
      vehicle: {speedKmh: 0, batteryMillivolts: 12600}
      slots: {a: {version: "7.1.0", releaseCounter: 21, payloadSize: 12288}}
`, i, 0x7E0+i, 0x7E8+i, i, path, hex.EncodeToString(sum[:]), fault)
	}
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return v
}

// TestIntegrationPluginAdapter: pods on ECUs that demand an OEM's own
// security access and routines flash through that OEM's plugin process;
// a plugin that crashes fails its pod with a reason naming the plugin,
// and is started again for the next job.
func TestIntegrationPluginAdapter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ecu-kubelet-oem-acme")
	if out, err := exec.Command("go", "build", "-o", path, "github.com/ecu-kubelet/ecu-kubelet/cmd/ecu-kubelet-oem-acme").CombinedOutput(); err != nil {
		t.Fatalf("building the example plugin: %v\n%s", err, out)
	}
	cp := controlplane.Start(t)
	e := newEnv(t, cp, acmeVehicle(t, path))
	e.startProvider(Config{})
	for _, n := range []string{"acme-engine0", "acme-engine1"} {
		e.waitNode(n, "Ready (its identity read through the plugin)", func(n *corev1.Node) bool {
			return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue && n.Labels[LabelFirmwareVersion] == "7.1.0"
		})
	}
	ref := e.artifactRef(testImage(t, "7.2.0", 22, "ACME-ECM-7"), "7.2.0")

	e.create(firmwarePod("crashes", "acme-engine1", ref))
	p := e.waitPod("crashes", "Failed with OEMPluginFailed", failedWith(ReasonPluginFailed))
	for _, want := range []string{"oem plugin acme", "crashed during Key", "restarted for the next job"} {
		if !strings.Contains(p.Status.Message, want) {
			t.Errorf("message %q lacks %q", p.Status.Message, want)
		}
	}
	if got := e.runsVersion("engine1"); got != "7.1.0" {
		t.Errorf("after the plugin crashed the ECU runs %q, want 7.1.0", got)
	}

	e.create(firmwarePod("fw", "acme-engine0", ref))
	e.waitPod("fw", "Running", running)
	e.waitECU("engine0", "7.2.0")
}
