package provider

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/ecu-kubelet/ecu-kubelet/flash/image"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
	"github.com/ecu-kubelet/ecu-kubelet/sim"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// benchBuses are the buses of the benchmarks' vehicles: two classic CAN
// and two CAN FD buses, as a car's body and chassis networks.
var benchBuses = []struct {
	name  string
	rates string
	fd    bool
}{
	{"body0", "bitrate: 500000", false},
	{"body1", "bitrate: 500000", false},
	{"chassis0", "bitrate: 500000, dataBitrate: 2000000, fd: true", true},
	{"chassis1", "bitrate: 500000, dataBitrate: 2000000, fd: true", true},
}

// benchVehicleDoc is the description of a vehicle of n ECUs (ecu0,
// ecu1, ...) spread round robin over benchBuses, each running image 1.0.0
// of payload bytes in slots of slot bytes; busURL gives each bus's URL.
// ECUs on CAN FD buses answer in 64-byte frames.
func benchVehicleDoc(name string, n, payload, slot int, busURL func(bus string) string) string {
	var doc strings.Builder
	fmt.Fprintf(&doc, "name: %s\nbuses:\n", name)
	for _, b := range benchBuses {
		fmt.Fprintf(&doc, "  - {name: %s, url: %q, %s}\n", b.name, busURL(b.name), b.rates)
	}
	doc.WriteString("ecus:\n")
	for i := range n {
		b := benchBuses[i%len(benchBuses)]
		txDL := ""
		if b.fd {
			txDL = "\n      txDL: 64"
		}
		fmt.Fprintf(&doc, `  - name: ecu%d
    bus: %s
    addressing: {requestId: 0x%X, responseId: 0x%X}
    hardwareId: %s
    partNumber: PN-1
    serial: SN-%d
    flash: {slotSize: %d, sectorSize: 4096, eraseTimePerSector: 5ms, writeTimePerKiB: 1ms, slotA: 0x1000000, slotB: 0x2000000}
    simulation:
      slots: {a: {version: "1.0.0", releaseCounter: 1, payloadSize: %d}}%s
`, i, b.name, 0x600+i, 0x680+i, testHW, i, slot, payload, txDL)
	}
	return doc.String()
}

// parseVehicle parses a vehicle description or fails b.
func parseVehicle(b testing.TB, doc string) *vehicle.Vehicle {
	b.Helper()
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		b.Fatalf("%v\n%s", err, doc)
	}
	return v
}

