package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
)

// TestIntegrationKubeletAPI runs the server against a real API server for
// authentication and authorization, and behind the API server's proxy as
// kubectl reaches it. One control plane serves every step: its start is
// most of the test's time.
func TestIntegrationKubeletAPI(t *testing.T) {
	cp := controlplane.Start(t)
	ctx := t.Context()
	client := cp.Client()
	ca := newTestCA(t)
	certFile, keyFile := ca.writeServing(t, t.TempDir(), "demo-car")
	b := newBackend(pod("fw", "brake", "demo-car-brake"), pod("fw", "gateway", "demo-car-gateway"))
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ecu_kubelet_test_flashes_total", Help: "Flashes."}))
	s := start(t, Config{
		Addr:         "127.0.0.1:0",
		CertFile:     certFile,
		KeyFile:      keyFile,
		ClientCAFile: cp.CAFile(),
		NodeName:     "demo-car",
		Client:       client,
		Backend:      b,
		Metrics:      reg,
		Log:          zap.NewNop(),
	})

	// Who calls: nobody, users by client certificate, service accounts by
	// token.
	certOf := func(config *rest.Config) *tls.Certificate {
		t.Helper()
		cert, err := tls.X509KeyPair(config.CertData, config.KeyData)
		if err != nil {
			t.Fatal(err)
		}
		return &cert
	}
	alice, err := cp.UserConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	admin := cp.RESTConfig()
	// The API server's identity towards kubelets.
	apiServer, err := tls.LoadX509KeyPair(cp.KubeletClientFiles())
	if err != nil {
		t.Fatal(err)
	}
	// A certificate the cluster's CA did not sign (for serving, at that).
	strangerPEM, strangerKey := ca.serving(t, "stranger")
	stranger, err := tls.X509KeyPair(strangerPEM, strangerKey)
	if err != nil {
		t.Fatal(err)
	}
	apiAdminToken := serviceAccountToken(t, client, "kubelet-api-admin", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"})
	// A role for one node's kubelet API alone, by resourceNames.
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "brake-kubelet-api"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get", "create"},
			ResourceNames: []string{"demo-car-brake"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	brakeToken := serviceAccountToken(t, client, "brake-only", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "brake-kubelet-api"})

	type caller struct {
		client *http.Client
		token  string
	}
	callers := map[string]caller{
		"anonymous":         {client: ca.client(nil)},
		"bad token":         {client: ca.client(nil), token: "not-a-token"},
		"alice":             {client: ca.client(certOf(alice))},
		"stranger":          {client: ca.client(&stranger)},
		"api server":        {client: ca.client(&apiServer)},
		"admin":             {client: ca.client(certOf(admin))},
		"kubelet-api-admin": {client: ca.client(nil), token: apiAdminToken},
		"brake-only":        {client: ca.client(nil), token: brakeToken},
	}
	t.Run("AuthenticatesAndAuthorizes", func(t *testing.T) {
		for _, tc := range []struct {
			who, path string
			status    int
			body      string
		}{
			{"anonymous", "/pods", http.StatusUnauthorized, "Unauthorized"},
			{"anonymous", "/healthz", http.StatusOK, "ok"},
			{"bad token", "/pods", http.StatusUnauthorized, "Unauthorized"},
			{"stranger", "/pods", http.StatusUnauthorized, "Unauthorized"},
			{"api server", "/containerLogs/fw/brake/firmware", http.StatusOK, transcript},
			{"alice", "/pods", http.StatusForbidden, "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy], node=(every node))"},
			{"alice", "/containerLogs/fw/brake/firmware", http.StatusForbidden, "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[proxy], node=demo-car-brake)"},
			{"alice", "/metrics", http.StatusForbidden, "subresource(s)=[metrics]"},
			{"admin", "/pods", http.StatusOK, `"name":"gateway"`},
			{"admin", "/stats/summary", http.StatusOK, `"nodeName":"demo-car"`},
			{"admin", "/metrics", http.StatusOK, "ecu_kubelet_test_flashes_total 0"},
			{"kubelet-api-admin", "/pods", http.StatusOK, `"name":"brake"`},
			{"kubelet-api-admin", "/stats/summary", http.StatusOK, `"nodeName":"demo-car"`},
			{"brake-only", "/containerLogs/fw/brake/firmware", http.StatusOK, transcript},
			{"brake-only", "/containerLogs/fw/gateway/firmware", http.StatusForbidden, "node=demo-car-gateway"},
			{"brake-only", "/containerLogs/fw/wiper/firmware", http.StatusForbidden, "node=(every node)"},
			{"brake-only", "/pods", http.StatusForbidden, "user=system:serviceaccount:default:brake-only"},
		} {
			t.Run(tc.who+tc.path, func(t *testing.T) {
				c := callers[tc.who]
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.Addr()+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
					t.Errorf("%s GET %s: %s %q; want %d containing %q", tc.who, tc.path, resp.Status, body, tc.status, tc.body)
				}
			})
		}
	})

	t.Run("ExecsOverSPDYAsAnAuthorizedUser", func(t *testing.T) {
		direct := &rest.Config{Host: "https://" + s.Addr(), TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem, CertData: admin.CertData, KeyData: admin.KeyData}}
		stdout, _, err := execute(t, direct, "spdy", execURL(s.Addr(), "read-did", "F189"))
		if err != nil || stdout != "F189 = 1.2.3\n" {
			t.Errorf("admin: read-did F189: stdout %q, error %v; want %q", stdout, err, "F189 = 1.2.3\n")
		}
		direct.CertData, direct.KeyData = alice.CertData, alice.KeyData
		if _, _, err := execute(t, direct, "spdy", execURL(s.Addr(), "read-did", "F189")); err == nil || !strings.Contains(err.Error(), "Forbidden (user=alice, verb=create, resource=nodes, subresource(s)=[proxy], node=demo-car-brake)") {
			t.Errorf("alice: read-did F189: error %v; want Forbidden", err)
		}
	})

	// The API server reaches a node's kubelet API at the address and
	// port the Node advertises, as the provider's nodes advertise it.
	const node = "demo-car-brake"
	n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseInt(s.Addr()[strings.LastIndexByte(s.Addr(), ':')+1:], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fw"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("fw").Create(ctx, pod("fw", "brake", node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("LogsThroughTheAPIServer", func(t *testing.T) {
		b.mu.Lock()
		b.logOpts = nil
		b.mu.Unlock()
		body, err := client.CoreV1().Pods("fw").GetLogs("brake", &corev1.PodLogOptions{Container: "firmware", TailLines: ptr.To[int64](3)}).DoRaw(ctx)
		if err != nil || string(body) != transcript {
			t.Fatalf("pods/log: %q, %v; want %q", body, err, transcript)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if want := (api.ContainerLogOpts{Tail: 3}); len(b.logOpts) != 1 || b.logOpts[0] != want {
			t.Errorf("backend got log options %+v, want %+v", b.logOpts, want)
		}
	})

	t.Run("ExecsThroughTheAPIServer", func(t *testing.T) {
		u := client.CoreV1().RESTClient().Post().Resource("pods").Namespace("fw").Name("brake").SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: "firmware", Command: []string{"read-did", "F189"}, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
		// kubectl speaks websocket (v5) to the API server, which speaks
		// SPDY to the kubelet API; older clients speak SPDY all the way.
		for _, protocol := range []string{"websocket", "spdy"} {
			t.Run(protocol, func(t *testing.T) {
				stdout, _, err := execute(t, cp.RESTConfig(), protocol, u)
				if err != nil || stdout != "F189 = 1.2.3\n" {
					t.Errorf("pods/exec read-did F189: stdout %q, error %v; want %q", stdout, err, "F189 = 1.2.3\n")
				}
			})
		}
	})

	t.Run("KubectlLogsAndExec", func(t *testing.T) {
		bins, err := controlplane.EnsureBinaries(ctx, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			args       []string
			out        string
			wantFailed bool
		}{
			{[]string{"logs", "brake"}, transcript, false},
			{[]string{"exec", "brake", "--", "read-did", "F189"}, "F189 = 1.2.3\n", false},
			{[]string{"exec", "brake", "--", "erase", "all"}, `"erase all" is not an allowed diagnostic` + "\ncommand terminated with exit code 2\n", true},
		} {
			t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
				cmd := exec.CommandContext(ctx, bins.Kubectl, append([]string{"--kubeconfig", cp.Kubeconfig(), "-n", "fw"}, tc.args...)...)
				out, err := cmd.CombinedOutput()
				if string(out) != tc.out || (err != nil) != tc.wantFailed {
					t.Errorf("kubectl %s: %q, %v; want %q (failing: %t)", strings.Join(tc.args, " "), out, err, tc.out, tc.wantFailed)
				}
			})
		}
	})

	t.Run("NodeProxyRefusesALoopbackNode", func(t *testing.T) {
		// The API server proxies nodes/NAME/proxy only to global unicast
		// addresses (isProxyableHostname in pkg/registry/core/node), with
		// no flag to change it; pods/log and pods/exec above do not check.
		body, err := client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "stats", "summary").DoRaw(ctx)
		if !apierrors.IsBadRequest(err) || !strings.Contains(string(body), "address not allowed") {
			t.Errorf("nodes/%s/proxy/stats/summary: %v %s; want 400 address not allowed (if the API server now proxies to loopback, update the package documentation)", node, err, body)
		}
	})
}

