package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// readyTimeout bounds the wait for etcd or the API server to become
	// ready; they take a second or two, far longer on a loaded CI machine.
	readyTimeout = 2 * time.Minute
	// stopGrace is how long a process has to exit after SIGTERM before it
	// is killed.
	stopGrace = 15 * time.Second
	// portAttempts is how often a start is tried with new ports when
	// another process took a port between choosing and binding it.
	portAttempts = 3
	// logTail is how much of each process's log a failed test prints.
	logTail = 64 << 10

	// AdminUser is the user of Kubeconfig, RESTConfig and Client, in the
	// group system:masters.
	AdminUser = "ecu-kubelet-test-admin"
	// KubeletClientUser is the user the API server presents itself as to
	// kubelets, in the group system:masters: the subject of the client
	// certificate in KubeletClientFiles, which a kubelet API's webhook
	// authorization asks the API server about.
	KubeletClientUser = "kube-apiserver-kubelet-client"
	// ControllerManagerUser is the user kube-controller-manager
	// authenticates as. The API server's RBAC bootstrap policy binds it to
	// the role system:kube-controller-manager, which lets it read
	// everything and create service accounts and their tokens, but not
	// change nodes or pods: each controller acts as its own service
	// account in kube-system, bound to its system:controller: role, as in a
	// kubeadm cluster.
	ControllerManagerUser = "system:kube-controller-manager"
	// ServiceAccountIssuer is the issuer of the control plane's
	// service-account tokens.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// ControlPlane is an etcd and a kube-apiserver, and a
// kube-controller-manager when asked for, running for one test. Its
// methods return errors rather than fail the test, so that any goroutine
// may call them: a test restarts the API server from a hook in the middle
// of a flash as well as from its own goroutine. They are not for
// concurrent use with each other.
type ControlPlane struct {
	logf func(format string, args ...any)
	dir  string
	bins Binaries
	opts options
	ca   *authority

	etcdURL string
	apiPort int
	apiArgs []string

	probe      *http.Client // for /readyz and /healthz
	config     *rest.Config
	client     kubernetes.Interface
	kubeconfig string

	mu                sync.Mutex
	etcd              *process
	apiserver         *process
	controllerManager *process
}

// An Option adds to what Start and Run start.
type Option func(*options)

type options struct {
	controllerManager *ControllerManager
}

// ControllerManager configures the kube-controller-manager that
// WithControllerManager runs. A zero field keeps Kubernetes' default, which
// makes a node that stops renewing its lease Unknown after 50 s and evicts
// its pods 300 s later; tests shorten both to seconds.
type ControllerManager struct {
	// NodeMonitorPeriod is how often the node lifecycle controller looks
	// at every node's lease and conditions (--node-monitor-period; 5 s by
	// default). A lease that ran out is noticed up to this much late.
	NodeMonitorPeriod time.Duration
	// NodeMonitorGracePeriod is how long a node may go without renewing
	// its lease or posting its status before its Ready condition becomes
	// Unknown and it gets the node.kubernetes.io/unreachable taints
	// (--node-monitor-grace-period; 50 s by default). Make it several
	// times the provider's lease renewal interval.
	NodeMonitorGracePeriod time.Duration
	// NodeStartupGracePeriod is the same for a node that has never posted
	// a status (--node-startup-grace-period; 60 s by default).
	NodeStartupGracePeriod time.Duration
	// NodeEvictionRate is how many nodes per second get the NoExecute
	// taint that evicts their pods (--node-eviction-rate; 0.1 by default:
	// the first at once, then one every ten seconds).
	NodeEvictionRate float64
	// DefaultToleration is how long a pod that says nothing about the
	// node.kubernetes.io/not-ready and unreachable NoExecute taints
	// tolerates them: the API server's DefaultTolerationSeconds admission
	// gives every such pod these tolerations
	// (--default-not-ready-toleration-seconds and
	// --default-unreachable-toleration-seconds; 300 s by default). It is
	// rounded up to whole seconds.
	DefaultToleration time.Duration
}

