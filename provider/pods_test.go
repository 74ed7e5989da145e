package provider

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ecu-kubelet/ecu-kubelet/uds"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

func TestValidatePodNamesWhatToFix(t *testing.T) {
	good := firmwarePod("fw", "car-ecu0", "oci-layout:/x:1")
	for _, tc := range []struct {
		name   string
		change func(*corev1.Pod)
		want   string // in the error; "" for a valid pod
	}{
		{"valid", func(*corev1.Pod) {}, ""},
		{"two containers", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "b", Image: "b"})
		}, "exactly one container"},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, "exactly one container"},
		{"no image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = " " }, "has no image"},
		{"init container", func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "i"}} }, "no init containers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good.DeepCopy()
			tc.change(p)
			err := validatePod(p)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("validatePod: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFailReasonIsTheNRCName(t *testing.T) {
	err := fmt.Errorf("flash: x: transfer: %w", &uds.NegativeResponse{Service: uds.TransferData, Code: 0x72})
	if got := failReason(err); got != "GeneralProgrammingFailure" {
		t.Errorf("failReason = %q", got)
	}
	if got := failReason(errors.New("other")); got != ReasonFlashFailed {
		t.Errorf("failReason = %q", got)
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3":                 "1.2.3",
		"v1.0 beta+build/7":     "v1.0_beta_build_7",
		"-x-":                   "x",
		strings.Repeat("a", 70): strings.Repeat("a", 63),
		"":                      "",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("labelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// A record in the state directory that cannot be read is set aside with
// its bytes kept, and the good ones are held again.
func TestLoadSetsAsideUnreadableRecords(t *testing.T) {
	v := testVehicle(t, "car", 1, 1, "1ms", "")
	bus, err := canbus.Open(v.Buses[0].URL, v.Buses[0].Config())
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	state := t.TempDir()
	p, err := New(Config{Vehicle: v, Buses: map[string]canbus.Bus{"bus0": bus}, Client: fake.NewClientset(), StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	n := p.nodes[0]
	good := firmwarePod("good", n.name, "oci-layout:/x:1")
	good.UID = "u1"
	n.pods.save(&heldPod{pod: good})
	dir := filepath.Join(state, "pods")
	bad := map[string]string{
		n.name + "_default_garbage.json": "{not json",
		n.name + "_default_other.json":   `{"pod":{"metadata":{"name":"other"},"spec":{"nodeName":"elsewhere"}}}`,
	}
	for name, body := range bad {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.pods.load(); err != nil {
		t.Fatal(err)
	}
	pods, _ := n.pods.GetPods(t.Context())
	if len(pods) != 1 || pods[0].Name != "good" || pods[0].UID != "u1" {
		t.Errorf("held %v, want only the good pod", pods)
	}
	for name, body := range bad {
		b, err := os.ReadFile(filepath.Join(dir, name+".bad"))
		if err != nil || string(b) != body {
			t.Errorf("%s was not set aside intact: %q, %v", name, b, err)
		}
	}
	if _, err := n.pods.GetPod(t.Context(), "default", "good"); err != nil {
		t.Error(err)
	}
}
