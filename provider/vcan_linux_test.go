//go:build linux

package provider

import (
	"context"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
	"github.com/ecu-kubelet/ecu-kubelet/sim/vcanvm"
)

// vcanVehicle has two ECUs on vcan0 (classic CAN, 11-bit identifiers) and
// one on vcan1 (CAN FD, 29-bit normal-fixed addressing, 64-byte frames),
// each running testHW's image 1.0.0 as testImage expects.
const vcanVehicle = `
name: vcar
buses:
  - {name: body, url: "socketcan://vcan0", bitrate: 500000}
  - {name: chassis, url: "socketcan://vcan1", bitrate: 500000, dataBitrate: 2000000, fd: true}
ecus:
  - name: bcm
    bus: body
    addressing: {requestId: 0x726, responseId: 0x72E}
    hardwareId: SIM-HW-7
    flash: &flash {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 5ms, writeTimePerKiB: 1ms, slotA: 0x1000000, slotB: 0x2000000}
    simulation: {slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 12288}}}
  - name: door
    bus: body
    addressing: {requestId: 0x727, responseId: 0x72F}
    hardwareId: SIM-HW-7
    flash: *flash
    simulation: {slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 12288}}}
  - name: airbag
    bus: chassis
    addressing: {mode: normal-fixed, ecuAddress: 0x15}
    hardwareId: SIM-HW-7
    flash: *flash
    simulation: {slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 12288}}, txDL: 64}
`

// The files the host hands the VM, under vcanvm.FilesDir.
const (
	vcanKubeconfig = "kubeconfig"
	vcanLayout     = "layout" // an OCI layout with the firmware, tag 2.0.0
)

// TestVcanProviderFlashesOverVcan is the integration scenario on the
// kernel's SocketCAN: the API server runs on the host, the simulated
// vehicle and the provider in the microVM on vcan0 and vcan1, each
// attached to the interfaces by URL as separate processes would be. The
// VM reaches the API server through a forwarded loopback port; the
// firmware reaches it as an OCI layout in the VM's files. After the VM
// is gone, the host reads from its own API server what the VM's provider
// wrote there.
func TestVcanProviderFlashesOverVcan(t *testing.T) {
	if !vcanvm.Inside() {
		if testing.Short() {
			t.Skip("SKIP: vcan microVM tests do not run with -short: each boots a qemu VM")
		}
		cp := controlplane.Start(t)
		port, files := vcanHostFiles(t, cp)
		if !vcanvm.RunWith(t, vcanvm.Options{Forward: []int{port}, Files: files}) {
			t.Fatal("vcanvm.RunWith returned false on the host")
		}
		// The VM's provider registered its nodes with this API server and
		// labelled the flashed ones with their new firmware.
		for node, version := range map[string]string{"vcar-bcm": "2.0.0", "vcar-door": "1.0.0", "vcar-airbag": "2.0.0"} {
			n, err := cp.Client().CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
			if err != nil {
				t.Errorf("after the VM run: node %s: %v", node, err)
				continue
			}
			if got := n.Labels[LabelFirmwareVersion]; got != version {
				t.Errorf("after the VM run: node %s shows firmware %q, want %q", node, got, version)
			}
		}
		return
	}
	vcanScenario(t)
}

// vcanHostFiles writes what the VM needs: a kubeconfig whose server is the
// API server's port forwarded to vcanvm.HostAddr, and the firmware's OCI
// layout. It returns the port to forward and the files.
func vcanHostFiles(t *testing.T, cp *controlplane.ControlPlane) (int, map[string][]byte) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cp.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	var port int
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			t.Fatal(err)
		}
		if port, err = strconv.Atoi(u.Port()); err != nil {
			t.Fatalf("API server URL %q: %v", c.Server, err)
		}
		// The serving certificate names 127.0.0.1, where the VM's
		// connections arrive on the host: verify that name, not the
		// address the VM dials.
		c.TLSServerName = u.Hostname()
		u.Host = net.JoinHostPort(vcanvm.HostAddr, u.Port())
		c.Server = u.String()
	}
	kubeconfig, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{vcanKubeconfig: kubeconfig}

	// artifactRef packs into an env's layout directory; nothing else of
	// the env is needed on the host.
	host := &env{t: t, layout: t.TempDir()}
	host.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")
	err = filepath.WalkDir(host.layout, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(host.layout, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		files[filepath.Join(vcanLayout, rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return port, files
}

// vcanScenario is the VM's half: nodes, a flash on each bus, delete.
func vcanScenario(t *testing.T) {
	start := time.Now()
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(vcanvm.FilesDir, vcanKubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	// What `ecu-kubelet run` asks for by default (--kube-api-qps,
	// --kube-api-burst); client-go's own 5 and 10 would throttle the
	// provider and the test's polls, which share the client.
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vehicle.Parse([]byte(vcanVehicle))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, client, v)
	// Info, not zaptest's debug: every frame's log line would crawl
	// through the VM's serial console.
	e.startProvider(Config{Log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named("provider")})

	for _, ecu := range v.ECUs {
		b, _ := v.Bus(ecu.Bus)
		name := "vcar-" + ecu.Name
		n := e.waitNode(name, "Ready with its firmware version", func(n *corev1.Node) bool {
			return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue && n.Labels[LabelFirmwareVersion] == "1.0.0"
		})
		want := map[string]string{LabelECU: ecu.Name, LabelVehicle: "vcar", LabelBus: b.Name, LabelHardwareID: testHW, LabelActiveSlot: "A"}
		for k, v := range want {
			if n.Labels[k] != v {
				t.Errorf("node %s label %s = %q, want %q", name, k, n.Labels[k], v)
			}
		}
	}
	t.Logf("nodes Ready %v after the VM's test started", time.Since(start).Round(100*time.Millisecond))

	// One flash on each interface at once: classic CAN and CAN FD.
	ref := artifact.LayoutPrefix + filepath.Join(vcanvm.FilesDir, vcanLayout) + ":2.0.0"
	flashStart := time.Now()
	e.create(firmwarePod("fw-bcm", "vcar-bcm", ref))
	e.create(firmwarePod("fw-airbag", "vcar-airbag", ref))
	for _, ecu := range []string{"bcm", "airbag"} {
		e.waitPod("fw-"+ecu, "Running", running)
		if got := e.runsVersion(ecu); got != "2.0.0" {
			t.Errorf("%s runs %q confirmed, want 2.0.0", ecu, got)
		}
		e.waitNode("vcar-"+ecu, "showing 2.0.0", func(n *corev1.Node) bool { return n.Labels[LabelFirmwareVersion] == "2.0.0" })
	}
	t.Logf("both pods Running and both nodes showing 2.0.0 %v after they were created", time.Since(flashStart).Round(100*time.Millisecond))
	if got := e.runsVersion("door"); got != "1.0.0" {
		t.Errorf("door, which no pod names, runs %q, want 1.0.0", got)
	}

	// Deleting a pod leaves the firmware alone.
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "fw-bcm", metav1.DeleteOptions{GracePeriodSeconds: new(int64(1))}); err != nil {
		t.Fatal(err)
	}
	e.waitPodGone("fw-bcm")
	if got := e.runsVersion("bcm"); got != "2.0.0" {
		t.Errorf("after the delete bcm runs %q, want 2.0.0 still", got)
	}
	t.Logf("scenario done %v after the VM's test started", time.Since(start).Round(100*time.Millisecond))
}