// waitSimRunning waits until every simulated ECU of e has booted, so that
// their boot is not part of what a benchmark measures.
func (e *env) waitSimRunning() {
	e.t.Helper()
	deadline := time.Now().Add(waitFor)
	for _, ecu := range e.v.ECUs {
		for e.sim.ECU(ecu.Name).Status().State != sim.StateRunning {
			if time.Now().After(deadline) {
				e.t.Fatalf("simulated ECU %s is not running after %v: %+v", ecu.Name, waitFor, e.sim.ECU(ecu.Name).Status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// BenchmarkProviderStartup70 runs `ecu-kubelet run` as its own process
// with a vehicle of 70 ECUs on four buses (two classic CAN, two CAN FD at
// 500 kbit/s), against a real API server (etcd and kube-apiserver, nothing
// else), with its default poll interval (5 s), lease duration (40 s, renewed
// every 10 s) and client rate limits (50 requests/s, bursts of 100). The
// simulated vehicle runs in the benchmark's process and is served to the
// provider over socketcand on loopback, so that the provider's resident
// memory is its own.
//
// It reports:
//   - ready-seconds: from starting the process until the API server shows
//     all 70 nodes Ready (target < 5 s); registered-seconds and
//     leases-seconds are when all 70 nodes and all 70 leases existed, and
//     startup-api-requests how many requests the API server completed
//     from the start until all were Ready (requestCounts), to see where
//     the time goes;
//   - rss-MiB: the provider's VmRSS after the steady-state window (target
//     < 64 MiB), rss-anon-MiB and rss-file-MiB its parts (heap and stacks;
//     the executable's pages), and peak-rss-MiB its VmHWM;
//   - api-req/s: the requests the API server completed during a minute of
//     steady state (requestCounts), less the API server's own background
//     rate measured after the provider stopped: with nothing else running
//     against it, the rest are the provider's;
//   - cpu-ms/s: the provider's CPU time (utime+stime) per second of that
//     minute.
//
// ECU_KUBELET_PROVIDER_BENCH_ARGS adds flags to the provider's command
// line, for example "--kube-api-qps=1000 --kube-api-burst=2000".
func BenchmarkProviderStartup70(b *testing.B) {
	const (
		ecus   = 70
		steady = 60 * time.Second // one whole node status interval (1 min)
		quiet  = 15 * time.Second // the API server's own background, after
	)
	bin := buildProvider(b)
	extra := strings.Fields(os.Getenv("ECU_KUBELET_PROVIDER_BENCH_ARGS"))
	var ready, registered, leased, rss, hwm, anon, file, startReqs, reqRate, cpu float64
	for b.Loop() {
		cp := controlplane.Start(b)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		// Registered before newEnv's cleanup, so run after it: the
		// simulator stops first, which ends Serve.
		served, serving := make(chan error, 1), false
		b.Cleanup(func() {
			if !serving {
				ln.Close()
				return
			}
			if err := <-served; err != nil && !errors.Is(err, canbus.ErrServerClosed) {
				b.Errorf("socketcand: %v", err)
			}
		})
		e := newEnv(b, cp, parseVehicle(b, benchVehicleDoc("bench70", ecus, 4096, 16384, func(bus string) string {
			return fmt.Sprintf("mem://provider-bench-%d-%s", busSeq.Add(1), bus)
		})))
		go func() { served <- e.sim.Serve(ln) }()
		serving = true
		e.waitSimRunning()
		// The provider's copy of the description reaches the same buses
		// over socketcand.
		dir := b.TempDir()
		config := filepath.Join(dir, "vehicle.yaml")
		doc := benchVehicleDoc("bench70", ecus, 4096, 16384, func(bus string) string {
			return fmt.Sprintf("socketcand://%s/%s", ln.Addr(), bus)
		})
		if err := os.WriteFile(config, []byte(doc), 0o600); err != nil {
			b.Fatal(err)
		}

		st := watchStartup(b, e.client, ecus)
		s0 := apiRequests(b, e.client)
		proc := startProviderProcess(b, bin, append([]string{"--config", config, "--kubeconfig", cp.Kubeconfig(),
			"--state-dir", filepath.Join(dir, "state"), "--listen", "", "--node-address", "127.0.0.1"}, extra...)...)
		st.wait(proc.started)
		startup := apiRequests(b, e.client).minus(s0)
		startReqs += float64(startup.total())
		ready += st.ready.Seconds()
		registered += st.registered.Seconds()
		leased += st.leased.Seconds()
		b.Logf("from start: first node %v, all nodes %v, all leases %v, all Ready %v",
			st.first.Round(time.Millisecond), st.registered.Round(time.Millisecond),
			st.leased.Round(time.Millisecond), st.ready.Round(time.Millisecond))
		b.Logf("API requests completed until then: %d (%s)", startup.total(), startup)

		// Steady state: the startup burst is over.
		time.Sleep(time.Second)
		m0, cpu0 := apiRequests(b, e.client), proc.cpuTime()
		time.Sleep(steady)
		m1, cpu1 := apiRequests(b, e.client), proc.cpuTime()
		mem := proc.memory()
		rss += float64(mem["VmRSS"]) / (1 << 20)
		hwm += float64(mem["VmHWM"]) / (1 << 20)
		anon += float64(mem["RssAnon"]) / (1 << 20)
		file += float64(mem["RssFile"]) / (1 << 20)
		cpu += float64((cpu1 - cpu0).Milliseconds()) / steady.Seconds()
		proc.stop()

		// The API server's own requests (its identity lease, ...), with
		// nothing else running.
		time.Sleep(2 * time.Second)
		q0 := apiRequests(b, e.client)
		time.Sleep(quiet)
		q1 := apiRequests(b, e.client)
		window, background := m1.minus(m0), q1.minus(q0)
		rate := float64(window.total())/steady.Seconds() - float64(background.total())/quiet.Seconds()
		reqRate += rate
		b.Logf("API requests in %v of steady state: %d (%s); API server alone in %v: %d (%s)",
			steady, window.total(), window, quiet, background.total(), background)
	}
	n := float64(b.N)
	b.ReportMetric(ready/n, "ready-seconds")
	b.ReportMetric(registered/n, "registered-seconds")
	b.ReportMetric(leased/n, "leases-seconds")
	b.ReportMetric(rss/n, "rss-MiB")
	b.ReportMetric(hwm/n, "peak-rss-MiB")
	b.ReportMetric(anon/n, "rss-anon-MiB")
	b.ReportMetric(file/n, "rss-file-MiB")
	b.ReportMetric(startReqs/n, "startup-api-requests")
	b.ReportMetric(reqRate/n, "api-req/s")
	b.ReportMetric(cpu/n, "cpu-ms/s")
}

// buildProvider builds ./cmd/ecu-kubelet as `make build` does, into a
// temporary directory, and returns the binary's path.
func buildProvider(b testing.TB) string {
	b.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Skipf("no go command on PATH to build ecu-kubelet: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "ecu-kubelet")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/ecu-kubelet/ecu-kubelet/cmd/ecu-kubelet")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/ecu-kubelet: %v\n%s", err, out)
	}
	return bin
}

// process is a provider running as its own process.
type process struct {
	b       *testing.B
	cmd     *exec.Cmd
	log     string
	started time.Time
	exited  chan struct{}
}

// startProviderProcess runs `bin run args...` with its log in a file that
// b prints if it fails; b's cleanup kills it if it still runs.
func startProviderProcess(b *testing.B, bin string, args ...string) *process {
	b.Helper()
	p := &process{b: b, log: filepath.Join(b.TempDir(), "ecu-kubelet.log"), exited: make(chan struct{})}
	logFile, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	p.cmd = exec.Command(bin, append([]string{"run", "--log-level", "info"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		b.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	b.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if b.Failed() {
			if out, err := os.ReadFile(p.log); err == nil {
				b.Logf("ecu-kubelet's log:\n%s", out[max(0, len(out)-8192):])
			}
		}
	})
	return p
}

// stop ends the process as a service manager does (SIGTERM), and kills it
// if it has not stopped within 10 s.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.b.Errorf("ecu-kubelet did not stop within 10 s of SIGTERM; killed")
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// memory returns the process's memory figures of /proc/PID/status, in
// bytes: VmRSS (resident set), VmHWM (its peak), and VmRSS's parts RssAnon
// (heap, stacks) and RssFile (pages of the executable).
func (p *process) memory() map[string]int64 {
	p.b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.b.Fatalf("the provider's memory: %v", err)
	}
	mem := map[string]int64{}
	for line := range strings.Lines(string(data)) {
		name, rest, _ := strings.Cut(line, ":")
		if f := strings.Fields(rest); len(f) == 2 && f[1] == "kB" {
			if kB, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				mem[name] = kB << 10
			}
		}
	}
	for _, name := range []string{"VmRSS", "VmHWM", "RssAnon", "RssFile"} {
		if _, ok := mem[name]; !ok {
			p.b.Fatalf("/proc/%d/status has no %s in kB:\n%s", p.cmd.Process.Pid, name, data)
		}
	}
	return mem
}

// cpuTime returns the user and system CPU time the process has used, from
// /proc/PID/stat, in the kernel's USER_HZ ticks of 10 ms.
func (p *process) cpuTime() time.Duration {
	p.b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		p.b.Fatalf("the provider's CPU time: %v", err)
	}
	// The fields after the command name, which may hold spaces, start
	// with the state (field 3); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(data, ')')
	var f []string
	if i >= 0 {
		f = strings.Fields(string(data[i+1:]))
	}
	if len(f) < 13 {
		p.b.Fatalf("/proc/%d/stat: unexpected %q", p.cmd.Process.Pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			p.b.Fatalf("/proc/%d/stat: %v", p.cmd.Process.Pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// startup follows nodes and leases from before the provider starts.
type startup struct {
	b      *testing.B
	n      int
	nodes  watch.Interface
	leases watch.Interface

	first, registered, leased, ready time.Duration
}

// watchStartup starts watching the nodes and leases that n ECUs will have.
func watchStartup(b *testing.B, client kubernetes.Interface, n int) *startup {
	b.Helper()
	ctx := context.Background()
	nodes, err := client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	leases, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		nodes.Stop()
		b.Fatal(err)
	}
	return &startup{b: b, n: n, nodes: nodes, leases: leases}
}

// wait records, as durations since start, when the first node appeared,
// when all n nodes and all n leases existed, and when all n nodes were
// Ready; then it stops watching.
func (s *startup) wait(start time.Time) {
	s.b.Helper()
	defer s.nodes.Stop()
	defer s.leases.Stop()
	seen, ready, leases := map[string]bool{}, map[string]bool{}, map[string]bool{}
	timeout := time.After(waitFor)
	for len(ready) < s.n || len(leases) < s.n {
		select {
		case ev, ok := <-s.nodes.ResultChan():
			if !ok {
				s.b.Fatal("the node watch ended")
			}
			node, ok := ev.Object.(*corev1.Node)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			now := time.Since(start)
			if len(seen) == 0 {
				s.first = now
			}
			seen[node.Name] = true
			if len(seen) == s.n && s.registered == 0 {
				s.registered = now
			}
			if nodeCondition(node, corev1.NodeReady) == corev1.ConditionTrue && !ready[node.Name] {
				ready[node.Name] = true
				if len(ready) == s.n {
					s.ready = now
				}
			}
		case ev, ok := <-s.leases.ResultChan():
			if !ok {
				s.b.Fatal("the lease watch ended")
			}
			if ev.Type == watch.Added {
				leases[ev.Object.(metav1.Object).GetName()] = true
				if len(leases) == s.n {
					s.leased = time.Since(start)
				}
			}
		case <-timeout:
			s.b.Fatalf("after %v: %d nodes, %d leases, %d nodes Ready; want %d of each", waitFor, len(seen), len(leases), len(ready), s.n)
		}
	}
}

// requestCounts are apiserver_request_total's counters by "VERB resource"
// (with "/subresource" where there is one): the resource requests the API
// server completed, every response code, watches left out.
type requestCounts map[string]float64

// apiRequests reads the API server's request counters from its /metrics.
func apiRequests(b *testing.B, client kubernetes.Interface) requestCounts {
	b.Helper()
	data, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Fatalf("the API server's metrics: %v", err)
	}
	counts := requestCounts{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		labels, ok := strings.CutPrefix(sc.Text(), "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		v, err := strconv.ParseFloat(value, 64)
		if !ok || err != nil {
			b.Fatalf("apiserver_request_total: unexpected line %q", sc.Text())
		}
		l := map[string]string{}
		for kv := range strings.SplitSeq(labels, ",") {
			k, val, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(val, `"`)
		}
		if l["resource"] == "" || l["verb"] == "WATCH" {
			// /metrics, /readyz and the like; and watches, which are
			// counted when they end, minutes after they started.
			continue
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		counts[key] += v
	}
	return counts
}

func (c requestCounts) minus(before requestCounts) requestCounts {
	d := requestCounts{}
	for k, v := range c {
		if v -= before[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

func (c requestCounts) total() int {
	var n float64
	for _, v := range c {
		n += v
	}
	return int(n)
}

// String lists the counts, largest first.
func (c requestCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c[a] != c[b] {
			return int(c[b] - c[a])
		}
		return strings.Compare(a, b)
	})
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s %d", k, int(c[k])))
	}
	return strings.Join(s, ", ")
}

// BenchmarkFlashEightOnFourBuses flashes eight ECUs at once, two on each
// of benchBuses, through eight firmware pods created together, with an
// in-process provider against a real API server. Each ECU gets a full
// image of 128 KiB (no delta) in a 256 KiB slot: 64 sectors to erase at
// 5 ms and 128 KiB to write at 1 ms/KiB; it reboots in 200 ms to confirm
// it. The flash engine flashes one ECU per bus at a time (PerBus), so
// each bus carries two flashes in a row.
//
// It reports total-seconds, from creating the pods until the API server
// shows all eight Running and Ready, and slowest-bus-limit-seconds: the
// longest time any bus was busy in that span, the sum of the exact wire
// time (canbus.Config.FrameTime, kept by the mem bus as MemStats.Busy) of
// every frame it carried, both directions and the provider's health polls
// of the other ECUs included. ratio is the first over the second: 1 would
// mean the slowest bus never idled from the first pod to the last Running.
func BenchmarkFlashEightOnFourBuses(b *testing.B) {
	const (
		ecus    = 8
		payload = 128 << 10
	)
	img, err := sim.SyntheticImage(image.Header{Version: "2.0.0", HardwareID: testHW, ReleaseCounter: 2}, payload)
	if err != nil {
		b.Fatal(err)
	}
	var total, limit float64
	for b.Loop() {
		cp := controlplane.Start(b)
		urls := map[string]string{}
		v := parseVehicle(b, benchVehicleDoc("flash8", ecus, payload, 256<<10, func(bus string) string {
			urls[bus] = fmt.Sprintf("provider-bench-%d-%s", busSeq.Add(1), bus)
			return "mem://" + urls[bus]
		}))
		e := newEnv(b, cp, v)
		e.waitSimRunning()
		e.startProvider(Config{Log: zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel))})
		for _, ecu := range v.ECUs {
			e.waitNode(NodeName(v.Name, ecu.Name), "Ready", func(n *corev1.Node) bool {
				return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue
			})
		}
		ref := e.artifactRef(img, "2.0.0")

		pods, err := e.client.CoreV1().Pods("default").Watch(context.Background(), metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		busy0 := busBusy(b, urls)
		start := time.Now()
		for _, ecu := range v.ECUs {
			e.create(firmwarePod("fw-"+ecu.Name, NodeName(v.Name, ecu.Name), ref))
		}
		waitRunning(b, pods, ecus)
		took := time.Since(start)
		pods.Stop()
		busy1 := busBusy(b, urls)

		var slowest string
		var per []string
		for _, bus := range benchBuses {
			d := busy1[bus.name] - busy0[bus.name]
			per = append(per, fmt.Sprintf("%s %v", bus.name, d.Round(time.Millisecond)))
			if slowest == "" || d > busy1[slowest]-busy0[slowest] {
				slowest = bus.name
			}
		}
		busiest := busy1[slowest] - busy0[slowest]
		total += took.Seconds()
		limit += busiest.Seconds()
		b.Logf("all %d Running after %v; bus busy: %s", ecus, took.Round(time.Millisecond), strings.Join(per, ", "))
		for _, ecu := range v.ECUs {
			if got := e.runsVersion(ecu.Name); got != "2.0.0" {
				b.Errorf("%s runs %q, want 2.0.0", ecu.Name, got)
			}
		}
		e.stopProvider()
	}
	n := float64(b.N)
	b.ReportMetric(total/n, "total-seconds")
	b.ReportMetric(limit/n, "slowest-bus-limit-seconds")
	b.ReportMetric(total/limit, "ratio")
}

// busBusy returns how long each mem bus (benchmark bus name to mem bus
// name) has been busy with frames so far.
func busBusy(b *testing.B, names map[string]string) map[string]time.Duration {
	b.Helper()
	busy := map[string]time.Duration{}
	for bus, name := range names {
		st, ok := canbus.MemBusStats(name)
		if !ok {
			b.Fatalf("mem bus %s is not open", name)
		}
		busy[bus] = st.Busy
	}
	return busy
}

// waitRunning follows a pod watch until n pods are Running and Ready, and
// fails b on a pod that fails.
func waitRunning(b *testing.B, pods watch.Interface, n int) {
	b.Helper()
	done := map[string]bool{}
	timeout := time.After(waitFor)
	for len(done) < n {
		select {
		case ev, ok := <-pods.ResultChan():
			if !ok {
				b.Fatal("the pod watch ended")
			}
			p, ok := ev.Object.(*corev1.Pod)
			switch {
			case !ok:
			case p.Status.Phase == corev1.PodFailed:
				b.Fatalf("pod %s failed: %s: %s", p.Name, p.Status.Reason, p.Status.Message)
			case running(p):
				done[p.Name] = true
			}
		case <-timeout:
			b.Fatalf("%d of %d pods Running after %v", len(done), n, waitFor)
		}
	}
}
