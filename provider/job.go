package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem"
	"github.com/ecu-kubelet/ecu-kubelet/uds"
)

// podJob is the flash of one pod's image.
type podJob struct {
	s      *podSet
	hp     *heldPod
	image  string
	cancel context.CancelFunc
	done   chan struct{}
	log    *transcriptLog

	// mu also orders status writes: progress never overwrites the
	// outcome once ended is set.
	mu    sync.Mutex
	ended bool
	phase flash.Phase
	// activated says the image was (or may have been) activated: the job
	// must run to its end. The engine sets it through beforeActivate, so
	// a stop can never fall between the activation and the flag; a
	// resumed job has it from the start, since its image may be active.
	activated bool
	stopped   bool
	lastShown time.Time
	lastPct   int64
	started   time.Time
}

// stop stops the job if its image is not activated yet and reports
// whether it did.
func (j *podJob) stop() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.activated {
		return false
	}
	j.stopped = true
	j.cancel()
	return true
}

// beforeActivate is asked by the engine right before it activates the
// image: the job goes on only if nobody stopped it.
func (j *podJob) beforeActivate() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopped {
		return errors.New("the pod was deleted before its image was activated")
	}
	j.activated = true
	return nil
}

// start runs the flash of the pod's current image in the background; a
// job of an earlier image of the same pod is stopped first, or, if it
// activated its image already, waited for.
func (s *podSet) start(hp *heldPod, resumed bool) {
	s.mu.Lock()
	prev := hp.job
	ctx, cancel := context.WithCancel(s.n.p.runCtx)
	j := &podJob{s: s, hp: hp, image: podImage(hp.pod), cancel: cancel, done: make(chan struct{}), activated: resumed}
	hp.job = j
	pod := hp.pod.DeepCopy()
	s.mu.Unlock()
	s.n.p.jobs.Go(func() {
		defer close(j.done)
		defer cancel()
		if prev != nil {
			prev.stop()
			<-prev.done
		}
		j.run(ctx, pod, resumed)
	})
}