// WithControllerManager runs kube-controller-manager too, with only the
// controllers a virtual kubelet's tests meet: node lifecycle (leases,
// the Ready condition, the not-ready and unreachable taints), taint
// eviction (deletes the pods that do not tolerate a NoExecute taint), and
// certificate signing (signs approved CertificateSigningRequests with the
// control plane's CA; nothing approves them, which stays with the test).
func WithControllerManager(cm ControllerManager) Option {
	return func(o *options) { o.controllerManager = &cm }
}

// Start starts a control plane for t, with etcd and kube-apiserver and
// what opts add, and stops it when t ends. It builds the programs first if
// the cache lacks them (see EnsureBinaries), with progress in t's log,
// until shortly before t's deadline. Without a Go toolchain or module proxy
// to build them, it skips t, or fails it when the environment variable CI
// is true. When t fails, the end of each program's log is printed.
func Start(t testing.TB, opts ...Option) *ControlPlane {
	t.Helper()
	bins := ensureForTest(t)
	dir := t.TempDir()
	var cp *ControlPlane
	// Registered after TempDir's: cleanups run last first, so the
	// processes stop before their directory goes.
	t.Cleanup(func() {
		if cp != nil {
			if err := cp.Stop(); err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
				if tail := readTail(logPath(dir, name), logTail); tail != "" {
					t.Logf("controlplane: end of %s's log:\n%s", name, tail)
				}
			}
		}
	})
	var err error
	if cp, err = Run(dir, bins, t.Logf, opts...); err != nil {
		t.Fatal(err)
	}
	return cp
}

// Run starts a control plane outside a test, for the demo: its files and
// logs go to dir, which must exist, and its progress to logf. The caller
// stops it with Stop; when the calling process dies, so does the control
// plane (Linux). Tests use Start.
func Run(dir string, bins Binaries, logf func(format string, args ...any), opts ...Option) (*ControlPlane, error) {
	cp := &ControlPlane{logf: logf, dir: dir, bins: bins}
	for _, o := range opts {
		o(&cp.opts)
	}
	if err := cp.start(); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("controlplane: %w (logs in %s)", err, dir)
	}
	return cp, nil
}

// ensureForTest returns the programs for a test, or ends the test with a
// message that says what to do.
func ensureForTest(t testing.TB) Binaries {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok {
			// Leave the test time to report rather than be killed mid-build.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-30*time.Second))
			defer cancel()
		}
	}
	bins, err := EnsureBinaries(ctx, t.Logf)
	switch {
	case errors.Is(err, ErrUnavailable) && os.Getenv("CI") != "true":
		t.Skipf("%v\n(with CI=true this fails the test)", err)
	case err != nil:
		t.Fatalf("%v\n(.ci/install-controlplane.sh builds the programs ahead, outside any test timeout)", err)
	}
	return bins
}

// Kubeconfig returns the path of a kubeconfig file for the administrator.
func (cp *ControlPlane) Kubeconfig() string { return cp.kubeconfig }

// RESTConfig returns a client configuration for the administrator, a copy
// the caller may change. Its rate limits are high so that client-side
// throttling never paces a test.
func (cp *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(cp.config) }

// Client returns a clientset for the administrator.
func (cp *ControlPlane) Client() kubernetes.Interface { return cp.client }

// CAFile returns the path of the PEM file of the certificate authority that
// signed the API server's serving certificate and every client certificate,
// including the one the API server presents to kubelets: it is the client
// CA a kubelet API needs to authenticate the API server. With
// WithControllerManager the same authority signs the certificates of
// approved CertificateSigningRequests.
func (cp *ControlPlane) CAFile() string { return filepath.Join(cp.dir, "pki", "ca.crt") }

