package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
)

// Pod annotations.
const (
	// AnnotationRollbackOnDelete ("true") asks that deleting the pod
	// activates the ECU's other slot; by default a deleted pod leaves the
	// firmware as it is.
	AnnotationRollbackOnDelete = Prefix + "rollback-on-delete"
	// AnnotationAllowDowngrade ("true") lets the pod flash an image with a
	// lower release counter than the running one (the ECU may still
	// refuse it).
	AnnotationAllowDowngrade = Prefix + "allow-downgrade"

	// ConditionFlashed is the pod condition that follows the flash: False
	// with the phase and progress while it runs, True once the image is
	// confirmed.
	ConditionFlashed corev1.PodConditionType = Prefix + "flashed"
)

// Reasons a firmware pod fails for, besides an NRC's name.
const (
	ReasonInvalidPod       = "InvalidFirmwarePod"
	ReasonInvalidArtifact  = "InvalidFirmwareArtifact"
	ReasonHardwareMismatch = "HardwareMismatch"
	ReasonNodeBusy         = "ECUHasFirmwarePod"
	ReasonRolledBack       = "RolledBack"
	ReasonRefused          = "Refused"
	ReasonFlashFailed      = "FlashFailed"
	// ReasonPluginFailed: the ECU's OEM adapter plugin crashed, hung or
	// answered nonsense; the message says which, and it is started again
	// for the next job.
	ReasonPluginFailed = "OEMPluginFailed"
)

// podSet holds the pods of one ECU node: virtual-kubelet's
// PodLifecycleHandler and PodNotifier for that node.
type podSet struct {
	n        *ecuNode
	recorder record.EventRecorder

	saveMu sync.Mutex // orders the writes of held pods' records
	mu     sync.Mutex
	pods   map[string]*heldPod // by namespace/name
	notify func(*corev1.Pod)
	// active is the pod whose flash runs, nil when none does.
	active *heldPod
}

// heldPod is a pod the provider holds.
type heldPod struct {
	pod *corev1.Pod // as virtual-kubelet gave it, with the status the provider gives it
	// job is the running flash, nil when none runs.
	job *podJob
	// deleted is set once DeletePod was called.
	deleted bool
}

func newPodSet(n *ecuNode) *podSet {
	return &podSet{n: n, pods: map[string]*heldPod{}, recorder: &record.FakeRecorder{}}
}

func podKey(namespace, name string) string { return namespace + "/" + name }

// CreatePod accepts a firmware pod and starts its flash in the background.
// A pod that cannot be a firmware deployment is accepted too and ends
// Failed with the reason, so that its owner sees what to fix; CreatePod
// errors only for the provider's own failures.
func (s *podSet) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	key := podKey(pod.Namespace, pod.Name)
	s.mu.Lock()
	if hp, ok := s.pods[key]; ok && hp.pod.UID == pod.UID {
		s.mu.Unlock()
		return s.UpdatePod(ctx, pod)
	}
	var oldJob *podJob
	var oldPod *corev1.Pod
	if old, ok := s.pods[key]; ok {
		// A pod of the same name but another UID: the old one is gone
		// from the API server even if its deletion has not reached us.
		old.deleted, oldJob, oldPod = true, old.job, old.pod
	}
	hp := &heldPod{pod: pod}
	s.pods[key] = hp
	var busy *heldPod
	for _, o := range s.pods {
		if o != hp && !o.deleted && !terminal(o.pod) {
			busy = o
		}
	}
	s.mu.Unlock()
	if oldJob != nil {
		oldJob.stop() // outside s.mu: progress takes the job's lock, then s.mu
	}
	if oldPod != nil {
		s.removeTranscript(oldPod)
	}
	if pod.Status.StartTime == nil {
		now := metav1.Now()
		pod.Status.StartTime = &now
	}
	if err := validatePod(pod); err != nil {
		s.fail(hp, ReasonInvalidPod, err.Error())
		return nil
	}
	if busy != nil {
		s.fail(hp, ReasonNodeBusy, fmt.Sprintf("node %s already holds firmware pod %s/%s (an ECU runs one firmware at a time); delete that pod first, or change its image to reflash",
			s.n.name, busy.pod.Namespace, busy.pod.Name))
		return nil
	}
	s.event(pod, corev1.EventTypeNormal, "Accepted", fmt.Sprintf("firmware %s for ECU %s", pod.Spec.Containers[0].Image, s.n.ecu.Name))
	s.start(hp, false)
	return nil
}