// run flashes and reports. ctx ends when the provider stops (the job then
// resumes at the next start, from its journal) or when the pod goes.
func (j *podJob) run(ctx context.Context, pod *corev1.Pod, resumed bool) {
	s, n := j.s, j.s.n
	key := podKey(pod.Namespace, pod.Name)
	note := "waiting for the ECU"
	if resumed {
		note = "resuming after a restart of the provider"
	}
	s.setStatus(j.hp, func(st *corev1.PodStatus) { j.pending(st, "Waiting", note) })
	var err error
	j.log, err = s.openTranscript(pod)
	if err != nil {
		n.log.Error("cannot write the transcript of the flash; kubectl logs will not show it", zap.Error(err))
	}
	defer func() {
		// A flash the provider's stop interrupts goes on after the
		// restart, in the same transcript: no end marker for followers.
		if n.p.runCtx.Err() != nil {
			j.log.Release()
		} else {
			j.log.Close()
		}
	}()
	j.log.Note("flash of %s on ECU %s (node %s)", j.image, n.ecu.Name, n.name)

	// The artifact is fetched before the ECU is taken: a registry out of
	// reach (an offline vehicle) must not stop its health polls and
	// diagnostics for as long as it stays away.
	fw, ok := j.resolve(ctx, pod)
	if !ok {
		return
	}
	if hw := n.ecu.HardwareID; hw != "" && !slices.Contains(fw.Config.HardwareIDs, hw) {
		s.fail(j.hp, ReasonHardwareMismatch, fmt.Sprintf("firmware %s is for hardware %v, but ECU %s is %s; use the firmware built for %s",
			j.image, fw.Config.HardwareIDs, n.ecu.Name, hw, hw))
		return
	}
	if err := n.acquire(ctx); err != nil {
		return
	}
	defer n.release()
	s.mu.Lock()
	s.active = j.hp
	s.mu.Unlock()
	n.update(func(h *health) { h.flashing = key })
	defer func() {
		s.mu.Lock()
		if s.active == j.hp {
			s.active = nil
		}
		s.mu.Unlock()
		// Read the ECU while still holding it, so the node shows the new
		// image before anybody looks.
		if ctx.Err() == nil {
			n.pollOnce(ctx)
		}
		n.update(func(h *health) { h.flashing = "" })
	}()
	s.setStatus(j.hp, func(st *corev1.PodStatus) {
		j.pending(st, "Flashing", fmt.Sprintf("firmware %s, release %d", fw.Config.Version, fw.Config.ReleaseCounter))
		for i := range st.ContainerStatuses {
			st.ContainerStatuses[i].ImageID = fw.Digest
		}
	})
	j.started = time.Now()
	res := n.p.engine.Flash(ctx, flash.Job{ECU: n.ecu, Firmware: fw, AllowDowngrade: pod.Annotations[AnnotationAllowDowngrade] == "true",
		BeforeActivate: j.beforeActivate})
	if ctx.Err() != nil && res.Outcome == flash.Failed {
		j.log.Note("the flash was interrupted (%v); the ECU keeps a bootable image and the job resumes from its journal", context.Cause(ctx))
		return
	}
	// Progress events still queued must not overwrite the outcome.
	j.mu.Lock()
	j.ended = true
	j.mu.Unlock()
	n.p.metrics.flashed(n.ecu.Name, res, time.Since(j.started))
	b, _ := json.Marshal(res.Plan)
	j.log.Note("result: %s; plan: %s", res.Outcome, b)
	switch res.Outcome {
	case flash.Done:
		msg := fmt.Sprintf("ECU %s runs firmware %s (%s), confirmed", n.ecu.Name, fw.Config.Version, fw.Config.SHA256)
		if res.Plan.NoOp {
			msg += "; it already ran it, nothing was written"
		}
		j.log.Note("%s", msg)
		s.event(pod, corev1.EventTypeNormal, "Flashed", msg)
		s.setStatus(j.hp, func(st *corev1.PodStatus) {
			now := metav1.Now()
			st.Phase, st.Reason, st.Message = corev1.PodRunning, "", msg
			fillContainerStatus(pod, st, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}, true)
			for i := range st.ContainerStatuses {
				st.ContainerStatuses[i].ImageID = fw.Digest
			}
			setPodCondition(st, ConditionFlashed, true, "Confirmed", msg)
			setPodCondition(st, corev1.ContainersReady, true, "Confirmed", "")
			setPodCondition(st, corev1.PodReady, true, "Confirmed", "")
		})
	case flash.RolledBack:
		j.log.Note("%v", res.Err)
		s.fail(j.hp, ReasonRolledBack, res.Err.Error())
	case flash.Refused:
		j.log.Note("%v", res.Err)
		s.fail(j.hp, ReasonRefused, res.Err.Error())
	default:
		j.log.Note("%v", res.Err)
		s.fail(j.hp, failReason(res.Err), fmt.Sprintf("%v; the ECU runs its previous image", res.Err))
	}
}

// failReason is the pod reason of a failed flash: the name of the NRC
// that stopped it, if one did.
func failReason(err error) string {
	var nr *uds.NegativeResponse
	var pe *oem.PluginError
	if errors.As(err, &pe) {
		return ReasonPluginFailed
	}
	if errors.As(err, &nr) {
		name := nr.Code.Name()
		if name != "" {
			return string(name[0]-'a'+'A') + name[1:]
		}
	}
	return ReasonFlashFailed
}

