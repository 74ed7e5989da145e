package kubeletapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

func TestScopeOfMapsPathsLikeTheKubelet(t *testing.T) {
	for _, tc := range []struct {
		path          string
		subresources  []string
		namespace, po string
	}{
		{"/stats/summary", []string{"stats"}, "", ""},
		{"/stats", []string{"stats"}, "", ""},
		{"/statsx", []string{"proxy"}, "", ""},
		{"/metrics", []string{"metrics"}, "", ""},
		{"/metrics/resource", []string{"metrics"}, "", ""},
		{"/logs/kubelet.log", []string{"log"}, "", ""},
		{"/pods", []string{"pods", "proxy"}, "", ""},
		{"/runningpods/", []string{"pods", "proxy"}, "", ""},
		{"/containerLogs/fw/brake/firmware", []string{"proxy"}, "fw", "brake"},
		{"/exec/fw/brake/firmware", []string{"proxy"}, "fw", "brake"},
		{"/attach/fw/brake/firmware", []string{"proxy"}, "fw", "brake"},
		{"/portForward/fw/brake", []string{"proxy"}, "fw", "brake"},
		{"/run/fw/brake/firmware", []string{"proxy"}, "fw", "brake"},
		{"/exec/fw", []string{"proxy"}, "", ""},
		{"/exec//brake/firmware", []string{"proxy"}, "", ""},
		{"/execute/fw/brake/firmware", []string{"proxy"}, "", ""},
		{"/", []string{"proxy"}, "", ""},
	} {
		s := scopeOf(httptest.NewRequest(http.MethodGet, tc.path, nil))
		if !slices.Equal(s.subresources, tc.subresources) || s.namespace != tc.namespace || s.pod != tc.po {
			t.Errorf("%s: got %v %q/%q, want %v %q/%q", tc.path, s.subresources, s.namespace, s.pod, tc.subresources, tc.namespace, tc.po)
		}
	}
}

func TestVerbOfMapsMethodsLikeTheKubelet(t *testing.T) {
	for method, verb := range map[string]string{
		http.MethodGet: "get", http.MethodPost: "create", http.MethodPut: "update",
		http.MethodPatch: "patch", http.MethodDelete: "delete", http.MethodHead: "", "BREW": "",
	} {
		if got := verbOf(method); got != verb {
			t.Errorf("verbOf(%s) = %q, want %q", method, got, verb)
		}
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	certFile, keyFile := ca.writeServing(t, dir, "kubelet")
	valid := Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Insecure: true, Backend: newBackend()}
	client := fake.NewClientset()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"NoAddr", func(c *Config) { c.Addr = "" }, "no listen address: set Addr"},
		{"NoBackend", func(c *Config) { c.Backend = nil }, "no Backend"},
		{"CertWithoutKey", func(c *Config) { c.KeyFile = "" }, "only one of CertFile and KeyFile"},
		{"CSRWithoutClient", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "needs Client"},
		{"CSRWithoutNames", func(c *Config) {
			c.CertFile, c.KeyFile, c.Client, c.NodeName, c.CertDir = "", "", client, "demo-car", dir
		}, "set ServingNames"},
		{"SecureWithoutClientCA", func(c *Config) { c.Insecure, c.Client = false, client }, "no ClientCAFile"},
		{"SecureWithoutClient", func(c *Config) { c.Insecure, c.ClientCAFile = false, certFile }, "no Client"},
		{"BadCertificate", func(c *Config) { c.CertFile = keyFile }, "serving certificate"},
		{"BadClientCA", func(c *Config) { c.Insecure, c.Client, c.ClientCAFile = false, client, keyFile }, "does not contain any valid"},
		{"AddressInUse", func(c *Config) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			c.Addr = l.Addr().String()
		}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.change(&cfg)
			s, err := New(cfg)
			if err == nil {
				s.ln.Close()
				t.Fatalf("New accepted the config; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// insecure starts an Insecure server over b with a serving certificate
// from ca.
func insecure(t *testing.T, ca *testCA, b Backend, metrics prometheus.Gatherer) *Server {
	t.Helper()
	certFile, keyFile := ca.writeServing(t, t.TempDir(), "kubelet")
	return start(t, Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Insecure: true, Backend: b, Metrics: metrics})
}

func TestServerAnswersFromTheBackend(t *testing.T) {
	ca := newTestCA(t)
	b := newBackend(pod("fw", "brake", "demo-car-brake"), pod("fw", "gateway", "demo-car-gateway"))
	reg := prometheus.NewRegistry()
	flashes := prometheus.NewCounter(prometheus.CounterOpts{Name: "ecu_kubelet_test_flashes_total", Help: "Flashes."})
	reg.MustRegister(flashes)
	flashes.Add(3)
	s := insecure(t, ca, b, reg)
	client := ca.client(nil)
	base := "https://" + s.Addr()

	for _, tc := range []struct {
		path   string
		status int
		check  func(t *testing.T, body []byte)
	}{
		{"/healthz", http.StatusOK, func(t *testing.T, body []byte) {
			if string(body) != "ok" {
				t.Errorf("body %q", body)
			}
		}},
		{"/pods", http.StatusOK, func(t *testing.T, body []byte) {
			var list corev1.PodList
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 2 || list.Items[0].Name != "brake" || list.Items[1].Spec.NodeName != "demo-car-gateway" {
				t.Errorf("pods %+v", list.Items)
			}
		}},
		{"/stats/summary", http.StatusOK, func(t *testing.T, body []byte) {
			var summary statsv1alpha1.Summary
			if err := json.Unmarshal(body, &summary); err != nil {
				t.Fatal(err)
			}
			if summary.Node.NodeName != "demo-car" || len(summary.Pods) != 2 {
				t.Errorf("summary %+v", summary)
			}
		}},
		{"/metrics", http.StatusOK, func(t *testing.T, body []byte) {
			if !bytes.Contains(body, []byte("ecu_kubelet_test_flashes_total 3")) {
				t.Errorf("metrics lack the counter:\n%s", body)
			}
		}},
		{"/containerLogs/fw/brake/firmware?tailLines=5&follow=true", http.StatusOK, func(t *testing.T, body []byte) {
			if string(body) != transcript {
				t.Errorf("log %q, want %q", body, transcript)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if want := (api.ContainerLogOpts{Tail: 5, Follow: true}); len(b.logOpts) != 1 || b.logOpts[0] != want {
				t.Errorf("backend got log options %+v, want %+v", b.logOpts, want)
			}
		}},
		{"/containerLogs/fw/wiper/firmware", http.StatusNotFound, func(t *testing.T, body []byte) {
			if !bytes.Contains(body, []byte("fw/wiper is not on any ECU")) {
				t.Errorf("body %q does not say which pod is missing", body)
			}
		}},
		{"/containerLogs/fw/brake/firmware?tailLines=-1", http.StatusBadRequest, nil},
		{"/metrics/resource", http.StatusNotFound, nil},
		{"/configz", http.StatusNotFound, nil},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			resp, err := client.Get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s (%s), want %d", resp.Status, body, tc.status)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
		})
	}
}