// validatePod checks that a pod is a firmware deployment.
func validatePod(pod *corev1.Pod) error {
	switch {
	case len(pod.Spec.InitContainers) > 0:
		return errors.New("a firmware pod has no init containers; remove them")
	case len(pod.Spec.EphemeralContainers) > 0:
		return errors.New("a firmware pod has no ephemeral containers")
	case len(pod.Spec.Containers) != 1:
		return fmt.Errorf("a firmware pod has exactly one container whose image is the firmware artifact; this one has %d", len(pod.Spec.Containers))
	case strings.TrimSpace(pod.Spec.Containers[0].Image) == "":
		return fmt.Errorf("container %q has no image; set it to the firmware artifact's reference (REGISTRY/REPO:TAG or oci-layout:DIR:TAG)", pod.Spec.Containers[0].Name)
	}
	return nil
}

// UpdatePod takes a changed pod: a new image reflashes the ECU; other
// changes (labels, annotations, tolerations) are only kept.
func (s *podSet) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	pod = pod.DeepCopy()
	s.mu.Lock()
	hp, ok := s.pods[podKey(pod.Namespace, pod.Name)]
	if !ok {
		s.mu.Unlock()
		return errdefs.NotFoundf("pod %s/%s is not held by node %s", pod.Namespace, pod.Name, s.n.name)
	}
	oldImage := podImage(hp.pod)
	pod.Status = hp.pod.Status
	hp.pod = pod
	s.mu.Unlock()
	if terminal(pod) || validatePod(pod) != nil || podImage(pod) == oldImage {
		s.save(hp)
		return nil
	}
	s.event(pod, corev1.EventTypeNormal, "ImageChanged", fmt.Sprintf("reflashing ECU %s: %s -> %s", s.n.ecu.Name, oldImage, podImage(pod)))
	s.start(hp, false)
	return nil
}

func podImage(pod *corev1.Pod) string {
	if len(pod.Spec.Containers) == 0 {
		return ""
	}
	return pod.Spec.Containers[0].Image
}

// DeletePod lets go of a pod. It never erases firmware: a flash that has
// not activated its image yet is stopped (the ECU keeps running its
// previous image), one that has runs on to its confirmation or rollback so
// that the ECU is never left between two images. With
// AnnotationRollbackOnDelete the ECU's other slot is activated.
func (s *podSet) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	key := podKey(pod.Namespace, pod.Name)
	s.mu.Lock()
	hp, ok := s.pods[key]
	if !ok {
		s.mu.Unlock()
		return errdefs.NotFoundf("pod %s is not held by node %s", key, s.n.name)
	}
	hp.deleted = true
	delete(s.pods, key)
	job := hp.job
	st := hp.pod.Status.DeepCopy()
	s.mu.Unlock()
	msg := "the firmware stays on the ECU: deleting a pod never erases it"
	if job != nil {
		if job.stop() {
			msg = "the flash was stopped before its image was activated; the ECU runs its previous image"
		} else {
			msg = "the flash had activated its image and runs on to its confirmation or rollback; the node shows the outcome"
		}
	}
	terminated := &corev1.ContainerStateTerminated{Reason: "Deleted", Message: msg, FinishedAt: metav1.Now()}
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		if cs.State.Terminated == nil {
			if cs.State.Running != nil {
				terminated.StartedAt = cs.State.Running.StartedAt
			}
			cs.State = corev1.ContainerState{Terminated: terminated}
		}
		cs.Ready = false
		cs.Started = new(false)
	}
	if st.Phase != corev1.PodFailed {
		st.Phase = corev1.PodSucceeded
	}
	setPodCondition(st, corev1.PodReady, false, "PodDeleted", msg)
	setPodCondition(st, corev1.ContainersReady, false, "PodDeleted", msg)
	final := pod.DeepCopy()
	final.Status = *st
	s.event(final, corev1.EventTypeNormal, "Released", msg)
	if pod.Annotations[AnnotationRollbackOnDelete] == "true" {
		// The pod as the API server has it: it says who deleted it.
		s.rollbackOnDelete(pod)
	}
	s.saveMu.Lock()
	os.Remove(s.recordPath(pod.Namespace, pod.Name))
	s.saveMu.Unlock()
	s.removeTranscript(pod)
	s.publish(final)
	return nil
}

// GetPod returns a pod the provider holds.
func (s *podSet) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hp, ok := s.pods[podKey(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not held by node %s", namespace, name, s.n.name)
	}
	return hp.pod.DeepCopy(), nil
}

// GetPodStatus returns the status of a pod the provider holds.
func (s *podSet) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	p, err := s.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &p.Status, nil
}