// resolve fetches the pod's firmware artifact. A reference that is not a
// valid firmware artifact fails the pod; a registry that cannot be reached
// (a vehicle offline) is retried with a growing pause, the pod Pending.
func (j *podJob) resolve(ctx context.Context, pod *corev1.Pod) (*artifact.Firmware, bool) {
	s := j.s
	wait := 5 * time.Second
	for {
		opts := s.n.p.cfg.Artifacts
		secret, err := s.pullSecret(ctx, pod)
		if err == nil {
			opts.PullSecret = secret
			var fw *artifact.Firmware
			fw, err = artifact.Resolve(ctx, j.image, &opts)
			if err == nil {
				j.log.Note("resolved %s to %s: version %s, release %d, %d delta(s)", j.image, fw.Digest, fw.Config.Version, fw.Config.ReleaseCounter, len(fw.Deltas))
				return fw, true
			}
			if errors.Is(err, artifact.ErrInvalid) {
				s.fail(j.hp, ReasonInvalidArtifact, fmt.Sprintf("%v; the image must be a firmware artifact (ecu-kubelet firmware pack builds one)", err))
				return nil, false
			}
		}
		if ctx.Err() != nil {
			return nil, false
		}
		msg := fmt.Sprintf("cannot fetch %s: %v; retrying in %v", j.image, err, wait)
		j.log.Note("%s", msg)
		s.event(pod, corev1.EventTypeWarning, "ArtifactPullBackOff", msg)
		s.setStatus(j.hp, func(st *corev1.PodStatus) { j.pending(st, "ArtifactPullBackOff", msg) })
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// pullSecret merges the pod's imagePullSecrets into one
// .dockerconfigjson; nil when it names none.
func (s *podSet) pullSecret(ctx context.Context, pod *corev1.Pod) ([]byte, error) {
	if len(pod.Spec.ImagePullSecrets) == 0 {
		return nil, nil
	}
	merged := map[string]json.RawMessage{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		sec, err := s.n.p.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("imagePullSecret %s/%s: %w", pod.Namespace, ref.Name, err)
		}
		if sec.Type != corev1.SecretTypeDockerConfigJson {
			return nil, fmt.Errorf("imagePullSecret %s/%s is of type %s; want %s", pod.Namespace, ref.Name, sec.Type, corev1.SecretTypeDockerConfigJson)
		}
		var cfg struct {
			Auths map[string]json.RawMessage `json:"auths"`
		}
		if err := json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return nil, fmt.Errorf("imagePullSecret %s/%s: %s is not JSON: %w", pod.Namespace, ref.Name, corev1.DockerConfigJsonKey, err)
		}
		for host, a := range cfg.Auths {
			if _, ok := merged[host]; !ok {
				merged[host] = a
			}
		}
	}
	return json.Marshal(map[string]any{"auths": merged})
}

// pending sets a status of a flash under way.
func (j *podJob) pending(st *corev1.PodStatus, reason, msg string) {
	pod := j.hp.pod
	if st.Phase != corev1.PodRunning {
		// A reflash of a running pod keeps it Running, its container
		// waiting, as the kubelet does with a restarted container.
		st.Phase = corev1.PodPending
	}
	st.Reason, st.Message = "", ""
	fillContainerStatus(pod, st, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}, false)
	setPodCondition(st, corev1.PodScheduled, true, "", "")
	setPodCondition(st, corev1.PodInitialized, true, "", "")
	setPodCondition(st, ConditionFlashed, false, reason, msg)
	setPodCondition(st, corev1.ContainersReady, false, reason, msg)
	setPodCondition(st, corev1.PodReady, false, reason, msg)
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
}

// progress shows a flash event: every phase change as an event and in
// the status, transfer progress in the status at most every two seconds
// and as an event every 25 %.
func (j *podJob) progress(ev flash.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ended {
		return
	}
	newPhase := ev.Phase != j.phase
	j.phase = ev.Phase
	show := newPhase || ev.Note != ""
	var pct int64 = -1
	if ev.Total > 0 && ev.Phase == flash.PhaseTransfer {
		pct = ev.Bytes * 100 / ev.Total
		if time.Since(j.lastShown) >= 2*time.Second || pct == 100 {
			show = true
		}
	}
	milestone := pct >= 0 && pct/25 > j.lastPct/25
	if pct >= 0 {
		j.lastPct = pct
	}
	if newPhase {
		j.lastPct = 0
	}
	if show {
		j.lastShown = time.Now()
	}
	if !show && !milestone {
		return
	}
	msg := string(ev.Phase)
	if pct >= 0 {
		msg = fmt.Sprintf("%s %d%% (%d of %d bytes, %.1f KB/s, ETA %v)", ev.Phase, pct, ev.Bytes, ev.Total, ev.Rate/1000, ev.ETA.Round(time.Second))
	}
	if ev.Note != "" {
		msg += ": " + ev.Note
	}
	if newPhase || milestone || ev.Note != "" {
		j.log.Note("%s", msg)
		// A reason per phase: the event recorder folds an object's
		// events of one reason together after ten of them.
		reason := "Flash" + strings.ToUpper(string(ev.Phase[:1])) + string(ev.Phase[1:])
		if !newPhase && ev.Note == "" {
			reason = "FlashProgress"
		}
		j.s.event(j.s.podOf(j.hp), corev1.EventTypeNormal, reason, msg)
	}
	if show {
		j.s.setStatus(j.hp, func(st *corev1.PodStatus) { j.pending(st, "Flashing", msg) })
	}
}

// transcribe writes one UDS message to the pod's transcript.
func (j *podJob) transcribe(t flash.TranscriptEntry) {
	if t.NRC != "" {
		j.s.n.p.metrics.nrc(j.s.n.ecu.Name, t.NRC)
	}
	j.log.Entry(t)
}