// execute runs cmd in the pod's container through the protocol's
// executor, against the kubelet API at base or the API server's pod exec
// at base, and returns stdout, stderr and the error.
func execute(t *testing.T, config *rest.Config, protocol string, u *url.URL) (stdout, stderr string, err error) {
	t.Helper()
	var exec remotecommand.Executor
	switch protocol {
	case "spdy":
		exec, err = remotecommand.NewSPDYExecutor(config, http.MethodPost, u)
	case "websocket":
		exec, err = remotecommand.NewWebSocketExecutor(config, http.MethodGet, u.String())
	case "websocket-v4":
		exec, err = remotecommand.NewWebSocketExecutorForProtocols(config, http.MethodGet, u.String(), "v4.channel.k8s.io")
	}
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err = exec.StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	return out.String(), errOut.String(), err
}

// execURL is the kubelet API's exec URL for cmd in fw/brake.
func execURL(addr string, cmd ...string) *url.URL {
	q := url.Values{"command": cmd, "output": {"1"}, "error": {"1"}}
	return &url.URL{Scheme: "https", Host: addr, Path: "/exec/fw/brake/firmware", RawQuery: q.Encode()}
}

func TestExecReachesTheBackendOverSPDYAndWebsocket(t *testing.T) {
	ca := newTestCA(t)
	b := newBackend(pod("fw", "brake", "demo-car-brake"))
	s := insecure(t, ca, b, nil)
	config := &rest.Config{Host: "https://" + s.Addr(), TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}
	for _, protocol := range []string{"spdy", "websocket-v4"} {
		t.Run(protocol, func(t *testing.T) {
			stdout, _, err := execute(t, config, protocol, execURL(s.Addr(), "read-did", "F189"))
			if err != nil || stdout != "F189 = 1.2.3\n" {
				t.Errorf("read-did F189: stdout %q, error %v; want %q", stdout, err, "F189 = 1.2.3\n")
			}
			_, stderr, err := execute(t, config, protocol, execURL(s.Addr(), "erase", "all"))
			var exit utilexec.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 2 || !strings.Contains(stderr, "not an allowed diagnostic") {
				t.Errorf("erase all: error %v, stderr %q; want exit code 2 and a stderr saying it is not allowed", err, stderr)
			}
		})
	}
}