// serviceAccountToken creates the service account name in default, binds
// it to role, waits until the API server's authorizer knows the binding,
// and returns a token for it.
func serviceAccountToken(t *testing.T, client kubernetes.Interface, name string, role rbacv1.RoleRef) string {
	t.Helper()
	ctx := t.Context()
	if _, err := client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    role,
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: name}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The server caches a denial for 30 s: ask only once the binding is
	// in effect.
	user := "system:serviceaccount:default:" + name
	for {
		review, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             []string{"system:serviceaccounts"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "proxy", Name: "demo-car-brake"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the API server never allowed %s nodes/proxy: %s", user, review.Status.Reason)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tr, err := client.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestIntegrationServingCertificateFromCSR has the server request its
// certificate from a real API server, signed by kube-controller-manager's
// kubelet-serving signer, which checks the request as in a cluster. The
// test approves it, as an operator would: nothing approves kubelet serving
// certificates automatically.
func TestIntegrationServingCertificateFromCSR(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{}))
	ctx := t.Context()
	csrs := cp.Client().CertificatesV1().CertificateSigningRequests()
	clusterCA, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(clusterCA) {
		t.Fatalf("no certificate in %s", cp.CAFile())
	}
	core, logs := observer.New(zap.InfoLevel)
	cfg := Config{
		Addr:         "127.0.0.1:0",
		CertDir:      t.TempDir(),
		ServingNames: []string{"127.0.0.1", "demo-car.local"},
		NodeName:     "demo-car",
		Client:       cp.Client(),
		ClientCAFile: cp.CAFile(),
		Backend:      newBackend(),
		Log:          zap.New(core),
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(serveCtx) }()

	csr := awaitCSR(t, cp.Client())
	if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName || csr.Spec.Username != controlplane.AdminUser ||
		!slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		t.Errorf("CSR %s: signer %s, user %s, usages %v; want %s by %s for server auth",
			csr.Name, csr.Spec.SignerName, csr.Spec.Username, csr.Spec.Usages, certificatesv1.KubeletServingSignerName, controlplane.AdminUser)
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		t.Fatalf("CSR %s: request is not PEM", csr.Name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if req.Subject.CommonName != "system:node:demo-car" || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) ||
		!slices.Equal(req.DNSNames, []string{"demo-car.local"}) || len(req.IPAddresses) != 1 || !req.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("CSR %s asks for %v, DNS %v, IP %v; want system:node:demo-car in system:nodes for demo-car.local and 127.0.0.1",
			csr.Name, req.Subject, req.DNSNames, req.IPAddresses)
	}
	select {
	case <-s.Ready():
		t.Fatal("the server serves before its CSR is signed")
	default:
	}

	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "TestApproved", Message: "approved by the test",
	})
	if csr, err = csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Serve returned before it served: %v", err)
	}
	// Logged when the CSR was created, which was before it was signed.
	if got := logs.FilterMessageSnippet("waiting for approval").FilterField(zap.String("approve", "kubectl certificate approve "+csr.Name)).Len(); got != 1 {
		t.Errorf("%d log entries say how to approve %s; want 1; the log: %v", got, csr.Name, logs.All())
	}
	issued := servedCertificate(t, roots, s.Addr())
	if issued.Subject.CommonName != "system:node:demo-car" {
		t.Errorf("serves %v; want the certificate for system:node:demo-car", issued.Subject)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Restarted, it serves the certificate kept in CertDir at once.
	s = start(t, cfg)
	if again := servedCertificate(t, roots, s.Addr()); again.SerialNumber.Cmp(issued.SerialNumber) != 0 {
		t.Errorf("after a restart serves serial %v; want the kept certificate, serial %v", again.SerialNumber, issued.SerialNumber)
	}
	list, err := csrs.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("%d CSRs after a restart; want the first one alone", len(list.Items))
	}
}

// awaitCSR returns the first CertificateSigningRequest created.
func awaitCSR(t *testing.T, client kubernetes.Interface) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	// Without a resourceVersion the watch starts with those that exist.
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest); ok && ev.Type == watch.Added {
			return csr
		}
	}
	t.Fatal("the CSR watch ended before a CSR was created")
	return nil
}

// servedCertificate connects to addr, verifying it as 127.0.0.1 against
// roots, and returns the certificate it serves.
func servedCertificate(t *testing.T, roots *x509.CertPool, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}
