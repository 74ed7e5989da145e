package provider

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
)

// Labels, annotations, taint and conditions of ECU nodes.
const (
	Prefix = "ecu-kubelet.io/"

	LabelECU             = Prefix + "ecu"
	LabelVehicle         = Prefix + "vehicle"
	LabelBus             = Prefix + "bus"
	LabelHardwareID      = Prefix + "hardware-id"
	LabelFirmwareVersion = Prefix + "firmware-version"
	LabelActiveSlot      = Prefix + "active-slot"

	// AnnotationSlots holds the slot state as JSON (NodeSlots).
	AnnotationSlots = Prefix + "slots"
	// AnnotationBootloader is the bootloader's identification (F180).
	AnnotationBootloader = Prefix + "bootloader"

	// TaintKey and TaintValue make the taint every ECU node carries
	// (effect NoSchedule); firmware pods tolerate it.
	TaintKey   = "virtual-kubelet.io/provider"
	TaintValue = "ecu-kubelet"

	// ConditionBusReachable is False when the ECU's bus cannot be used at
	// all (an interface or socketcand server gone), as opposed to an ECU
	// that does not answer on a working bus.
	ConditionBusReachable corev1.NodeConditionType = "BusReachable"
	// ConditionFlashInProgress is True while a firmware pod's flash runs.
	ConditionFlashInProgress corev1.NodeConditionType = "FlashInProgress"
)

// NodeSlots is the AnnotationSlots value.
type NodeSlots struct {
	Active string     `json:"active"` // "A", "B" or "" when none runs
	Trial  bool       `json:"trial"`  // the running image awaits confirmation
	Slots  []NodeSlot `json:"slots"`
}

// NodeSlot is one slot of NodeSlots.
type NodeSlot struct {
	Name           string `json:"name"` // "A" or "B"
	State          string `json:"state"`
	Confirmed      bool   `json:"confirmed"`
	Version        string `json:"version,omitempty"`
	ReleaseCounter uint32 `json:"releaseCounter,omitempty"`
	Digest         string `json:"digest,omitempty"`
}

// health is what the last polls of an ECU found.
type health struct {
	// seen is when the ECU last answered; id is what it said then.
	seen       time.Time
	id         oem.Identity
	known      bool // id was read at least once
	bootloader string
	// err is the last poll's error, nil when it answered; busErr says
	// that the bus itself failed rather than the ECU staying silent.
	err    error
	busErr bool
	// misses counts the polls in a row the ECU did not answer.
	misses int
	// adapterErr says err is the OEM adapter's (its settings, its
	// plugin), not the ECU's; identityErr is why an ECU that answers
	// cannot tell its identity (negative responses, a slot record the
	// adapter cannot decode).
	adapterErr  bool
	identityErr error
	flashing    string // the pod whose flash runs, "" when none
}

