package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/zapr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ecu-kubelet/ecu-kubelet/flash"
	"github.com/ecu-kubelet/ecu-kubelet/flash/artifact"
	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider"
	"github.com/ecu-kubelet/ecu-kubelet/provider/kubeletapi"
	"github.com/ecu-kubelet/ecu-kubelet/uds/canbus"
)

// defaultRunStateDir is where `ecu-kubelet run` keeps its journals, pods
// and transcripts unless told otherwise: it must survive reboots, since a
// flash interrupted by one resumes from it.
const defaultRunStateDir = "/var/lib/ecu-kubelet"

// runFlags are the flags of `ecu-kubelet run`.
type runFlags struct {
	config     string
	kubeconfig string
	kubeQPS    float32
	kubeBurst  int
	stateDir   string

	pollInterval  time.Duration
	leaseDuration time.Duration

	nodeAddress  string
	kubeletPort  int
	listen       string
	certFile     string
	keyFile      string
	certDir      string
	clientCAFile string
	insecureAPI  bool

	dockerConfig   string
	plainHTTP      bool
	confirmTimeout time.Duration
	upTimeout      time.Duration
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run --config vehicle.yaml [--kubeconfig FILE]",
		Short: "Serve every ECU of a vehicle as a Kubernetes node and flash the firmware pods bound to them",
		Long: `Run the virtual-kubelet provider: every ECU of the vehicle description
becomes a node named <vehicle>-<ecu>, a pod bound to one is a firmware deployment
flashed over UDS, and the kubelet API (kubectl logs, exec, metrics) is served on
--listen. The buses of the description are opened by their URLs and stay open
until the process stops (SIGINT or SIGTERM). Flash journals, the pods the
provider holds and their transcripts live in --state-dir, so a flash
interrupted by a restart resumes.

The API server is reached through --kubeconfig, else $KUBECONFIG, else the
in-cluster configuration of a pod's service account.

The kubelet API serves TLS with the certificate of --tls-cert-file and
--tls-private-key-file or, without them, one requested through a
CertificateSigningRequest and kept in --cert-dir; it authenticates clients by
--client-ca-file and webhook token review, and authorizes them by subject
access review. --insecure-kubelet-api turns authentication and authorization
off, for a local demo only.`,
		Example: `  ecu-kubelet run --config /etc/ecu-kubelet/vehicle.yaml --kubeconfig /etc/ecu-kubelet/kubeconfig \
      --client-ca-file /etc/kubernetes/pki/ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			defer log.Sync()
			// Kubernetes' libraries (client-go's reflectors, the kubelet
			// API's certificate reloaders) log through klog; the same
			// logger takes their lines, so that a --log-format json log
			// stays JSON.
			klog.SetLogger(zapr.NewLogger(log))
			return f.run(cmd, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "vehicle description (YAML): buses and ECUs")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default: $KUBECONFIG, else the in-cluster configuration)")
	fl.Float32Var(&f.kubeQPS, "kube-api-qps", 50, "requests per second to the API server, sustained")
	// A kubelet has 50/s with a burst of 100 for its one node; this
	// process registers a vehicle's 25 to 70 nodes at start-up, about six
	// requests each, so its burst covers them all at once.
	fl.IntVar(&f.kubeBurst, "kube-api-burst", 500, "requests to the API server in a burst (start-up registers every ECU node at once)")
	fl.StringVar(&f.stateDir, "state-dir", defaultRunStateDir, "directory of flash journals, held pods and transcripts; keep it across restarts")
	fl.DurationVar(&f.pollInterval, "poll-interval", provider.DefaultPollInterval, "how often every ECU is asked whether it answers and what it runs")
	fl.DurationVar(&f.leaseDuration, "lease-duration", provider.DefaultLeaseDuration, "duration of the nodes' leases")
	fl.StringVar(&f.nodeAddress, "node-address", "", "InternalIP the nodes advertise for the kubelet API (default: the host's first non-loopback IPv4 address, else 127.0.0.1)")
	fl.IntVar(&f.kubeletPort, "kubelet-port", provider.DefaultKubeletPort, "kubelet API port the nodes advertise")
	fl.StringVar(&f.listen, "listen", "", `address the kubelet API listens on (default ":" and --kubelet-port; "" serves none, and kubectl logs and exec fail)`)
	fl.StringVar(&f.certFile, "tls-cert-file", "", "kubelet API serving certificate (PEM); without it one is requested through a CertificateSigningRequest")
	fl.StringVar(&f.keyFile, "tls-private-key-file", "", "private key of --tls-cert-file (PEM)")
	fl.StringVar(&f.certDir, "cert-dir", "", "directory keeping the serving certificate obtained through a CSR (default: pki under --state-dir)")
	fl.StringVar(&f.clientCAFile, "client-ca-file", "", "CA that signs client certificates, such as the API server's kubelet client certificate (PEM)")
	fl.BoolVar(&f.insecureAPI, "insecure-kubelet-api", false, "DEMO ONLY: serve the kubelet API without authentication or authorization")
	fl.StringVar(&f.dockerConfig, "docker-config", "", "docker config.json with registry credentials (pods' imagePullSecrets are added)")
	fl.BoolVar(&f.plainHTTP, "plain-http", false, "talk HTTP, not HTTPS, to loopback registries")
	fl.DurationVar(&f.confirmTimeout, "confirm-timeout", flash.DefaultConfirmTimeout, "time a new image has to come back and confirm before it is rolled back")
	fl.DurationVar(&f.upTimeout, "up-timeout", flash.DefaultUpTimeout, "time an ECU has to answer again after a reset")
	cmd.MarkFlagRequired("config")
	return cmd
}

// run checks the flags, opens the vehicle's buses and runs the provider
// until the command's context ends.
func (f *runFlags) run(cmd *cobra.Command, log *zap.Logger) error {
	// The provider idles between polls and flashes (about 20 ms of CPU a
	// second for 70 ECUs): collecting at a quarter of the default heap
	// growth costs about 5 ms of CPU a second more and saves a quarter of
	// its heap on a gateway that has little memory (docs/benchmarks.md).
	// GOGC in the environment still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	trimExecutable()
	// Once the nodes are registered the code that did it is not needed
	// again for a long while: let it go too.
	go func() {
		select {
		case <-time.After(30 * time.Second):
			trimExecutable()
		case <-cmd.Context().Done():
		}
	}()
	v, err := vehicle.Load(f.config)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	listenSet := cmd.Flags().Changed("listen")
	if err := f.check(listenSet); err != nil {
		return err
	}
	restConfig, source, err := kubeClientConfig(f.kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = f.kubeQPS, f.kubeBurst
	restConfig.UserAgent = "ecu-kubelet/" + v.Name
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("the API server configuration from %s: %w", source, err)
	}
	if err := os.MkdirAll(f.stateDir, 0o700); err != nil {
		return fmt.Errorf("--state-dir: %w; choose a writable directory", err)
	}
	cfg := provider.Config{
		Vehicle:        v,
		Client:         client,
		StateDir:       f.stateDir,
		Log:            log,
		PollInterval:   f.pollInterval,
		LeaseDuration:  f.leaseDuration,
		NodeAddress:    f.nodeAddress,
		KubeletPort:    int32(f.kubeletPort),
		Artifacts:      artifact.Options{DockerConfig: f.dockerConfig, PlainHTTP: f.plainHTTP},
		ConfirmTimeout: f.confirmTimeout,
		UpTimeout:      f.upTimeout,
	}
	if cfg.NodeAddress == "" {
		cfg.NodeAddress = hostAddress()
	}
	// The kubelet API warns itself when it runs insecure, and logs the
	// CSR to approve; only its absence is said here.
	cfg.API = f.apiConfig(listenSet, cfg.NodeAddress, client)
	if cfg.API.Addr == "" {
		log.Warn(`--listen "": no kubelet API; kubectl logs and exec fail for these nodes`)
	}

	buses, err := openBuses(v)
	if err != nil {
		return fmt.Errorf("%s: %w", f.config, err)
	}
	defer closeBuses(buses)
	cfg.Buses = buses
	p, err := provider.New(cfg)
	if err != nil {
		return err
	}
	log.Info("serving the vehicle's ECUs as nodes",
		zap.String("vehicle", v.Name), zap.Int("ecus", len(v.ECUs)), zap.Int("buses", len(buses)),
		zap.String("apiServer", restConfig.Host), zap.String("kubeconfig", source),
		zap.String("nodeAddress", cfg.NodeAddress), zap.Int32("kubeletPort", cfg.KubeletPort),
		zap.String("listen", cfg.API.Addr), zap.String("stateDir", f.stateDir))
	if err := p.Run(cmd.Context()); err != nil {
		return err
	}
	log.Info("stopped", zap.String("vehicle", v.Name))
	return nil
}

// check refuses flag values that cannot work, before anything is opened.
func (f *runFlags) check(listenSet bool) error {
	switch {
	case f.pollInterval <= 0:
		return fmt.Errorf("--poll-interval %v: want a positive duration such as 5s", f.pollInterval)
	case f.leaseDuration <= 0:
		return fmt.Errorf("--lease-duration %v: want a positive duration such as 40s", f.leaseDuration)
	case f.confirmTimeout <= 0:
		return fmt.Errorf("--confirm-timeout %v: want a positive duration such as 2m", f.confirmTimeout)
	case f.upTimeout <= 0:
		return fmt.Errorf("--up-timeout %v: want a positive duration such as 30s", f.upTimeout)
	case f.kubeletPort < 1 || f.kubeletPort > 65535:
		return fmt.Errorf("--kubelet-port %d: want a TCP port, 1 to 65535", f.kubeletPort)
	case f.kubeQPS <= 0 || f.kubeBurst <= 0:
		return fmt.Errorf("--kube-api-qps %v and --kube-api-burst %d: want positive numbers", f.kubeQPS, f.kubeBurst)
	case f.stateDir == "":
		return errors.New("--state-dir is empty: the provider needs a directory that survives restarts")
	case (f.certFile == "") != (f.keyFile == ""):
		return errors.New("--tls-cert-file and --tls-private-key-file go together: give both, or neither to request a certificate through a CSR")
	case f.clientCAFile == "" && !f.insecureAPI && !(listenSet && f.listen == ""):
		return errors.New("--client-ca-file is required: the kubelet API authenticates the API server's kubelet client certificate by it; " +
			"give the cluster's CA (on kubeadm clusters /etc/kubernetes/pki/ca.crt), or --insecure-kubelet-api for a local demo")
	}
	if f.nodeAddress != "" && net.ParseIP(f.nodeAddress) == nil {
		return fmt.Errorf("--node-address %q: want an IP address, the nodes' InternalIP", f.nodeAddress)
	}
	if listenSet && f.listen != "" {
		if _, _, err := net.SplitHostPort(f.listen); err != nil {
			return fmt.Errorf("--listen %q: %v; want HOST:PORT or :PORT", f.listen, err)
		}
	}
	for _, file := range []struct{ flag, path string }{
		{"--tls-cert-file", f.certFile},
		{"--tls-private-key-file", f.keyFile},
		{"--client-ca-file", f.clientCAFile},
		{"--docker-config", f.dockerConfig},
	} {
		if file.path == "" {
			continue
		}
		if _, err := os.Stat(file.path); err != nil {
			return fmt.Errorf("%s: %w", file.flag, err)
		}
	}
	return nil
}

// apiConfig is the kubelet API's configuration from the flags.
func (f *runFlags) apiConfig(listenSet bool, nodeAddress string, client kubernetes.Interface) kubeletapi.Config {
	addr := ":" + strconv.Itoa(f.kubeletPort)
	if listenSet {
		addr = f.listen
	}
	certDir := f.certDir
	if certDir == "" {
		certDir = filepath.Join(f.stateDir, "pki")
	}
	names := []string{nodeAddress}
	if host, err := os.Hostname(); err == nil && host != "" {
		names = append(names, host)
	}
	return kubeletapi.Config{
		Addr:         addr,
		CertFile:     f.certFile,
		KeyFile:      f.keyFile,
		CertDir:      certDir,
		ServingNames: names,
		ClientCAFile: f.clientCAFile,
		Client:       client,
		Insecure:     f.insecureAPI,
	}
}

// kubeClientConfig finds the API server: the kubeconfig at path, else the
// ones $KUBECONFIG lists, else the in-cluster configuration. source says
// which, for logs and errors.
func kubeClientConfig(path string) (config *rest.Config, source string, err error) {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); {
	case path != "":
		if _, err := os.Stat(path); err != nil {
			return nil, "", fmt.Errorf("--kubeconfig: %w", err)
		}
		rules.ExplicitPath, source = path, "--kubeconfig "+path
	case env != "":
		rules.Precedence, source = filepath.SplitList(env), "$KUBECONFIG "+env
	default:
		config, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("no API server configuration: give --kubeconfig FILE or set KUBECONFIG, or run in a pod with a service account (in-cluster: %w)", err)
		}
		return config, "the in-cluster configuration", nil
	}
	config, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", source, err)
	}
	return config, source, nil
}

// hostAddress returns the first IPv4 address of an interface that is up
// and not loopback, else 127.0.0.1: the address the API server most likely
// reaches this host at.
func hostAddress() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip := ipn.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.String()
			}
		}
	}
	return "127.0.0.1"
}

// openBuses opens the named buses of v by their URLs, every bus when no
// name is given. On error it closes what it opened; the error names the
// bus and its URL.
func openBuses(v *vehicle.Vehicle, names ...string) (map[string]canbus.Bus, error) {
	buses := make(map[string]canbus.Bus)
	for _, b := range v.Buses {
		if len(names) > 0 && !slices.Contains(names, b.Name) {
			continue
		}
		bus, err := canbus.Open(b.URL, b.Config())
		if err != nil {
			closeBuses(buses)
			return nil, fmt.Errorf("bus %s (%s): %w", b.Name, b.URL, err)
		}
		buses[b.Name] = bus
	}
	for _, n := range names {
		if _, ok := buses[n]; !ok {
			closeBuses(buses)
			return nil, fmt.Errorf("the vehicle has no bus %q", n)
		}
	}
	return buses, nil
}

// closeBuses closes every bus of buses.
func closeBuses(buses map[string]canbus.Bus) {
	for _, b := range buses {
		b.Close()
	}
}
