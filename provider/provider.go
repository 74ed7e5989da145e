package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/oem/plugin"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/kubeletapi"
)

// Version is what ECU nodes report as their kubelet version.
var Version = "ecu-kubelet/v0.1.0"

// Provider serves every ECU of a vehicle as a node.
type Provider struct {
	cfg     Config
	log     *zap.Logger
	engine  *flash.Engine
	nodes   []*ecuNode
	byECU   map[string]*ecuNode
	metrics *metrics
	events  chan flash.Event
	plugins *plugin.Host
	// runCtx is Run's context: flash jobs and polls end with it; jobs
	// are the flash and rollback goroutines, which Run waits for.
	runCtx  context.Context
	jobs    sync.WaitGroup
	started metav1.Time
}

// ecuNode is one ECU and its node.
type ecuNode struct {
	p    *Provider
	ecu  vehicle.ECU
	name string
	log  *zap.Logger

	// uds is held by whoever speaks UDS to the ECU: a flash job, a health
	// poll or a diagnostic command, one at a time, because they share the
	// ECU's addresses.
	uds chan struct{}

	mu          sync.Mutex
	health      health
	transitions map[corev1.NodeConditionType]transition
	notifyNode  func(*corev1.Node)
	unsent      bool // the last node status push failed
	pods        *podSet
}

type transition struct {
	status corev1.ConditionStatus
	at     metav1.Time
}

// New checks cfg and returns a Provider; Run starts it.
func New(cfg Config) (*Provider, error) {
	switch {
	case cfg.Vehicle == nil:
		return nil, errors.New("provider: no vehicle description given")
	case cfg.Client == nil:
		return nil, errors.New("provider: no Kubernetes client given")
	case cfg.StateDir == "":
		return nil, errors.New("provider: no state directory given; it keeps flash journals and held pods across restarts")
	}
	if err := cfg.Vehicle.Validate(); err != nil {
		return nil, err
	}
	for _, b := range cfg.Vehicle.Buses {
		if cfg.Buses[b.Name] == nil {
			return nil, fmt.Errorf("provider: bus %q of vehicle %s is not open; open every bus of the vehicle", b.Name, cfg.Vehicle.Name)
		}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	cfg.PollInterval = orDefault(cfg.PollInterval, DefaultPollInterval)
	cfg.LeaseDuration = orDefault(cfg.LeaseDuration, DefaultLeaseDuration)
	cfg.KubeletPort = orDefault(cfg.KubeletPort, DefaultKubeletPort)
	for _, dir := range []string{"journal", "pods", "transcripts"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, dir), 0o700); err != nil {
			return nil, fmt.Errorf("provider: state directory: %w", err)
		}
	}
	p := &Provider{cfg: cfg, log: cfg.Log, byECU: map[string]*ecuNode{}, metrics: newMetrics(), events: make(chan flash.Event, 256),
		plugins: &plugin.Host{Log: cfg.Log.Named("oem-plugin")}}
	descs := map[string]vehicle.Bus{}
	for _, b := range cfg.Vehicle.Buses {
		descs[b.Name] = b
	}
	p.engine = &flash.Engine{
		Buses:           cfg.Buses,
		BusDescriptions: descs,
		StateDir:        filepath.Join(cfg.StateDir, "journal"),
		Events:          p.events,
		Transcript:      p.transcribe,
		ConfirmTimeout:  cfg.ConfirmTimeout,
		UpTimeout:       cfg.UpTimeout,
		NewAdapter:      p.plugins.New,
	}
	for _, e := range cfg.Vehicle.ECUs {
		name := NodeName(cfg.Vehicle.Name, e.Name)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("provider: node name %q of ECU %s: %s; shorten the vehicle or ECU name", name, e.Name, errs[0])
		}
		n := &ecuNode{p: p, ecu: e, name: name, log: cfg.Log.With(zap.String("node", name)),
			uds: make(chan struct{}, 1), transitions: map[corev1.NodeConditionType]transition{}}
		n.pods = newPodSet(n)
		p.nodes = append(p.nodes, n)
		p.byECU[e.Name] = n
	}
	return p, nil
}

