package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"go.uber.org/zap/zaptest"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
	"github.com/ecu-kubelet/ecu-kubelet/provider/kubeletapi"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

const testHW = "SIM-HW-7"

// waitFor is how long the integration tests wait for the cluster to show
// what they expect; it bounds a failure, it is not a measurement.
const waitFor = 90 * time.Second

var busSeq atomic.Uint64

// testVehicle is a vehicle of n ECUs (ecu0, ecu1, ...) on timed 500 kbit/s
// mem buses, round robin over buses, each running image 1.0.0 (release 1),
// writing their flash in writeTime per KiB. extra is added to every ECU's
// simulation section.
func testVehicle(t testing.TB, name string, n, buses int, writeTime, extra string) *vehicle.Vehicle {
	t.Helper()
	seq := busSeq.Add(1)
	doc := "name: " + name + "\nbuses:\n"
	for b := range buses {
		doc += fmt.Sprintf("  - {name: bus%d, url: \"mem://provider-test-%d-%d\", bitrate: 500000}\n", b, seq, b)
	}
	doc += "ecus:\n"
	for i := range n {
		doc += fmt.Sprintf(`  - name: ecu%d
    bus: bus%d
    addressing: {requestId: 0x%X, responseId: 0x%X}
    hardwareId: %s
    partNumber: PN-1
    serial: SN-%d
    flash: {slotSize: 65536, sectorSize: 4096, eraseTimePerSector: 5ms, writeTimePerKiB: %s, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: 12288}}
%s`, i, i%buses, 0x700+i, 0x780+i, testHW, i, writeTime, extra)
	}
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return v
}

// env is a control plane, a simulated vehicle and a provider serving it.
type env struct {
	t      testing.TB
	cp     *controlplane.ControlPlane
	client kubernetes.Interface
	v      *vehicle.Vehicle
	sim    *sim.Vehicle
	buses  map[string]canbus.Bus
	state  string
	layout string

	mu   sync.Mutex
	stop func()
}

func newEnv(t testing.TB, cp *controlplane.ControlPlane, v *vehicle.Vehicle) *env {
	t.Helper()
	e := newEnvWith(t, cp.Client(), v)
	e.cp = cp
	return e
}

// newEnvWith is newEnv against an API server that client reaches, when
// the test did not start it (the vcan scenario's VM); the env has no cp.
func newEnvWith(t testing.TB, client kubernetes.Interface, v *vehicle.Vehicle) *env {
	t.Helper()
	sv, err := sim.NewVehicle(v, zaptest.NewLogger(t).Named("sim"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		sv.Run(ctx)
	}()
	e := &env{t: t, client: client, v: v, sim: sv, buses: map[string]canbus.Bus{}, state: t.TempDir(), layout: t.TempDir()}
	for _, b := range v.Buses {
		bus, err := canbus.Open(b.URL, b.Config())
		if err != nil {
			t.Fatal(err)
		}
		e.buses[b.Name] = bus
	}
	t.Cleanup(func() {
		e.stopProvider()
		cancel()
		<-simDone
		for _, b := range e.buses {
			b.Close()
		}
	})
	return e
}

// startProvider runs a provider over the env's state directory, with the
// env's administrator client unless cfg names another.
func (e *env) startProvider(cfg Config) {
	e.t.Helper()
	cfg.Vehicle, cfg.Buses, cfg.StateDir = e.v, e.buses, e.state
	if cfg.Client == nil {
		cfg.Client = e.client
	}
	if cfg.Log == nil {
		cfg.Log = zaptest.NewLogger(e.t).Named("provider")
	}
	cfg.PollInterval = orDefault(cfg.PollInterval, 500*time.Millisecond)
	cfg.NodeAddress = "127.0.0.1"
	p, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	e.mu.Lock()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("provider: %v", err)
		}
	}
	e.mu.Unlock()
}