// GetPods returns exactly the pods the provider holds, so that
// virtual-kubelet's dangling-pod cleanup never sees anything else.
func (s *podSet) GetPods(context.Context) ([]*corev1.Pod, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(s.pods))
	for _, hp := range s.pods {
		out = append(out, hp.pod.DeepCopy())
	}
	sort.Slice(out, func(i, j int) bool {
		return podKey(out[i].Namespace, out[i].Name) < podKey(out[j].Namespace, out[j].Name)
	})
	return out, nil
}

// NotifyPods keeps virtual-kubelet's status callback and hands it the
// status of every pod held from an earlier run.
func (s *podSet) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	s.mu.Lock()
	s.notify = cb
	var held []*corev1.Pod
	for _, hp := range s.pods {
		held = append(held, hp.pod.DeepCopy())
	}
	s.mu.Unlock()
	go func() {
		for _, p := range held {
			cb(p)
		}
	}()
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

// podOf returns the pod as held now; UpdatePod replaces it.
func (s *podSet) podOf(hp *heldPod) *corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return hp.pod
}

// setStatus changes a held pod's status, keeps it on disk and tells
// virtual-kubelet.
func (s *podSet) setStatus(hp *heldPod, f func(*corev1.PodStatus)) {
	s.mu.Lock()
	f(&hp.pod.Status)
	p := hp.pod.DeepCopy()
	gone := hp.deleted
	s.mu.Unlock()
	if gone {
		return
	}
	s.save(hp)
	s.publish(p)
}

func (s *podSet) publish(p *corev1.Pod) {
	s.mu.Lock()
	cb := s.notify
	s.mu.Unlock()
	if cb != nil {
		cb(p)
	}
}

func (s *podSet) event(p *corev1.Pod, typ, reason, msg string) {
	s.recorder.Event(p, typ, reason, msg)
}

// fail ends a pod Failed with reason and message, and an event.
func (s *podSet) fail(hp *heldPod, reason, msg string) {
	pod := s.podOf(hp)
	s.event(pod, corev1.EventTypeWarning, reason, msg)
	s.n.log.Info("firmware pod failed", zap.String("pod", podKey(pod.Namespace, pod.Name)), zap.String("reason", reason), zap.String("message", msg))
	s.setStatus(hp, func(st *corev1.PodStatus) {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, reason, msg
		now := metav1.Now()
		fillContainerStatus(hp.pod, st, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: reason, Message: msg, FinishedAt: now}}, false)
		setPodCondition(st, corev1.PodReady, false, reason, msg)
		setPodCondition(st, corev1.ContainersReady, false, reason, msg)
		setPodCondition(st, ConditionFlashed, false, reason, msg)
	})
}

// fillContainerStatus sets the state of the pod's one container.
func fillContainerStatus(pod *corev1.Pod, st *corev1.PodStatus, state corev1.ContainerState, ready bool) {
	name := "firmware"
	if len(pod.Spec.Containers) > 0 {
		name = pod.Spec.Containers[0].Name
	}
	var prev corev1.ContainerStatus
	for _, cs := range st.ContainerStatuses {
		if cs.Name == name {
			prev = cs
		}
	}
	cs := corev1.ContainerStatus{Name: name, Image: podImage(pod), ImageID: prev.ImageID, State: state, Ready: ready,
		Started: new(ready), RestartCount: prev.RestartCount, LastTerminationState: prev.LastTerminationState}
	st.ContainerStatuses = []corev1.ContainerStatus{cs}
}

// setPodCondition sets a condition, keeping its transition time while its
// status stays the same.
func setPodCondition(st *corev1.PodStatus, t corev1.PodConditionType, ok bool, reason, msg string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	now := metav1.Now()
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = status, reason, msg, now
		return
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: now, LastProbeTime: now})
}

// record is a held pod on disk.
type podRecord struct {
	Pod *corev1.Pod `json:"pod"`
}

func (s *podSet) recordPath(namespace, name string) string {
	return filepath.Join(s.n.p.cfg.StateDir, "pods", s.n.name+"_"+namespace+"_"+name+".json")
}

// save keeps a held pod on disk, atomically, so that a restarted provider
// holds the same pods and resumes their flashes.
func (s *podSet) save(hp *heldPod) {
	// One save (or removal) at a time, the pod read inside: the file
	// always ends with the newest state, and a deleted pod's record is
	// never written back after its removal.
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	b, err := json.Marshal(podRecord{Pod: hp.pod})
	path := s.recordPath(hp.pod.Namespace, hp.pod.Name)
	gone := hp.deleted
	s.mu.Unlock()
	if gone {
		return
	}
	if err == nil {
		err = writeFileAtomic(path, b)
	}
	if err != nil {
		s.n.log.Error("cannot keep the pod in the state directory; a restart would forget it", zap.String("path", path), zap.Error(err))
	}
}

