package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider"
)

// writeKubeconfig writes a kubeconfig for an API server at server and
// returns its path.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: server}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// noCluster makes the environment one without any API server
// configuration: no $KUBECONFIG and not inside a pod.
func noCluster(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

// TestRunRefusesWhatCannotWork runs `ecu-kubelet run` in-process with
// flags, files and environments that cannot work, and checks that it
// stops before serving anything with an error that names what to fix.
func TestRunRefusesWhatCannotWork(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, "https://"+closedAddr(t))
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("clusters: [this is not a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	busAddr := closedAddr(t)
	car := filepath.Join(dir, "car.yaml")
	demo, err := os.ReadFile(demoCarPath)
	if err != nil {
		t.Fatal(err)
	}
	// The demo car with its simulator gone.
	if err := os.WriteFile(car, []byte(strings.ReplaceAll(string(demo), "127.0.0.1:29536", busAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Everything right but what a case changes.
	good := []string{"--config", car, "--kubeconfig", kubeconfig, "--state-dir", filepath.Join(dir, "state"), "--client-ca-file", ca}

	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{name: "no vehicle", args: []string{"--kubeconfig", kubeconfig}, wantErr: []string{`"config" not set`}},
		{name: "vehicle file missing", args: []string{"--config", filepath.Join(dir, "nope.yaml")}, wantErr: []string{"--config", "nope.yaml", "no such file"}},
		{name: "vehicle file invalid", args: []string{"--config", garbage}, wantErr: []string{"--config", "garbage"}},
		{name: "kubeconfig missing", args: []string{"--kubeconfig", filepath.Join(dir, "nokube")}, wantErr: []string{"--kubeconfig", "nokube", "no such file"}},
		{name: "kubeconfig invalid", args: []string{"--kubeconfig", garbage}, wantErr: []string{"--kubeconfig " + garbage}},
		{name: "no kubeconfig anywhere", args: []string{"--kubeconfig", ""}, wantErr: []string{"give --kubeconfig FILE or set KUBECONFIG", "in-cluster"}},
		{name: "KUBECONFIG invalid", args: []string{"--kubeconfig", ""}, env: map[string]string{"KUBECONFIG": garbage}, wantErr: []string{"$KUBECONFIG " + garbage}},
		{name: "in a pod without a service account", args: []string{"--kubeconfig", ""},
			env: map[string]string{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}, wantErr: []string{"in-cluster", "serviceaccount"}},
		{name: "certificate without key", args: []string{"--tls-cert-file", ca}, wantErr: []string{"--tls-cert-file and --tls-private-key-file go together"}},
		{name: "certificate file missing", args: []string{"--tls-cert-file", filepath.Join(dir, "no.crt"), "--tls-private-key-file", ca}, wantErr: []string{"--tls-cert-file", "no.crt"}},
		{name: "no client CA", args: []string{"--client-ca-file", ""}, wantErr: []string{"--client-ca-file is required", "--insecure-kubelet-api"}},
		{name: "docker config missing", args: []string{"--docker-config", filepath.Join(dir, "docker.json")}, wantErr: []string{"--docker-config", "docker.json"}},
		{name: "node address not an IP", args: []string{"--node-address", "car.local"}, wantErr: []string{"--node-address", "want an IP address"}},
		{name: "listen without port", args: []string{"--listen", "127.0.0.1"}, wantErr: []string{"--listen", "HOST:PORT"}},
		{name: "kubelet port out of range", args: []string{"--kubelet-port", "70000"}, wantErr: []string{"--kubelet-port 70000"}},
		{name: "poll interval zero", args: []string{"--poll-interval", "0s"}, wantErr: []string{"--poll-interval"}},
		{name: "lease duration negative", args: []string{"--lease-duration", "-1s"}, wantErr: []string{"--lease-duration"}},
		{name: "confirm timeout zero", args: []string{"--confirm-timeout", "0s"}, wantErr: []string{"--confirm-timeout"}},
		{name: "state dir not creatable", args: []string{"--state-dir", filepath.Join(garbage, "state")}, wantErr: []string{"--state-dir", "writable"}},
		{name: "simulator not running", wantErr: []string{car, "bus body (socketcand://" + busAddr + "/body)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noCluster(t)
			if tt.env["KUBERNETES_SERVICE_HOST"] != "" {
				if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token"); err == nil {
					t.Skip("this test runs in a pod with a service account")
				}
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append(append([]string{"run"}, good...), tt.args...)
			if tt.name == "no vehicle" {
				args = append([]string{"run"}, tt.args...)
			}
			err := run(t.Context(), io.Discard, io.Discard, args...)
			if err == nil {
				t.Fatal("run succeeded; want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// TestKubeClientConfigPrecedence checks where the API server is taken
// from: --kubeconfig, else $KUBECONFIG (a list, as kubectl reads it).
func TestKubeClientConfigPrecedence(t *testing.T) {
	flag := writeKubeconfig(t, "https://flag.example:6443")
	env := writeKubeconfig(t, "https://env.example:6443")
	tests := []struct {
		name, path, env      string
		wantHost, wantSource string
	}{
		{"flag wins over KUBECONFIG", flag, env, "https://flag.example:6443", "--kubeconfig " + flag},
		{"KUBECONFIG without flag", "", env, "https://env.example:6443", "$KUBECONFIG " + env},
		{"KUBECONFIG list skips missing files", "", filepath.Join(t.TempDir(), "missing") + string(os.PathListSeparator) + env, "https://env.example:6443", "$KUBECONFIG "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noCluster(t)
			t.Setenv("KUBECONFIG", tt.env)
			config, source, err := kubeClientConfig(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if config.Host != tt.wantHost || !strings.HasPrefix(source, tt.wantSource) {
				t.Errorf("host %s from %q, want %s from %q", config.Host, source, tt.wantHost, tt.wantSource)
			}
		})
	}
}

// TestOpenBusesOpensTheNamedOrAll checks which buses openBuses opens, and
// that an unknown name is an error.
func TestOpenBusesOpensTheNamedOrAll(t *testing.T) {
	v := &vehicle.Vehicle{Name: "c", Buses: []vehicle.Bus{
		{Name: "body", URL: "mem://open-buses-body"},
		{Name: "chassis", URL: "mem://open-buses-chassis"},
	}}
	tests := []struct {
		names   []string
		want    []string
		wantErr string
	}{
		{names: nil, want: []string{"body", "chassis"}},
		{names: []string{"chassis"}, want: []string{"chassis"}},
		{names: []string{"powertrain"}, wantErr: `no bus "powertrain"`},
	}
	for _, tt := range tests {
		buses, err := openBuses(v, tt.names...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("openBuses(%q): %v, want an error saying %s", tt.names, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("openBuses(%q): %v", tt.names, err)
		}
		if len(buses) != len(tt.want) {
			t.Errorf("openBuses(%q) opened %d buses, want %q", tt.names, len(buses), tt.want)
		}
		for _, n := range tt.want {
			if buses[n] == nil {
				t.Errorf("openBuses(%q) did not open %s", tt.names, n)
			}
		}
		closeBuses(buses)
	}
}

// TestHostAddressIsAnIPv4Address checks the default node address: an IPv4
// address that is not loopback, or 127.0.0.1 on a host without one.
func TestHostAddressIsAnIPv4Address(t *testing.T) {
	ip := net.ParseIP(hostAddress())
	if ip == nil || ip.To4() == nil {
		t.Fatalf("hostAddress() = %q, want an IPv4 address", hostAddress())
	}
	if ip.IsLoopback() && !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("hostAddress() = %s: a loopback address other than the fallback", ip)
	}
}

// TestExampleFirmwarePodsFitTheDemoCar checks the example firmware pods
// that the demo applies and users copy: each is a valid pod (decoded
// strictly, so a misspelt field fails) bound to a node of the demo car,
// with one container naming a firmware artifact, and it tolerates the ECU
// nodes' taint and, for ever, the taints of a vehicle that is offline
// longer than its lease, so that it is never evicted.
func TestExampleFirmwarePodsFitTheDemoCar(t *testing.T) {
	car, err := vehicle.Load(demoCarPath)
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, e := range car.ECUs {
		nodes[provider.NodeName(car.Name, e.Name)] = true
	}
	files, err := filepath.Glob("../../deploy/examples/*-pod.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example pods in deploy/examples (%v)", err)
	}
	decode := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer().Decode
	mustTolerate := []corev1.Taint{
		{Key: provider.TaintKey, Value: provider.TaintValue, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute},
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			obj, _, err := decode(b, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			pod, ok := obj.(*corev1.Pod)
			if !ok {
				t.Fatalf("%s holds a %T, want a Pod", file, obj)
			}
			if !nodes[pod.Spec.NodeName] {
				t.Errorf("nodeName %q is no node of %s", pod.Spec.NodeName, car.Name)
			}
			if len(pod.Spec.Containers) != 1 || !strings.HasPrefix(pod.Spec.Containers[0].Image, "oci-layout:") {
				t.Errorf("want one container whose image is an oci-layout: firmware reference (demo.sh points it at the layout it builds); got %+v", pod.Spec.Containers)
			}
			for _, taint := range mustTolerate {
				var by *corev1.Toleration
				for i := range pod.Spec.Tolerations {
					if pod.Spec.Tolerations[i].ToleratesTaint(klog.Logger{}, &taint, false) {
						by = &pod.Spec.Tolerations[i]
					}
				}
				switch {
				case by == nil:
					t.Errorf("does not tolerate the taint %s", taint.ToString())
				case by.TolerationSeconds != nil:
					t.Errorf("tolerates %s only for %d s; an offline vehicle's pod would be evicted", taint.ToString(), *by.TolerationSeconds)
				}
			}
		})
	}
}