// KubeletClientFiles returns the paths of the PEM files of the client
// certificate and key that the API server presents to kubelets
// (--kubelet-client-certificate, --kubelet-client-key), for a test that
// calls a kubelet API as the API server does. The API server does not
// verify kubelets' serving certificates: it is not given
// --kubelet-certificate-authority.
func (cp *ControlPlane) KubeletClientFiles() (certFile, keyFile string) {
	return filepath.Join(cp.dir, "pki", "kubelet-client.crt"), filepath.Join(cp.dir, "pki", "kubelet-client.key")
}

// UserConfig returns a client configuration for user in groups,
// authenticated by a client certificate, with no permissions but those RBAC
// grants it: for testing what the provider's own role allows.
func (cp *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := cp.ca.client(user, groups...)
	if err != nil {
		return nil, fmt.Errorf("controlplane: client certificate for %s: %w", user, err)
	}
	config := rest.CopyConfig(cp.config)
	config.CertData, config.KeyData = kp.certPEM, kp.keyPEM
	return config, nil
}

// Restart stops the API server and starts it again on the same port, with
// the same certificates and keys; etcd, and so every object, stays. The
// controller manager keeps running and reconnects, as it does in a
// cluster.
func (cp *ControlPlane) Restart() error {
	if err := cp.StopAPIServer(); err != nil {
		return err
	}
	return cp.StartAPIServer()
}