// writeFileAtomic replaces path with b: a crash leaves the old or the new
// content, never a mix. Concurrent writers each use their own temporary
// file; the last rename wins.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// load reads the pods an earlier run held. A record that cannot be read
// is set aside (renamed *.bad) with an error in the log, never deleted.
func (s *podSet) load() error {
	pattern := filepath.Join(s.n.p.cfg.StateDir, "pods", s.n.name+"_*.json")
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return err
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		var rec podRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil && (rec.Pod == nil || rec.Pod.Name == "" || rec.Pod.Spec.NodeName != s.n.name) {
			err = errors.New("not a pod of this node")
		}
		if err != nil {
			s.n.log.Error("set aside an unreadable pod record", zap.String("path", path), zap.Error(err))
			os.Rename(path, path+".bad")
			continue
		}
		s.pods[podKey(rec.Pod.Namespace, rec.Pod.Name)] = &heldPod{pod: rec.Pod}
	}
	return nil
}

// resume restarts the flashes an earlier run did not finish: the engine
// carries on from the ECU's state and its journal.
func (s *podSet) resume(context.Context) {
	s.mu.Lock()
	var todo []*heldPod
	for _, hp := range s.pods {
		if !terminal(hp.pod) && !flashed(hp.pod) {
			todo = append(todo, hp)
		}
	}
	s.mu.Unlock()
	for _, hp := range todo {
		pod := s.podOf(hp)
		s.n.log.Info("resuming the flash of a pod held before the restart", zap.String("pod", podKey(pod.Namespace, pod.Name)))
		s.start(hp, true)
	}
}

// flashed reports whether the pod's image runs confirmed.
func flashed(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == ConditionFlashed {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// activeJob returns the job whose flash runs on the ECU, nil when none.
func (s *podSet) activeJob() *podJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		return nil
	}
	return s.active.job
}

// progress hands a flash event to the pod whose flash runs.
func (s *podSet) progress(ev flash.Event) {
	if j := s.activeJob(); j != nil {
		j.progress(ev)
	}
}

// transcribe hands a UDS message to the pod whose flash runs.
func (s *podSet) transcribe(t flash.TranscriptEntry) {
	if j := s.activeJob(); j != nil {
		j.transcribe(t)
	}
}

// rollbackOnDelete activates the ECU's other slot after a pod that asked
// for it is deleted, once any flash of the ECU has ended. A pod evicted
// from an unreachable node (the taint manager's deletion) is not rolled
// back: an offline vehicle must not lose its firmware to an eviction.
func (s *podSet) rollbackOnDelete(pod *corev1.Pod) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			s.event(pod, corev1.EventTypeWarning, "RollbackSkipped", fmt.Sprintf(
				"the pod was deleted by the cluster (%s: %s), not by its owner; the ECU keeps its firmware. Firmware pods should tolerate node.kubernetes.io/unreachable and not-ready without tolerationSeconds", c.Reason, c.Message))
			return
		}
	}
	ctx := s.n.p.runCtx
	s.n.p.jobs.Go(func() {
		if err := s.n.acquire(ctx); err != nil {
			return
		}
		defer s.n.release()
		s.event(pod, corev1.EventTypeNormal, "RollingBack", fmt.Sprintf("activating the other slot of ECU %s (%s)", s.n.ecu.Name, AnnotationRollbackOnDelete))
		s.n.update(func(h *health) { h.flashing = podKey(pod.Namespace, pod.Name) + " (rollback)" })
		res := s.n.p.engine.Rollback(ctx, s.n.ecu)
		s.n.update(func(h *health) { h.flashing = "" })
		if ctx.Err() != nil && res.Outcome == flash.Failed {
			return
		}
		s.n.p.metrics.flashed(s.n.ecu.Name, res, 0)
		if res.Outcome == flash.Done {
			s.event(pod, corev1.EventTypeNormal, "RolledBackOnDelete", fmt.Sprintf("ECU %s runs %s again", s.n.ecu.Name, res.Plan.Version))
		} else {
			s.event(pod, corev1.EventTypeWarning, "RollbackFailed", fmt.Sprintf("%v; the ECU runs the image it ran before", res.Err))
		}
		s.n.pollOnce(ctx)
	})
}