// NodeName is the node of an ECU: "<vehicle>-<ecu>".
func NodeName(vehicle, ecu string) string { return vehicle + "-" + ecu }

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (p *Provider) kubeletPort() int32 { return p.cfg.KubeletPort }

// Run registers the nodes, serves their pods and the kubelet API until ctx
// ends. Flash jobs that run when ctx ends are interrupted and resume from
// their journals at the next Run.
func (p *Provider) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		// Everything stops with ctx, on an error too; interrupted flash
		// jobs keep their journals for the next Run.
		cancel()
		wg.Wait()
		p.jobs.Wait()
	}()
	p.runCtx, p.started = ctx, metav1.Now()
	defer p.plugins.Close()
	wg.Go(func() { p.routeEvents(ctx) })

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: p.cfg.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	// Pods are resolved without the downward API, so the informers of
	// secrets, config maps and services that virtual-kubelet insists on
	// are never started: no cluster-wide watch of secrets. Pull secrets
	// are read one by one when a pod names them.
	unused := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	leases := p.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	errc := make(chan error, 2*len(p.nodes)+1)
	var ready []<-chan struct{}
	for _, n := range p.nodes {
		if err := n.pods.load(); err != nil {
			return err
		}
		recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "ecu-kubelet", Host: n.name})
		n.pods.recorder = recorder
		// One informer per node, filtered on spec.nodeName by the API
		// server: a node sees its own pods and nothing else.
		podInformers := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 10*time.Minute,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.name).String()
			}))
		pc, err := node.NewPodController(node.PodControllerConfig{
			PodClient:         p.cfg.Client.CoreV1(),
			PodInformer:       podInformers.Core().V1().Pods(),
			EventRecorder:     recorder,
			Provider:          n.pods,
			ConfigMapInformer: unused.Core().V1().ConfigMaps(),
			SecretInformer:    unused.Core().V1().Secrets(),
			ServiceInformer:   unused.Core().V1().Services(),
			// Status updates retry for as long as the API server is away
			// (virtual-kubelet gives up after 20 tries by default), so
			// that the status converges once it is back.
			SyncPodStatusFromProviderShouldRetryFunc: retryForever,
			SkipDownwardAPIResolution:                true,
		})
		if err != nil {
			return fmt.Errorf("provider: node %s: %w", n.name, err)
		}
		podInformers.Start(ctx.Done())
		vkctx := withVKLogger(ctx, n.log.Named("virtual-kubelet"))
		registered := make(chan struct{})
		wg.Go(func() { n.register(vkctx, leases, registered) })
		wg.Go(func() {
			if err := pc.Run(vkctx, 2); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("provider: pods of node %s: %w", n.name, err)
			}
		})
		wg.Go(func() { n.poll(ctx) })
		ready = append(ready, registered, pc.Ready())
		n.pods.resume(ctx)
	}
	if p.cfg.API.Addr != "" {
		api := p.cfg.API
		api.Backend, api.Metrics = p, p.metrics.registry
		if api.Log == nil {
			api.Log = p.log.Named("kubelet-api")
		}
		if api.Client == nil {
			api.Client = p.cfg.Client
		}
		if api.NodeName == "" {
			// The CSR's identity must be a node that exists, for
			// approvers that check it: the first ECU's.
			api.NodeName = p.nodes[0].name
		}
		srv, err := kubeletapi.New(api)
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
				errc <- err
			}
		})
	}
	go func() {
		for _, r := range ready {
			select {
			case <-r:
			case <-ctx.Done():
				return
			}
		}
		p.log.Info("every ECU node is registered", zap.Int("nodes", len(p.nodes)))
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// retryForever retries a pod status update every few seconds for as long
// as it fails, so that statuses converge soon after an API server comes
// back; only pods whose status changed are retried.
// register runs the node's controller (registration, status, lease), and
// runs it again when it fails: a vehicle that starts without its API
// server (offline) goes on polling and flashing, and its nodes register
// once the API server can be reached. registered is closed the first time
// the node is registered.
func (n *ecuNode) register(ctx context.Context, leases coordinationv1.LeaseInterface, registered chan<- struct{}) {
	var once sync.Once
	wait := time.Second
	for {
		nc, err := node.NewNodeController(n, n.nodeObject(), n.p.cfg.Client.CoreV1().Nodes(),
			node.WithNodeEnableLeaseV1(leases, int32(n.p.cfg.LeaseDuration/time.Second)),
			node.WithNodeStatusUpdateInterval(time.Minute),
			node.WithNodeStatusUpdateErrorHandler(n.statusUpdateFailed))
		if err != nil {
			n.log.Error("cannot run the node controller", zap.Error(err))
			return
		}
		go func() {
			select {
			case <-nc.Ready():
				once.Do(func() { close(registered) })
			case <-nc.Done():
			}
		}()
		err = nc.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("the node is not registered; trying again (flashes and polls go on meanwhile)", zap.Error(err), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func retryForever(_ context.Context, _ string, tried int, _ time.Time, _ error) (*time.Duration, error) {
	d := time.Duration(min(tried, 5)) * time.Second
	return &d, nil
}

// routeEvents hands each flash progress event to its ECU's running pod.
func (p *Provider) routeEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-p.events:
			if n := p.byECU[ev.ECU]; n != nil {
				n.pods.progress(ev)
			}
		}
	}
}

// transcribe hands each UDS message of a flash to its ECU's running pod.
func (p *Provider) transcribe(t flash.TranscriptEntry) {
	if n := p.byECU[t.ECU]; n != nil {
		n.pods.transcribe(t)
	}
}

// Ping tells virtual-kubelet's node controller that the provider runs: an
// ECU that does not answer is shown by the Ready condition, not by a lease
// that stops, so that its node stays visible with the reason.
func (n *ecuNode) Ping(context.Context) error { return nil }

// NotifyNodeStatus keeps the callback that pushes the node's status.
func (n *ecuNode) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	n.mu.Lock()
	n.notifyNode = cb
	n.mu.Unlock()
}