func (e *env) stopProvider() {
	e.mu.Lock()
	stop := e.stop
	e.stop = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// image is the image the test ECUs run, changed a little: a new version.
func testImage(t testing.TB, version string, release uint32, hw string) []byte {
	t.Helper()
	base, err := sim.SyntheticImage(image.Header{Version: "1.0.0", HardwareID: testHW, ReleaseCounter: 1}, 12288)
	if err != nil {
		t.Fatal(err)
	}
	_, payload, err := image.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Clone(payload)
	for i := 100; i < len(p); i += 997 {
		p[i] ^= byte(release)
	}
	img, err := image.Build(image.Header{Version: version, HardwareID: hw, ReleaseCounter: release}, p)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// artifactRef packs img into the env's OCI layout and returns its
// reference.
func (e *env) artifactRef(img []byte, tag string) string {
	e.t.Helper()
	packed, err := artifact.Pack(context.Background(), img, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ref := artifact.LayoutPrefix + e.layout + ":" + tag
	if _, err := packed.Push(context.Background(), ref, nil); err != nil {
		e.t.Fatal(err)
	}
	return ref
}

// firmwarePod is a firmware pod for the ECU's node, tolerating what
// firmware pods should tolerate.
func firmwarePod(name, node, ref string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "firmware", Image: ref}},
			Tolerations: []corev1.Toleration{
				{Key: TaintKey, Operator: corev1.TolerationOpEqual, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule},
				{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
			},
		},
	}
}

func (e *env) create(pod *corev1.Pod) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitPod waits until the pod satisfies ok.
func (e *env) waitPod(name, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	e.t.Helper()
	var last *corev1.Pod
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		p, err := e.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		e.t.Fatalf("pod %s is not %s after %v: phase %s reason %q message %q conditions %+v", name, what, waitFor, last.Status.Phase, last.Status.Reason, last.Status.Message, last.Status.Conditions)
	}
	e.t.Fatalf("pod %s is not %s after %v: not found", name, what, waitFor)
	return nil
}

// waitPodGone waits until the pod is no longer in the API server.
func (e *env) waitPodGone(name string) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		_, err := e.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pod %s is still there %v after its deletion: %v", name, waitFor, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNode waits until the node satisfies ok.
func (e *env) waitNode(name, what string, ok func(*corev1.Node) bool) *corev1.Node {
	e.t.Helper()
	var last *corev1.Node
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		n, err := e.client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = n
			if ok(n) {
				return n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		e.t.Fatalf("node %s is not %s after %v: labels %v conditions %+v", name, what, waitFor, last.Labels, last.Status.Conditions)
	}
	e.t.Fatalf("node %s is not %s after %v: not found", name, what, waitFor)
	return nil
}

func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

func running(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
}

func failedWith(reason string) func(*corev1.Pod) bool {
	return func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed && p.Status.Reason == reason }
}

// runsVersion reports the version the simulated ECU runs, confirmed.
func (e *env) runsVersion(ecu string) string {
	st := e.sim.ECU(ecu).Status()
	for _, s := range st.Slots {
		if s.Name == st.ActiveSlot && s.Confirmed {
			return s.Version
		}
	}
	return ""
}

