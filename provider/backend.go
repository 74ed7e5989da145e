package provider

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/provider/diag"
	"github.com/ecu-kubelet/ecu-kubelet/provider/transcript"
)

// The provider is the kubelet API's backend for every node it serves.

// find returns the node holding a pod.
func (p *Provider) find(namespace, name string) (*ecuNode, *corev1.Pod, error) {
	for _, n := range p.nodes {
		if pod, err := n.pods.GetPod(context.Background(), namespace, name); err == nil {
			return n, pod, nil
		}
	}
	return nil, nil, errdefs.NotFoundf("pod %s/%s is not held by any ECU node of vehicle %s", namespace, name, p.cfg.Vehicle.Name)
}

// Pods returns every pod the provider holds.
func (p *Provider) Pods(ctx context.Context) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	for _, n := range p.nodes {
		pods, _ := n.pods.GetPods(ctx)
		out = append(out, pods...)
	}
	return out, nil
}

// Logs opens the UDS transcript of a pod's flashes.
func (p *Provider) Logs(ctx context.Context, namespace, name, container string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	n, pod, err := p.find(namespace, name)
	if err != nil {
		return nil, err
	}
	if err := checkContainer(pod, container); err != nil {
		return nil, err
	}
	return transcript.Open(ctx, n.pods.transcriptPath(pod), transcript.FromLogOpts(opts))
}

// Exec runs one allow-listed diagnostic command against the pod's ECU,
// unless a flash speaks to it: diagnostics never interleave with a flash.
// Refusals and failures go to stderr and end as exit codes (diag.ExitCode;
// 1 also for an ECU that is busy or cannot be reached).
func (p *Provider) Exec(ctx context.Context, namespace, name, container string, cmd []string, attach api.AttachIO) error {
	n, pod, err := p.find(namespace, name)
	if err != nil {
		return err
	}
	if err := checkContainer(pod, container); err != nil {
		return err
	}
	fail := func(err error) error {
		if w := attach.Stderr(); w != nil {
			fmt.Fprintln(w, err)
		}
		return utilexec.CodeExitError{Err: err, Code: diag.ExitCode(err)}
	}
	if err := diag.Check(cmd); err != nil {
		return fail(err)
	}
	if !n.tryAcquire() {
		return fail(fmt.Errorf("ECU %s is busy (%s); diagnostics wait until it is done: try again later", n.ecu.Name, n.healthNow().flashing))
	}
	defer n.release()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := p.engine.Open(ctx, n.ecu)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	var out io.Writer = io.Discard
	if w := attach.Stdout(); w != nil {
		out = w
	}
	if err := diag.Run(ctx, s.Client, cmd, out); err != nil {
		return fail(err)
	}
	return nil
}

func checkContainer(pod *corev1.Pod, container string) error {
	for _, c := range pod.Spec.Containers {
		if c.Name == container || container == "" {
			return nil
		}
	}
	return errdefs.NotFoundf("pod %s/%s has no container %q", pod.Namespace, pod.Name, container)
}

// StatsSummary reports every ECU pod of the process under one node, the
// vehicle: one kubelet API server serves all the ECU nodes and cannot tell
// which of them the API server asked for.
func (p *Provider) StatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	now := metav1.Now()
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.cfg.Vehicle.Name, StartTime: p.started}}
	pods, _ := p.Pods(ctx)
	for _, pod := range pods {
		ps := statsv1alpha1.PodStats{
			PodRef: statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
		}
		if pod.Status.StartTime != nil {
			ps.StartTime = *pod.Status.StartTime
		}
		for _, c := range pod.Status.ContainerStatuses {
			cs := statsv1alpha1.ContainerStats{Name: c.Name, StartTime: ps.StartTime}
			if c.State.Running != nil {
				cs.StartTime = c.State.Running.StartedAt
			}
			// An ECU's firmware uses no CPU or memory of this host.
			zero := uint64(0)
			cs.CPU = &statsv1alpha1.CPUStats{Time: now, UsageNanoCores: &zero, UsageCoreNanoSeconds: &zero}
			cs.Memory = &statsv1alpha1.MemoryStats{Time: now, WorkingSetBytes: &zero, UsageBytes: &zero}
			ps.Containers = append(ps.Containers, cs)
		}
		sum.Pods = append(sum.Pods, ps)
	}
	return sum, nil
}

// transcriptPath is where a pod's transcript is kept.
func (s *podSet) transcriptPath(pod *corev1.Pod) string {
	return filepath.Join(s.n.p.cfg.StateDir, "transcripts", string(pod.UID)+".log")
}

// openTranscript opens the pod's transcript for a flash; a reflash of the
// same pod appends to it.
func (s *podSet) openTranscript(pod *corev1.Pod) (*transcriptLog, error) {
	w, err := transcript.Create(s.transcriptPath(pod))
	if err != nil {
		return nil, err
	}
	return &transcriptLog{w: w}, nil
}

// transcriptLog is a pod's transcript; a nil one writes nothing, so that
// a flash goes on when its transcript cannot be written.
type transcriptLog struct{ w *transcript.Writer }

func (l *transcriptLog) Note(format string, a ...any) {
	if l != nil {
		l.w.Note(time.Now(), fmt.Sprintf(format, a...))
	}
}

func (l *transcriptLog) Entry(t flash.TranscriptEntry) {
	if l != nil {
		l.w.Entry(t)
	}
}

func (l *transcriptLog) Close() {
	if l != nil {
		l.w.Close()
	}
}

func (l *transcriptLog) Release() {
	if l != nil {
		l.w.Release()
	}
}

// removeTranscript deletes a released pod's transcript.
func (s *podSet) removeTranscript(pod *corev1.Pod) { os.Remove(s.transcriptPath(pod)) }