// StopAPIServer stops the API server (SIGTERM, as for an upgrade) and
// leaves etcd, and the controller manager, running, so that a test can see what happens while the API
// server is away. StartAPIServer brings it back. Stopping a stopped server
// does nothing.
func (cp *ControlPlane) StopAPIServer() error {
	cp.mu.Lock()
	p := cp.apiserver
	cp.apiserver = nil
	cp.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.stop(stopGrace); err != nil {
		return fmt.Errorf("controlplane: stopping kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts the API server stopped by StopAPIServer, on the
// same port, and waits until it is ready. A server that is running is left
// alone.
func (cp *ControlPlane) StartAPIServer() error {
	start := time.Now()
	cp.mu.Lock()
	running := cp.apiserver != nil
	cp.mu.Unlock()
	if running {
		return nil
	}
	if err := cp.startAPIServer(); err != nil {
		return fmt.Errorf("controlplane: starting kube-apiserver again on port %d: %w", cp.apiPort, err)
	}
	cp.logf("controlplane: kube-apiserver ready again in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

// Stop stops the controller manager, the API server and etcd. Start
// arranges for it when the test ends; calling it earlier is harmless, and
// so is calling it twice. The files stay.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	running := []*process{cp.controllerManager, cp.apiserver, cp.etcd}
	cp.controllerManager, cp.apiserver, cp.etcd = nil, nil, nil
	cp.mu.Unlock()
	var errs []error
	for _, p := range running {
		if p != nil {
			if err := p.stop(stopGrace); err != nil {
				errs = append(errs, fmt.Errorf("controlplane: stopping %s: %w", p.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// logPath is the log file of the program name.
func logPath(dir, name string) string {
	return filepath.Join(dir, name+".log")
}

// start generates the keys and certificates, starts etcd, the API server
// and, when asked for, the controller manager, and writes the kubeconfigs.
func (cp *ControlPlane) start() error {
	begin := time.Now()
	pki := filepath.Join(cp.dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		return err
	}
	ca, err := newAuthority()
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	cp.ca = ca
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	serving, err := ca.issue(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		append(loopback, net.IPv4(10, 0, 0, 1)),
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	admin, err := ca.client(AdminUser, "system:masters")
	if err != nil {
		return fmt.Errorf("admin certificate: %w", err)
	}
	// The identity the API server presents to kubelets for logs, exec and
	// port-forward; kubeadm's name for it.
	kubeletClient, err := ca.client(KubeletClientUser, "system:masters")
	if err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	if cp.probe, err = probeClient(ca, kubeletClient); err != nil {
		return err
	}
	saKey, saPub, err := newSigningKey()
	if err != nil {
		return fmt.Errorf("service-account key: %w", err)
	}
	caKey, err := privateKeyPEM(ca.key)
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	file := func(name string) string { return filepath.Join(pki, name) }
	if err := writeFiles(map[string][]byte{
		file("ca.crt"):             ca.certPEM,
		file("ca.key"):             caKey,
		file("apiserver.crt"):      serving.certPEM,
		file("apiserver.key"):      serving.keyPEM,
		file("kubelet-client.crt"): kubeletClient.certPEM,
		file("kubelet-client.key"): kubeletClient.keyPEM,
		file("sa.key"):             saKey,
		file("sa.pub"):             saPub,
	}); err != nil {
		return err
	}

	if err := cp.startEtcd(); err != nil {
		return err
	}
	etcdReady := time.Now()

	cp.apiArgs = []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// Nothing listens for the kubernetes service's endpoints, and a
		// loopback endpoint would not validate.
		"--endpoint-reconciler-type=none",
		"--etcd-servers=" + cp.etcdURL,
		// Unused given the certificate below, but it keeps the API server
		// from writing anywhere outside the test's directory.
		"--cert-dir=" + filepath.Join(cp.dir, "apiserver"),
		"--tls-cert-file=" + file("apiserver.crt"),
		"--tls-private-key-file=" + file("apiserver.key"),
		"--client-ca-file=" + file("ca.crt"),
		"--kubelet-client-certificate=" + file("kubelet-client.crt"),
		"--kubelet-client-key=" + file("kubelet-client.key"),
		// A virtual kubelet reports the address of its kubelet API as
		// InternalIP; the default order tries Hostname first, which names
		// nothing resolvable for an ECU node.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + file("sa.pub"),
		"--service-account-signing-key-file=" + file("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		// NodeRestriction keeps a kubelet's identity to its own node and
		// pods. The ServiceAccount plugin would refuse every pod in a
		// namespace without a default service account, and no controller
		// here creates one.
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
		// On SIGTERM the API server stops serving, then waits up to a
		// minute for its connections to go idle, which the HTTP/2
		// connections carrying a controller's watches need not do; this
		// flag makes that wait 2 s, so that a restart stays quick.
		"--shutdown-send-retry-after=true",
	}
	if cm := cp.opts.controllerManager; cm != nil && cm.DefaultToleration > 0 {
		seconds := strconv.FormatInt(int64((cm.DefaultToleration+time.Second-1)/time.Second), 10)
		cp.apiArgs = append(cp.apiArgs,
			"--default-not-ready-toleration-seconds="+seconds,
			"--default-unreachable-toleration-seconds="+seconds)
	}
	if err := cp.startAPIServer(); err != nil {
		return err
	}
	apiReady := time.Now()

	cp.config = &rest.Config{
		Host: "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cp.apiPort)),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   ca.certPEM,
			CertData: admin.certPEM,
			KeyData:  admin.keyPEM,
		},
		QPS:   1000,
		Burst: 2000,
	}
	if cp.client, err = kubernetes.NewForConfig(cp.config); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	cp.kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	if err := writeKubeconfig(cp.kubeconfig, cp.config, AdminUser); err != nil {
		return err
	}
	times := fmt.Sprintf("etcd %s, kube-apiserver %s",
		etcdReady.Sub(begin).Round(time.Millisecond), apiReady.Sub(etcdReady).Round(time.Millisecond))

	if cm := cp.opts.controllerManager; cm != nil {
		if err := cp.startControllerManager(*cm, loopback); err != nil {
			return err
		}
		times += fmt.Sprintf(", kube-controller-manager %s", time.Since(apiReady).Round(time.Millisecond))
	}
	cp.logf("controlplane: ready in %s (%s) at %s", time.Since(begin).Round(time.Millisecond), times, cp.config.Host)
	return nil
}

// startEtcd starts etcd on free loopback ports and waits until it is
// healthy.
func (cp *ControlPlane) startEtcd() error {
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		err = cp.launch(&cp.etcd, "etcd", cp.bins.Etcd, []string{
			"--name=controlplane",
			"--data-dir=" + filepath.Join(cp.dir, "etcd"),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=controlplane=" + peer,
			// A test's data need not survive a power cut.
			"--unsafe-no-fsync",
			// A single member elects itself after one election timeout;
			// the default second is most of etcd's start.
			"--heartbeat-interval=20",
			"--election-timeout=200",
			"--log-level=warn",
		}, &http.Client{Timeout: 5 * time.Second}, client+"/health")
		if err == nil {
			cp.etcdURL = client
			return nil
		}
		if !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return err
		}
	}
}

// startAPIServer starts the API server with cp.apiArgs and waits until it
// is ready. The first start chooses its port; later ones keep it, since
// clients hold it.
func (cp *ControlPlane) startAPIServer() error {
	fixed := cp.apiPort != 0
	for attempt := 1; ; attempt++ {
		if !fixed {
			ports, err := freePorts(1)
			if err != nil {
				return err
			}
			cp.apiPort = ports[0]
		}
		err := cp.launch(&cp.apiserver, "kube-apiserver", cp.bins.KubeAPIServer,
			slices.Concat(cp.apiArgs, []string{"--secure-port=" + strconv.Itoa(cp.apiPort)}),
			cp.probe, "https://127.0.0.1:"+strconv.Itoa(cp.apiPort)+"/readyz")
		if err == nil {
			return nil
		}
		if fixed || !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return err
		}
	}
}

// startControllerManager writes kube-controller-manager's certificates and
// kubeconfig, starts it on a free loopback port and waits until it serves
// /healthz. Its controllers start a moment later, once their informers have
// synced.
func (cp *ControlPlane) startControllerManager(cm ControllerManager, loopback []net.IP) error {
	dir := filepath.Join(cp.dir, "kube-controller-manager")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	clientCert, err := cp.ca.client(ControllerManagerUser)
	if err != nil {
		return fmt.Errorf("kube-controller-manager's client certificate: %w", err)
	}
	serving, err := cp.ca.issue(pkix.Name{CommonName: "kube-controller-manager"}, x509.ExtKeyUsageServerAuth, loopback, []string{"localhost"})
	if err != nil {
		return fmt.Errorf("kube-controller-manager's serving certificate: %w", err)
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	if err := writeFiles(map[string][]byte{
		file("serving.crt"): serving.certPEM,
		file("serving.key"): serving.keyPEM,
	}); err != nil {
		return err
	}
	config := rest.CopyConfig(cp.config)
	config.CertData, config.KeyData = clientCert.certPEM, clientCert.keyPEM
	if err := writeKubeconfig(file("kubeconfig"), config, ControllerManagerUser); err != nil {
		return err
	}
	pki := filepath.Join(cp.dir, "pki")
	args := []string{
		"--kubeconfig=" + file("kubeconfig"),
		"--bind-address=127.0.0.1",
		"--tls-cert-file=" + file("serving.crt"),
		"--tls-private-key-file=" + file("serving.key"),
		// One controller manager, and so no election: an election's lease
		// would also make a restart wait out the previous holder's.
		"--leader-elect=false",
		"--controllers=" + strings.Join(controllers, ","),
		// Each controller authenticates as its own service account with a
		// token from the TokenRequest API: the bootstrap roles give
		// system:kube-controller-manager itself too little to run them.
		"--use-service-account-credentials=true",
		"--cluster-signing-cert-file=" + filepath.Join(pki, "ca.crt"),
		"--cluster-signing-key-file=" + filepath.Join(pki, "ca.key"),
		"--profiling=false",
	}
	for _, f := range []struct {
		flag  string
		value time.Duration
	}{
		{"node-monitor-period", cm.NodeMonitorPeriod},
		{"node-monitor-grace-period", cm.NodeMonitorGracePeriod},
		{"node-startup-grace-period", cm.NodeStartupGracePeriod},
	} {
		if f.value > 0 {
			args = append(args, "--"+f.flag+"="+f.value.String())
		}
	}
	if cm.NodeEvictionRate > 0 {
		args = append(args, "--node-eviction-rate="+strconv.FormatFloat(cm.NodeEvictionRate, 'g', -1, 64))
	}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		port := strconv.Itoa(ports[0])
		err = cp.launch(&cp.controllerManager, "kube-controller-manager", cp.bins.KubeControllerManager,
			slices.Concat(args, []string{"--secure-port=" + port}), cp.probe, "https://127.0.0.1:"+port+"/healthz")
		if err == nil || !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return err
		}
	}
}

// controllers are the controllers kube-controller-manager runs: few, so
// that it starts in a moment and watches little.
var controllers = []string{
	"node-lifecycle-controller",
	"taint-eviction-controller",
	"certificatesigningrequest-signing-controller",
}

// launch starts the program name at path with args, records it in *slot
// and waits until url answers 200 OK through probe. When it does not, it
// stops the program, clears *slot and returns why, wrapping errPortTaken
// when the program lost its port to another process.
func (cp *ControlPlane) launch(slot **process, name, path string, args []string, probe *http.Client, url string) error {
	p, err := startProcess(name, path, logPath(cp.dir, name), args...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	*slot = p
	cp.mu.Unlock()
	err = waitReady(p, probe, url, logPath(cp.dir, name))
	if err == nil {
		return nil
	}
	cp.mu.Lock()
	*slot = nil
	cp.mu.Unlock()
	p.stop(stopGrace)
	return err
}

// probeClient returns an HTTP client that trusts the API server and
// presents the kubelet client's certificate, which /readyz accepts like any
// authenticated user's.
func probeClient(ca *authority, kp keyPair) (*http.Client, error) {
	cert, err := tls.X509KeyPair(kp.certPEM, kp.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
			DisableKeepAlives: true,
		},
	}, nil
}

// writeKubeconfig writes a self-contained kubeconfig (certificates
// embedded) for config, whose client certificate is user's.
func writeKubeconfig(path string, config *rest.Config, user string) error {
	const name = "ecu-kubelet-test"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: config.Host, CertificateAuthorityData: config.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: config.CertData, ClientKeyData: config.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user, Namespace: "default"}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago. Another process may take one before the program binds it; the
// callers then try again with new ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("choosing a loopback port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errPortTaken reports that a program exited because its port was taken.
var errPortTaken = errors.New("port taken by another process")

// process is a running program whose output goes to a log file.
type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// startProcess starts path with args, its output appended to logPath.
func startProcess(name, path, logPath string, args ...string) (*process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own descriptor
	fmt.Fprintf(log, "==== %s %s %s\n", time.Now().Format(time.RFC3339Nano), path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := startChild(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends the process group SIGTERM, kills it after grace, and waits
// for the process to exit. An exit caused by the signal is no error.
func (p *process) stop(grace time.Duration) error {
	pid := p.cmd.Process.Pid
	if err := signalGroup(pid, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.exited:
	case <-time.After(grace):
		if err := killGroup(pid); err != nil {
			return err
		}
		<-p.exited
	}
	// Whatever the program started goes with it.
	return killGroup(pid)
}

// waitReady polls url until it answers 200 OK. It fails when the process
// exits first (wrapping errPortTaken when its log says why) or when
// readyTimeout passes.
func waitReady(p *process, client *http.Client, url, logPath string) error {
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
			if strings.Contains(readTail(logPath, logTail), "address already in use") {
				return fmt.Errorf("%s exited (%v): %w", p.name, p.err, errPortTaken)
			}
			return fmt.Errorf("%s exited before it was ready (%v); its log is %s", p.name, p.err, logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; %s last answered: %s", p.name, readyTimeout, url, last)
		}
	}
}

// readTail returns the last n bytes of the file at path, or "" when it
// cannot be read.
func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	return string(data)
}