func TestIntegrationNodesAndFlash(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car1", 3, 2, "1ms", ""))
	e.startProvider(Config{})

	for i := range 3 {
		name := fmt.Sprintf("car1-ecu%d", i)
		n := e.waitNode(name, "Ready with its firmware version", func(n *corev1.Node) bool {
			return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue && n.Labels[LabelFirmwareVersion] == "1.0.0"
		})
		want := map[string]string{LabelECU: fmt.Sprintf("ecu%d", i), LabelVehicle: "car1", LabelBus: fmt.Sprintf("bus%d", i%2),
			LabelHardwareID: testHW, LabelActiveSlot: "A"}
		for k, v := range want {
			if n.Labels[k] != v {
				t.Errorf("node %s label %s = %q, want %q", name, k, n.Labels[k], v)
			}
		}
		if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == TaintKey && t.Value == TaintValue && t.Effect == corev1.TaintEffectNoSchedule
		}) {
			t.Errorf("node %s taints %+v lack %s=%s:NoSchedule", name, n.Spec.Taints, TaintKey, TaintValue)
		}
		if q := n.Status.Capacity[corev1.ResourcePods]; q.Value() != 1 {
			t.Errorf("node %s pod capacity %v, want 1", name, q.String())
		}
		if !strings.Contains(n.Annotations[AnnotationSlots], `"active":"A"`) || !strings.Contains(n.Status.NodeInfo.OSImage, "1.0.0") {
			t.Errorf("node %s: slots %q, OS image %q", name, n.Annotations[AnnotationSlots], n.Status.NodeInfo.OSImage)
		}
		if _, err := e.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("node %s has no lease: %v", name, err)
		}
	}

	ref := e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")
	e.create(firmwarePod("fw", "car1-ecu1", ref))
	sawPending := false
	e.waitPod("fw", "Running", func(p *corev1.Pod) bool {
		sawPending = sawPending || p.Status.Phase == corev1.PodPending
		return running(p)
	})
	if got := e.runsVersion("ecu1"); got != "2.0.0" {
		t.Errorf("ECU runs %q confirmed, want 2.0.0", got)
	}
	if !sawPending {
		t.Log("the pod was never seen Pending (the flash was faster than the polls)")
	}
	// Every phase is an event; the transfer's progress too, throttled.
	evs, err := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=fw"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, ev := range evs.Items {
		seen = append(seen, ev.Reason+": "+ev.Message)
	}
	all := strings.Join(seen, "\n")
	for _, want := range []string{"Accepted: ", "FlashPlan: plan", "FlashUnlock: unlock", "FlashErase: erase", "FlashTransfer: transfer", "FlashProgress: transfer 100%", "FlashVerify: verify", "FlashActivate: activate", "FlashConfirm: confirm", "Flashed: ECU ecu1 runs firmware 2.0.0"} {
		if !strings.Contains(all, want) {
			t.Errorf("no event %q among:\n%s", want, all)
		}
	}
	e.waitNode("car1-ecu1", "showing 2.0.0", func(n *corev1.Node) bool { return n.Labels[LabelFirmwareVersion] == "2.0.0" })

	// A new image in the pod's spec reflashes (virtual-kubelet's update path).
	ref3 := e.artifactRef(testImage(t, "3.0.0", 3, testHW), "3.0.0")
	p, err := e.client.CoreV1().Pods("default").Get(context.Background(), "fw", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.Containers[0].Image = ref3
	if _, err := e.client.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPod("fw", "Running the new image", func(p *corev1.Pod) bool {
		return running(p) && p.Status.ContainerStatuses[0].Image == ref3
	})
	if got := e.runsVersion("ecu1"); got != "3.0.0" {
		t.Errorf("after the image change the ECU runs %q, want 3.0.0", got)
	}

	// Deleting the pod leaves the firmware alone.
	// virtual-kubelet removes a deleted pod after its grace period.
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "fw", metav1.DeleteOptions{GracePeriodSeconds: new(int64(1))}); err != nil {
		t.Fatal(err)
	}
	e.waitPodGone("fw")
	if got := e.runsVersion("ecu1"); got != "3.0.0" {
		t.Errorf("after the delete the ECU runs %q, want 3.0.0 still", got)
	}
}