func TestServingCertificateIsReadAgainWhenItsFilesChange(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.writeServing(t, dir, "first")
	s := start(t, Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Insecure: true, Backend: newBackend()})
	served := func() string {
		t.Helper()
		roots := ca.client(nil).Transport.(*http.Transport).TLSClientConfig
		conn, err := tls.Dial("tcp", s.Addr(), roots)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("serves %q, want first", got)
	}
	// A later modification time, as a renewal some time after would give,
	// rather than trusting the file system's clock resolution.
	later := time.Now().Add(time.Minute)
	ca.writeServing(t, dir, "second")
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if got := served(); got != "second" {
		t.Fatalf("after the files changed serves %q, want second", got)
	}
	// A certificate whose key is not yet written keeps the last good pair.
	third, _ := ca.serving(t, "third")
	if err := os.WriteFile(certFile, third, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(certFile, later.Add(time.Minute), later.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "second" {
		t.Fatalf("with a certificate that does not match its key serves %q, want the previous one, second", got)
	}
}

func TestServeReleasesTheAddressWhenItsContextEnds(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writeServing(t, t.TempDir(), "kubelet")
	s, err := New(Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Insecure: true, Backend: newBackend()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	l, err := net.Listen("tcp", s.Addr())
	if err != nil {
		t.Fatalf("the address is still taken after Serve returned: %v", err)
	}
	l.Close()
	if err := s.Serve(context.Background()); err == nil {
		t.Error("a second Serve returned nil; want an error")
	}
}

// endlessBackend's logs and commands never end by themselves, as a
// followed transcript of a pod that keeps running, or a diagnostic session
// left open.
type endlessBackend struct {
	*backend
	started chan string
}

func (b endlessBackend) Logs(ctx context.Context, _, _, _ string, _ api.ContainerLogOpts) (io.ReadCloser, error) {
	r, w := io.Pipe()
	go func() {
		w.Write([]byte(transcript))
		b.started <- "logs"
		<-ctx.Done()
		w.CloseWithError(ctx.Err())
	}()
	return r, nil
}

func (b endlessBackend) Exec(ctx context.Context, _, _, _ string, _ []string, attach api.AttachIO) error {
	b.started <- "exec"
	<-ctx.Done()
	return ctx.Err()
}

func TestServeEndsStreamsStillOpenAfterTheGracePeriod(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := ca.writeServing(t, t.TempDir(), "kubelet")
	b := endlessBackend{newBackend(pod("fw", "brake", "demo-car-brake")), make(chan string)}
	s, err := New(Config{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, Insecure: true, Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	s.grace = 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()

	resp, err := ca.client(nil).Get("https://" + s.Addr() + "/containerLogs/fw/brake/firmware?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-b.started
	// An exec's connection is hijacked: closing the server does not close
	// it, only cancelling the command's context does.
	execDone := make(chan error, 1)
	go func() {
		config := &rest.Config{Host: "https://" + s.Addr(), TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}
		_, _, err := execute(t, config, "spdy", execURL(s.Addr(), "read-did", "F189"))
		execDone <- err
	}()
	<-b.started

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != transcript {
		t.Errorf("followed log %q, want %q then its end", body, transcript)
	}
	if err := <-execDone; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("exec open at shutdown ended with %v; want the cancellation", err)
	}
}

// FuzzScopeOf feeds request paths from outside to the authorization
// mapping: it must not panic, must always ask for some subresource, and a
// pod it names must be two non-empty segments of the path.
func FuzzScopeOf(f *testing.F) {
	for _, p := range []string{"/exec/fw/brake/firmware", "/containerLogs/a/b/c", "/portForward/x", "/stats/summary", "/", "/exec//"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}
		s := scopeOf(r)
		if len(s.subresources) == 0 {
			t.Fatalf("%q: no subresource", path)
		}
		if (s.pod == "") != (s.namespace == "") {
			t.Fatalf("%q: namespace %q, pod %q", path, s.namespace, s.pod)
		}
		if s.pod != "" && !strings.Contains(path, "/"+s.namespace+"/"+s.pod) {
			t.Fatalf("%q: pod %s/%s is not in the path", path, s.namespace, s.pod)
		}
	})
}