var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// labelValue makes s a valid label value: characters that a label value
// cannot hold become '_', and it is cut to 63 characters.
func labelValue(s string) string {
	if labelValueRE.MatchString(s) && len(s) <= 63 {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return strings.Trim(string(b), "-_.")
}

func slotName(i int) string {
	if i == 0 || i == 1 {
		return string(rune('A' + i))
	}
	return ""
}

// nodeObject returns the node of an ECU as it is now.
func (n *ecuNode) nodeObject() *corev1.Node {
	h := n.healthNow()
	p := n.p
	labels := map[string]string{
		"type":                             "virtual-kubelet",
		"kubernetes.io/role":               "ecu",
		"kubernetes.io/hostname":           n.name,
		"node-role.kubernetes.io/ecu":      "",
		LabelECU:                           labelValue(n.ecu.Name),
		LabelVehicle:                       labelValue(p.cfg.Vehicle.Name),
		LabelBus:                           labelValue(n.ecu.Bus),
		LabelHardwareID:                    labelValue(n.ecu.HardwareID),
		"node.kubernetes.io/instance-type": "ecu",
	}
	annotations := map[string]string{}
	info := corev1.NodeSystemInfo{
		MachineID:               n.ecu.Serial,
		OperatingSystem:         "firmware",
		Architecture:            "ecu",
		KubeletVersion:          Version,
		ContainerRuntimeVersion: "uds://iso14229",
		OSImage:                 "unknown (not read yet)",
		KernelVersion:           h.bootloader,
	}
	if h.known {
		running, ok := h.id.Slots.Running()
		if ok {
			labels[LabelFirmwareVersion] = labelValue(running.Version)
			labels[LabelActiveSlot] = slotName(h.id.Slots.Active)
			info.OSImage = fmt.Sprintf("%s %s (slot %s)", h.id.HardwareID, running.Version, slotName(h.id.Slots.Active))
			if h.id.Slots.Trial {
				info.OSImage += ", on trial"
			}
		} else {
			info.OSImage = h.id.HardwareID + ": no image runs"
		}
		ns := NodeSlots{Active: slotName(h.id.Slots.Active), Trial: h.id.Slots.Trial}
		for i, s := range h.id.Slots.Slot {
			ns.Slots = append(ns.Slots, NodeSlot{Name: slotName(i), State: s.State, Confirmed: s.Confirmed,
				Version: s.Version, ReleaseCounter: s.ReleaseCounter, Digest: digestOrEmpty(s.Digest)})
		}
		b, _ := json.Marshal(ns)
		annotations[AnnotationSlots] = string(b)
	}
	if h.bootloader != "" {
		annotations[AnnotationBootloader] = h.bootloader
	}
	one := resource.MustParse("1")
	res := corev1.ResourceList{corev1.ResourcePods: one}
	addresses := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.name}}
	if p.cfg.NodeAddress != "" {
		addresses = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: p.cfg.NodeAddress}}, addresses...)
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels, Annotations: annotations},
		Spec: corev1.NodeSpec{
			Taints: []corev1.Taint{{Key: TaintKey, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule}},
		},
		Status: corev1.NodeStatus{
			Capacity:        res,
			Allocatable:     res.DeepCopy(),
			Conditions:      n.conditions(h),
			Addresses:       addresses,
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: p.kubeletPort()}},
			NodeInfo:        info,
		},
	}
}

func digestOrEmpty(d oem.Digest) string {
	if d == (oem.Digest{}) {
		return ""
	}
	return d.String()
}

// conditions turns what the polls found into node conditions. Their
// transition times are kept while the status does not change, as the
// kubelet does.
func (n *ecuNode) conditions(h health) []corev1.NodeCondition {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, ok bool, reason, msg string) corev1.NodeCondition {
		st := corev1.ConditionFalse
		if ok {
			st = corev1.ConditionTrue
		}
		c := corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		n.mu.Lock()
		if prev, ok := n.transitions[t]; ok && prev.status == st {
			c.LastTransitionTime = prev.at
		} else {
			n.transitions[t] = transition{status: st, at: now}
		}
		n.mu.Unlock()
		return c
	}
	var ready corev1.NodeCondition
	switch {
	case h.flashing != "" && h.known:
		ready = cond(corev1.NodeReady, true, "Flashing", "the ECU is being flashed by pod "+h.flashing+"; health polls pause until it ends")
	case h.err == nil && h.identityErr != nil:
		ready = cond(corev1.NodeReady, true, "ECUResponding", fmt.Sprintf("the ECU answers, but its identity cannot be read through its OEM adapter: %v; check the adapter's DIDs for this ECU", h.identityErr))
	case h.err == nil && h.known:
		ready = cond(corev1.NodeReady, true, "ECUResponding", "the ECU answers diagnostic requests (last at "+h.seen.UTC().Format(time.RFC3339)+")")
	case h.err == nil:
		ready = cond(corev1.NodeReady, false, "ECUNotPolledYet", "the ECU has not been asked yet")
	case h.adapterErr:
		ready = cond(corev1.NodeReady, false, "OEMAdapterError", fmt.Sprintf("the ECU's OEM adapter cannot be used: %v; check oem.adapter and oem.settings (and the plugin) of ECU %s in the vehicle config", h.err, n.ecu.Name))
	default:
		ready = cond(corev1.NodeReady, false, "ECUNotResponding", fmt.Sprintf("the ECU does not answer on bus %s: %v; check its power and wiring, or its address in the vehicle config", n.ecu.Bus, h.err))
	}
	bus := cond(ConditionBusReachable, true, "BusUp", "bus "+n.ecu.Bus+" carries frames")
	if h.busErr {
		bus = cond(ConditionBusReachable, false, "BusDown", fmt.Sprintf("bus %s cannot be used: %v", n.ecu.Bus, h.err))
	}
	fl := cond(ConditionFlashInProgress, false, "Idle", "no flash runs")
	if h.flashing != "" {
		fl = cond(ConditionFlashInProgress, true, "Flashing", "pod "+h.flashing+" is flashing the ECU")
	}
	return []corev1.NodeCondition{ready, bus, fl}
}