func TestIntegrationFailedPods(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car2", 4, 2, "1ms", `      faults: [{kind: bootFailure, version: "3.0.0"}]
`))
	e.startProvider(Config{})
	for i := range 4 {
		e.waitNode(fmt.Sprintf("car2-ecu%d", i), "Ready", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })
	}

	// An image that does not come up is rolled back by the bootloader.
	e.create(firmwarePod("crashes", "car2-ecu0", e.artifactRef(testImage(t, "3.0.0", 3, testHW), "3.0.0")))
	p := e.waitPod("crashes", "Failed with RolledBack", failedWith(ReasonRolledBack))
	if !strings.Contains(p.Status.Message, "1.0.0") {
		t.Errorf("message %q does not say which image runs again", p.Status.Message)
	}
	if got := e.runsVersion("ecu0"); got != "1.0.0" {
		t.Errorf("after the rollback the ECU runs %q, want 1.0.0", got)
	}

	// Firmware for other hardware is refused before the ECU is touched.
	e.create(firmwarePod("otherhw", "car2-ecu1", e.artifactRef(testImage(t, "2.0.0", 2, "OTHER-HW"), "other")))
	p = e.waitPod("otherhw", "Failed with HardwareMismatch", failedWith(ReasonHardwareMismatch))
	if !strings.Contains(p.Status.Message, testHW) || !strings.Contains(p.Status.Message, "OTHER-HW") {
		t.Errorf("message %q does not name both hardware ids", p.Status.Message)
	}

	// Not a firmware pod: two containers.
	two := firmwarePod("two", "car2-ecu2", "oci-layout:/nowhere:x")
	two.Spec.Containers = append(two.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
	e.create(two)
	p = e.waitPod("two", "Failed with InvalidFirmwarePod", failedWith(ReasonInvalidPod))
	if !strings.Contains(p.Status.Message, "exactly one container") {
		t.Errorf("message %q", p.Status.Message)
	}

	// An image that is not a firmware artifact.
	dir := t.TempDir()
	ref := artifact.LayoutPrefix + dir + ":junk"
	if err := writeNonFirmwareLayout(dir, "junk"); err != nil {
		t.Fatal(err)
	}
	e.create(firmwarePod("junk", "car2-ecu3", ref))
	e.waitPod("junk", "Failed with InvalidFirmwareArtifact", failedWith(ReasonInvalidArtifact))

	// Every failure has a warning event naming the reason.
	evs, err := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ReasonRolledBack, ReasonHardwareMismatch, ReasonInvalidPod, ReasonInvalidArtifact} {
		if !slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool { return ev.Reason == want && ev.Type == corev1.EventTypeWarning }) {
			t.Errorf("no warning event %s", want)
		}
	}
	for i := range 4 {
		if got := e.runsVersion(fmt.Sprintf("ecu%d", i)); got != "1.0.0" {
			t.Errorf("ecu%d runs %q, want 1.0.0", i, got)
		}
	}
}

// writeNonFirmwareLayout writes an OCI layout whose tag names an artifact
// of another type than firmware.
func writeNonFirmwareLayout(dir, tag string) error {
	ctx := context.Background()
	store, err := oci.New(dir)
	if err != nil {
		return err
	}
	desc, err := oras.PackManifest(ctx, store, oras.PackManifestVersion1_1, "application/vnd.example.not-firmware", oras.PackManifestOptions{})
	if err != nil {
		return err
	}
	return store.Tag(ctx, desc, tag)
}

// flashing reports whether the pod's flash is in its transfer.
func flashing(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == ConditionFlashed && strings.HasPrefix(c.Message, "transfer") {
			return true
		}
	}
	return false
}

// waitECU waits until the simulated ECU runs version confirmed.
func (e *env) waitECU(ecu, version string) {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for e.runsVersion(ecu) != version {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s does not run %s confirmed after %v: %+v", ecu, version, waitFor, e.sim.ECU(ecu).Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationAPIServerAwayMidFlash(t *testing.T) {
	cp := controlplane.Start(t)
	// 12 KiB written at 250 ms per KiB: a transfer of about 3 s.
	e := newEnv(t, cp, testVehicle(t, "car3", 1, 1, "250ms", ""))
	e.startProvider(Config{})
	e.waitNode("car3-ecu0", "Ready", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })
	e.create(firmwarePod("fw", "car3-ecu0", e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")))
	e.waitPod("fw", "transferring", flashing)
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// The flash goes on without the API server (invariant 5).
	e.waitECU("ecu0", "2.0.0")
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	// And the status converges once it is back.
	e.waitPod("fw", "Running", running)
	e.waitNode("car3-ecu0", "showing 2.0.0", func(n *corev1.Node) bool { return n.Labels[LabelFirmwareVersion] == "2.0.0" })
}

func TestIntegrationProviderRestartMidFlash(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car4", 1, 1, "250ms", ""))
	e.startProvider(Config{})
	e.waitNode("car4-ecu0", "Ready", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })
	e.create(firmwarePod("fw", "car4-ecu0", e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")))
	e.waitPod("fw", "transferring", flashing)
	e.stopProvider()
	if got := e.runsVersion("ecu0"); got != "1.0.0" {
		t.Fatalf("with the provider stopped mid-transfer the ECU runs %q, want 1.0.0", got)
	}
	e.startProvider(Config{})
	p := e.waitPod("fw", "Running", running)
	if got := e.runsVersion("ecu0"); got != "2.0.0" {
		t.Errorf("ECU runs %q, want 2.0.0", got)
	}
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("restart count %d", p.Status.ContainerStatuses[0].RestartCount)
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// approveServingCSR approves the kubelet-serving CSR the provider asks
// for, as a cluster administrator would; the controller manager signs it.
func (e *env) approveServingCSR() {
	e.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		csrs, err := e.client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, c := range csrs.Items {
				if c.Spec.SignerName != certificatesv1.KubeletServingSignerName || len(c.Status.Conditions) > 0 {
					continue
				}
				c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
					Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestApproval", Message: "approved by the test"})
				if _, err := e.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, c.Name, &c, metav1.UpdateOptions{}); err != nil {
					e.t.Fatal(err)
				}
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatal("the provider asked for no kubelet-serving certificate")
}

// execute runs cmd in the pod through the API server, as kubectl exec
// does, and returns its output.
func (e *env) execute(pod string, cmd ...string) (stdout, stderr string, err error) {
	req := e.client.CoreV1().RESTClient().Post().Resource("pods").Namespace("default").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: "firmware", Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(e.cp.RESTConfig(), "POST", req.URL())
	if err != nil {
		return "", "", err
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), err
}

func TestIntegrationLogsAndExecThroughTheAPIServer(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{}))
	e := newEnv(t, cp, testVehicle(t, "car5", 1, 1, "1ms", ""))
	port := freePort(t)
	e.startProvider(Config{KubeletPort: port, API: kubeletapi.Config{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), ClientCAFile: cp.CAFile(), CertDir: t.TempDir(), ServingNames: []string{"127.0.0.1"},
	}})
	e.approveServingCSR()
	e.create(firmwarePod("fw", "car5-ecu0", e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")))
	e.waitPod("fw", "Running", running)

	logs, err := e.client.CoreV1().Pods("default").GetLogs("fw", &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-> RequestDownload", "<- TransferData", "-> RoutineControl", "ECU ecu0 runs firmware 2.0.0"} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	tail, err := e.client.CoreV1().Pods("default").GetLogs("fw", &corev1.PodLogOptions{TailLines: new(int64(1))}).DoRaw(context.Background())
	if err != nil || strings.Count(strings.TrimSpace(string(tail)), "\n") != 0 {
		t.Errorf("tail 1: %q, %v", tail, err)
	}

	out, _, err := e.execute("fw", "read-did", "F189")
	if err != nil || !strings.Contains(out, "2.0.0") {
		t.Errorf("exec read-did F189: %q, %v", out, err)
	}
	var exit utilexec.ExitError
	_, errOut, err := e.execute("fw", "write-did", "F189", "00")
	if !errors.As(err, &exit) || exit.ExitStatus() != 126 || !strings.Contains(errOut, "read-did") {
		t.Errorf("exec write-did: err %v, stderr %q: want exit 126 naming the allowed commands", err, errOut)
	}
}

// TestIntegrationOfflineLongerThanTheLease is a vehicle that goes away
// (its provider stops) for longer than its nodes' leases, in a cluster
// with a controller manager that evicts from unreachable nodes. A firmware
// pod that tolerates node.kubernetes.io/unreachable and not-ready without
// tolerationSeconds stays; one that does not is evicted, and its deletion
// changes nothing on the ECU, not even with rollback-on-delete.
func TestIntegrationOfflineLongerThanTheLease(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{
		// Lenient enough for a loaded machine: leases are renewed every
		// second (LeaseDuration 4 s), a node is unreachable after 10 s.
		NodeMonitorPeriod: time.Second, NodeMonitorGracePeriod: 10 * time.Second, NodeStartupGracePeriod: 10 * time.Second,
		DefaultToleration: 2 * time.Second,
	}))
	// Another vehicle stays online: with every zone of the cluster down
	// (these nodes share the zone ""), the node lifecycle controller
	// suspects itself and evicts nothing.
	online := newEnv(t, cp, testVehicle(t, "car7", 3, 1, "1ms", ""))
	online.startProvider(Config{LeaseDuration: 4 * time.Second})
	e := newEnv(t, cp, testVehicle(t, "car6", 2, 1, "1ms", ""))
	e.startProvider(Config{LeaseDuration: 4 * time.Second})

	// Until a node is Ready it carries node.kubernetes.io/not-ready
	// NoExecute, which would evict the intolerant pod before the test.
	for _, name := range []string{"car6-ecu0", "car6-ecu1"} {
		e.waitNode(name, "Ready and without NoExecute taints", func(n *corev1.Node) bool {
			return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue &&
				!slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoExecute })
		})
	}
	ref := e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0")
	e.create(firmwarePod("tolerant", "car6-ecu0", ref))
	intolerant := firmwarePod("intolerant", "car6-ecu1", ref)
	intolerant.Spec.Tolerations = intolerant.Spec.Tolerations[:1] // the provider's taint only
	intolerant.Annotations = map[string]string{AnnotationRollbackOnDelete: "true"}
	// The eviction's deletion completes after the pod's grace period.
	intolerant.Spec.TerminationGracePeriodSeconds = new(int64(1))
	e.create(intolerant)
	e.waitPod("tolerant", "Running", running)
	e.waitPod("intolerant", "Running", running)
	e.waitNode("car6-ecu1", "showing 2.0.0", func(n *corev1.Node) bool { return n.Labels[LabelFirmwareVersion] == "2.0.0" })

	e.stopProvider() // the vehicle goes offline
	e.waitNode("car6-ecu0", "unreachable", func(n *corev1.Node) bool {
		return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute
		})
	})
	p := e.waitPod("intolerant", "evicted", func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
	if !slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.DisruptionTarget }) {
		t.Errorf("the evicted pod has no DisruptionTarget condition: %+v", p.Status.Conditions)
	}
	// Longer than the default toleration the other pod would have had.
	time.Sleep(5 * time.Second)
	if p, err := e.client.CoreV1().Pods("default").Get(context.Background(), "tolerant", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("the tolerating pod was evicted too: %v", err)
	}

	e.startProvider(Config{LeaseDuration: 4 * time.Second}) // the vehicle is back
	e.waitPod("tolerant", "Running and Ready again", func(p *corev1.Pod) bool {
		return running(p) && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
	})
	e.waitPodGone("intolerant")
	evs, err := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=intolerant"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs.Items, func(ev corev1.Event) bool { return ev.Reason == "RollbackSkipped" }) {
		t.Errorf("no RollbackSkipped event for the evicted pod")
	}
	for _, ecu := range []string{"ecu0", "ecu1"} {
		if got := e.runsVersion(ecu); got != "2.0.0" {
			t.Errorf("%s runs %q after the vehicle came back, want 2.0.0", ecu, got)
		}
	}
}

func TestIntegrationNodeFollowsTheECU(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car8", 2, 1, "1ms", ""))
	e.startProvider(Config{PollInterval: time.Second})
	for _, n := range []string{"car8-ecu0", "car8-ecu1"} {
		e.waitNode(n, "Ready", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })
	}

	// An ECU that stops answering is NotReady, and Ready again when it
	// answers; its bus still works.
	if err := e.sim.ECU("ecu1").Inject(sim.Fault{Kind: sim.FaultBusSilent, Duration: 8 * time.Second}); err != nil {
		t.Fatal(err)
	}
	n := e.waitNode("car8-ecu1", "NotReady", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionFalse })
	if nodeCondition(n, ConditionBusReachable) != corev1.ConditionTrue {
		t.Errorf("a silent ECU on a working bus: BusReachable is %v", nodeCondition(n, ConditionBusReachable))
	}
	e.waitNode("car8-ecu1", "Ready again", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })

	// A workshop flashes ecu0 behind the provider's back: the node shows
	// the new image within a poll or two.
	fw, err := artifact.Resolve(context.Background(), e.artifactRef(testImage(t, "2.5.0", 2, testHW), "workshop"), nil)
	if err != nil {
		t.Fatal(err)
	}
	workshop := &flash.Engine{Buses: e.buses, StateDir: t.TempDir()}
	if res := workshop.Flash(context.Background(), flash.Job{ECU: e.v.ECUs[0], Firmware: fw}); res.Outcome != flash.Done {
		t.Fatalf("workshop flash: %v %v", res.Outcome, res.Err)
	}
	e.waitNode("car8-ecu0", "showing the workshop's image", func(n *corev1.Node) bool {
		return n.Labels[LabelFirmwareVersion] == "2.5.0" && strings.Contains(n.Annotations[AnnotationSlots], `"version":"2.5.0"`)
	})
}

// A vehicle that starts offline registers its nodes once the API server
// can be reached, instead of ending.
func TestIntegrationStartsWithoutTheAPIServer(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car9", 2, 1, "1ms", ""))
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.startProvider(Config{})
	time.Sleep(3 * time.Second) // several failed registrations
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"car9-ecu0", "car9-ecu1"} {
		e.waitNode(n, "Ready", func(n *corev1.Node) bool { return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue })
	}
}

// TestIntegrationPullSecrets: firmware in a registry that wants
// credentials is fetched with the pod's imagePullSecrets; without them the
// pod waits in ArtifactPullBackOff, saying why.
func TestIntegrationPullSecrets(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="firmware"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		registryHandler.ServeHTTP(w, r)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	auth := map[string]any{"auths": map[string]any{host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))}}}
	dockercfg, _ := json.Marshal(auth)

	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car10", 2, 1, "1ms", ""))
	e.startProvider(Config{Artifacts: artifact.Options{PlainHTTP: true}})
	packed, err := artifact.Pack(context.Background(), testImage(t, "2.0.0", 2, testHW), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/firmware/ecu:2.0.0"
	if _, err := packed.Push(context.Background(), ref, &artifact.Options{PlainHTTP: true, PullSecret: dockercfg}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: "default"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: dockercfg}}
	if _, err := e.client.CoreV1().Secrets("default").Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	with := firmwarePod("with-secret", "car10-ecu0", ref)
	with.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	e.create(with)
	e.create(firmwarePod("without-secret", "car10-ecu1", ref))
	e.waitPod("with-secret", "Running", running)
	p := e.waitPod("without-secret", "waiting in ArtifactPullBackOff", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "ArtifactPullBackOff"
	})
	if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, ref) {
		t.Errorf("message %q does not name the reference", msg)
	}
	if got := e.runsVersion("ecu1"); got != "1.0.0" {
		t.Errorf("the ECU without credentials runs %q", got)
	}
}

var registryHandler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))

// TestIntegrationRollbackOnDelete: a pod that asks for it makes its ECU
// run the other slot's image again when its owner deletes it.
func TestIntegrationRollbackOnDelete(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car11", 1, 1, "1ms", ""))
	e.startProvider(Config{})
	// The same release counter: the bootloader's anti-rollback lets the
	// ECU go back to 1.0.0.
	pod := firmwarePod("fw", "car11-ecu0", e.artifactRef(testImage(t, "1.0.1", 1, testHW), "1.0.1"))
	pod.Annotations = map[string]string{AnnotationRollbackOnDelete: "true"}
	e.create(pod)
	e.waitPod("fw", "Running", running)
	e.waitECU("ecu0", "1.0.1")
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "fw", metav1.DeleteOptions{GracePeriodSeconds: new(int64(1))}); err != nil {
		t.Fatal(err)
	}
	e.waitECU("ecu0", "1.0.0")
	e.waitNode("car11-ecu0", "showing 1.0.0 from slot A", func(n *corev1.Node) bool {
		return n.Labels[LabelFirmwareVersion] == "1.0.0" && n.Labels[LabelActiveSlot] == "A"
	})
}

// TestIntegrationRunEndsOnAnError: a provider that cannot serve its
// kubelet API (the port is taken) stops with an error that says so, after
// its nodes had started, instead of hanging.
func TestIntegrationRunEndsOnAnError(t *testing.T) {
	cp := controlplane.Start(t)
	e := newEnv(t, cp, testVehicle(t, "car12", 1, 1, "1ms", ""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := New(Config{Vehicle: e.v, Buses: e.buses, Client: e.client, StateDir: e.state, NodeAddress: "127.0.0.1",
		API: kubeletapi.Config{Addr: ln.Addr().String(), Insecure: true, CertDir: t.TempDir(), ServingNames: []string{"127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("Run: %v, want the kubelet API's address in use", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not end")
	}
}