func (n *ecuNode) healthNow() health {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.health
}

// update changes the ECU's health and pushes the node's status when it
// differs from what the API server was told, or when the last push
// failed (an API server away): the next poll then pushes again.
func (n *ecuNode) update(f func(*health)) {
	n.mu.Lock()
	before := n.health
	f(&n.health)
	after := n.health
	cb := n.notifyNode
	push := cb != nil && (changed(before, after) || n.unsent)
	if push {
		n.unsent = false
	}
	n.mu.Unlock()
	if push {
		cb(n.nodeObject())
	}
}

// statusUpdateFailed remembers that the API server did not get the
// node's status; virtual-kubelet gives the error up.
func (n *ecuNode) statusUpdateFailed(ctx context.Context, err error) error {
	if apierrors.IsNotFound(err) {
		// Somebody deleted the node: register it again, and
		// virtual-kubelet retries the update.
		if _, cerr := n.p.cfg.Client.CoreV1().Nodes().Create(ctx, n.nodeObject(), metav1.CreateOptions{}); cerr == nil || apierrors.IsAlreadyExists(cerr) {
			n.log.Info("the node was deleted; registered it again")
			return nil
		}
	}
	n.mu.Lock()
	n.unsent = true
	n.mu.Unlock()
	return err
}

func changed(a, b health) bool {
	return a.known != b.known || a.id.HardwareID != b.id.HardwareID || a.id.Version != b.id.Version ||
		a.id.Slots != b.id.Slots || a.bootloader != b.bootloader || (a.err == nil) != (b.err == nil) ||
		a.busErr != b.busErr || a.flashing != b.flashing || a.adapterErr != b.adapterErr ||
		(a.identityErr == nil) != (b.identityErr == nil)
}

// acquire takes the ECU's UDS access, waiting for it.
func (n *ecuNode) acquire(ctx context.Context) error {
	select {
	case n.uds <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryAcquire takes the ECU's UDS access if nobody holds it.
func (n *ecuNode) tryAcquire() bool {
	select {
	case n.uds <- struct{}{}:
		return true
	default:
		return false
	}
}

func (n *ecuNode) release() { <-n.uds }
