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
	// ServiceAccountIssuer is the issuer of the control plane's
	// service-account tokens.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// ControlPlane is an etcd and a kube-apiserver running for one test. Its
// methods return errors rather than fail the test, so that any goroutine
// may call them: a test restarts the API server from a hook in the middle
// of a flash as well as from its own goroutine. They are not for
// concurrent use with each other.
type ControlPlane struct {
	logf func(format string, args ...any)
	dir  string
	bins Binaries
	ca   *authority

	etcdURL string
	apiPort int
	apiArgs []string

	probe      *http.Client // for /readyz
	config     *rest.Config
	client     kubernetes.Interface
	kubeconfig string

	mu        sync.Mutex
	etcd      *process
	apiserver *process
}

// Start starts a control plane for t and stops it when t ends. It builds
// the programs first if the cache lacks them (see EnsureBinaries), with
// progress in t's log, until shortly before t's deadline. Without a Go
// toolchain or module proxy to build them, it skips t, or fails it when the
// environment variable CI is true. When t fails, the end of each program's
// log is printed.
func Start(t testing.TB) *ControlPlane {
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
			for _, name := range []string{"etcd", "kube-apiserver"} {
				if tail := readTail(logPath(dir, name), logTail); tail != "" {
					t.Logf("controlplane: end of %s's log:\n%s", name, tail)
				}
			}
		}
	})
	var err error
	if cp, err = Run(dir, bins, t.Logf); err != nil {
		t.Fatal(err)
	}
	return cp
}

// Run starts a control plane outside a test, for the demo: its files and
// logs go to dir, which must exist, and its progress to logf. The caller
// stops it with Stop; when the calling process dies, so does the control
// plane (Linux). Tests use Start.
func Run(dir string, bins Binaries, logf func(format string, args ...any)) (*ControlPlane, error) {
	cp := &ControlPlane{logf: logf, dir: dir, bins: bins}
	start := time.Now()
	if err := cp.start(); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("controlplane: %w (logs in %s)", err, dir)
	}
	logf("controlplane: etcd and kube-apiserver ready in %s at %s", time.Since(start).Round(time.Millisecond), cp.config.Host)
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
// including the one the API server presents to kubelets.
func (cp *ControlPlane) CAFile() string { return filepath.Join(cp.dir, "pki", "ca.crt") }

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
// the same certificates and keys; etcd, and so every object, stays.
func (cp *ControlPlane) Restart() error {
	if err := cp.StopAPIServer(); err != nil {
		return err
	}
	return cp.StartAPIServer()
}

// StopAPIServer stops the API server (SIGTERM, as for an upgrade) and
// leaves etcd running, so that a test can see what happens while the API
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

// Stop stops the API server and etcd. Start arranges for it when the test
// ends; calling it earlier is harmless, and so is calling it twice. The
// files stay.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	api, etcd := cp.apiserver, cp.etcd
	cp.apiserver, cp.etcd = nil, nil
	cp.mu.Unlock()
	var errs []error
	for _, p := range []*process{api, etcd} {
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

// start generates the keys and certificates, starts etcd and the API
// server, and writes the kubeconfig.
func (cp *ControlPlane) start() error {
	pki := filepath.Join(cp.dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		return err
	}
	ca, err := newAuthority()
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	cp.ca = ca
	serving, err := ca.issue(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
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
	kubeletClient, err := ca.client("kube-apiserver-kubelet-client", "system:masters")
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
	file := func(name string) string { return filepath.Join(pki, name) }
	if err := writeFiles(map[string][]byte{
		file("ca.crt"):             ca.certPEM,
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
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + file("sa.pub"),
		"--service-account-signing-key-file=" + file("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		// NodeRestriction keeps a kubelet's identity to its own node and
		// pods. The ServiceAccount plugin would refuse every pod in a
		// namespace without a default service account, and without a
		// controller manager nothing creates one.
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	}
	if err := cp.startAPIServer(); err != nil {
		return err
	}

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
	return writeKubeconfig(cp.kubeconfig, cp.config)
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
		p, err := startProcess("etcd", cp.bins.Etcd, logPath(cp.dir, "etcd"),
			"--name=controlplane",
			"--data-dir="+filepath.Join(cp.dir, "etcd"),
			"--listen-client-urls="+client,
			"--advertise-client-urls="+client,
			"--listen-peer-urls="+peer,
			"--initial-advertise-peer-urls="+peer,
			"--initial-cluster=controlplane="+peer,
			// A test's data need not survive a power cut.
			"--unsafe-no-fsync",
			// A single member elects itself after one election timeout;
			// the default second is most of etcd's start.
			"--heartbeat-interval=20",
			"--election-timeout=200",
			"--log-level=warn",
		)
		if err != nil {
			return err
		}
		cp.mu.Lock()
		cp.etcd = p
		cp.mu.Unlock()
		err = waitReady(p, &http.Client{Timeout: 5 * time.Second}, client+"/health", logPath(cp.dir, "etcd"))
		if err == nil {
			cp.etcdURL = client
			return nil
		}
		cp.mu.Lock()
		cp.etcd = nil
		cp.mu.Unlock()
		p.stop(stopGrace)
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
		p, err := startProcess("kube-apiserver", cp.bins.KubeAPIServer, logPath(cp.dir, "kube-apiserver"),
			slices.Concat(cp.apiArgs, []string{"--secure-port=" + strconv.Itoa(cp.apiPort)})...)
		if err != nil {
			return err
		}
		cp.mu.Lock()
		cp.apiserver = p
		cp.mu.Unlock()
		err = waitReady(p, cp.probe, "https://127.0.0.1:"+strconv.Itoa(cp.apiPort)+"/readyz", logPath(cp.dir, "kube-apiserver"))
		if err == nil {
			return nil
		}
		cp.mu.Lock()
		cp.apiserver = nil
		cp.mu.Unlock()
		p.stop(stopGrace)
		if fixed || !errors.Is(err, errPortTaken) || attempt == portAttempts {
			return err
		}
	}
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
// embedded) for config.
func writeKubeconfig(path string, config *rest.Config) error {
	const name = "ecu-kubelet-test"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: config.Host, CertificateAuthorityData: config.CAData}
	kc.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: config.CertData, ClientKeyData: config.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: AdminUser, Namespace: "default"}
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
