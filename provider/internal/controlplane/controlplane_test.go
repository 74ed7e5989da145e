package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
)

// TestIntegrationControlPlane runs one control plane, with the controller
// manager, through what the provider's tests need of it. One start serves
// every step: a start is most of the test's time. The controller manager's
// steps come after the API server's restarts, to show it reconnects.
func TestIntegrationControlPlane(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{
		NodeMonitorPeriod:      time.Second,
		NodeMonitorGracePeriod: 5 * time.Second,
		NodeStartupGracePeriod: 5 * time.Second,
		DefaultToleration:      time.Second,
	}))
	ctx := t.Context()
	taint := corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "ecu-kubelet", Effect: corev1.TaintEffectNoSchedule}
	const name = "demo-car-brake"

	t.Run("CreatesAndListsNodes", func(t *testing.T) {
		nodes := cp.Client().CoreV1().Nodes()
		for _, n := range []*corev1.Node{
			{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"ecu-kubelet.io/vehicle": "demo-car", "ecu-kubelet.io/ecu": "brake"}},
				Spec:       corev1.NodeSpec{Taints: []corev1.Taint{taint}},
			},
			{ObjectMeta: metav1.ObjectMeta{Name: "other-car-gateway", Labels: map[string]string{"ecu-kubelet.io/vehicle": "other-car"}}},
		} {
			if _, err := nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating node %s: %v", n.Name, err)
			}
		}
		wantNode(ctx, t, cp.Client(), name, taint)
	})

	t.Run("KubeconfigAuthenticatesTheAdmin", func(t *testing.T) {
		config, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
		if err != nil {
			t.Fatalf("reading %s: %v", cp.Kubeconfig(), err)
		}
		wantUser(ctx, t, kubernetes.NewForConfigOrDie(config), controlplane.AdminUser)
	})

	t.Run("AuthorizesUsersByRBAC", func(t *testing.T) {
		const user = "ecu-kubelet-provider"
		config, err := cp.UserConfig(user, "ecu-kubelet")
		if err != nil {
			t.Fatal(err)
		}
		client := kubernetes.NewForConfigOrDie(config)
		wantUser(ctx, t, client, user)
		if _, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("%s listing nodes without a role binding: err = %v, want Forbidden", user, err)
		}
	})

	t.Run("ProxiesPodLogsToALoopbackKubelet", func(t *testing.T) {
		testLoopbackKubelet(t, cp)
	})

	t.Run("KeepsObjectsAcrossAPIServerRestart", func(t *testing.T) {
		if err := cp.Restart(); err != nil {
			t.Fatal(err)
		}
		// The client made before the restart reconnects by itself.
		wantNode(ctx, t, cp.Client(), name, taint)
	})

	t.Run("StopAPIServerMakesItUnreachable", func(t *testing.T) {
		if err := cp.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Client().CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("getting a node from a stopped API server succeeded")
		}
		if err := cp.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		wantNode(ctx, t, cp.Client(), name, taint)
	})

	t.Run("EvictsPodsFromANodeWhoseLeaseRunsOut", func(t *testing.T) {
		testEviction(t, cp)
	})

	t.Run("SignsApprovedKubeletServingCSRs", func(t *testing.T) {
		testKubeletServingCSR(t, cp)
	})
}

// wantNode lists the nodes of vehicle demo-car and wants exactly name,
// with taint.
func wantNode(ctx context.Context, t *testing.T, client kubernetes.Interface, name string, taint corev1.Taint) {
	t.Helper()
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "ecu-kubelet.io/vehicle=demo-car"})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	if !slices.Equal(names, []string{name}) {
		t.Fatalf("nodes of demo-car are %q, want [%s]", names, name)
	}
	if got := list.Items[0].Spec.Taints; !slices.Contains(got, taint) {
		t.Errorf("node %s has taints %v, want %v among them", name, got, taint)
	}
}

// wantUser asks the API server who client is and wants user.
func wantUser(ctx context.Context, t *testing.T, client kubernetes.Interface, user string) {
	t.Helper()
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("asking the API server who we are: %v", err)
	}
	if got := review.Status.UserInfo.Username; got != user {
		t.Errorf("the API server knows us as %q, want %q", got, user)
	}
}

// testEviction lets the lease of one node run out while another node of
// its zone renews its own, and wants the node lifecycle controller to
// taint the first unreachable and the taint eviction controller to delete
// the pod that does not tolerate it, and only that one. The healthy node
// matters: with every node not Ready the controller taints nothing
// NoExecute.
func testEviction(t *testing.T, cp *controlplane.ControlPlane) {
	ctx := t.Context()
	client := cp.Client()
	const zone, healthy, stale = "eviction-test", "eviction-test-healthy", "eviction-test-stale"
	for _, name := range []string{healthy, stale} {
		now := metav1.Now()
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now,
			}}},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &node.Name,
				LeaseDurationSeconds: new(int32(5)),
				RenewTime:            &metav1.MicroTime{Time: now.Time},
			},
		}
		if _, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the lease of node %s: %v", name, err)
		}
	}
	renewLease(t, client, healthy)

	evicted := firmwarePod("evicted", stale)
	tolerating := firmwarePod("tolerating", stale)
	// No tolerationSeconds: tolerated for ever, as a firmware pod should
	// be while its vehicle is offline.
	tolerating.Spec.Tolerations = []corev1.Toleration{{
		Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute,
	}}
	for _, pod := range []*corev1.Pod{evicted, tolerating} {
		if _, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", pod.Name, err)
		}
	}

	wantTaints := []corev1.Taint{
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute},
	}
	eventually(t, "node "+stale+" Unknown with the unreachable taints", func() (string, bool) {
		node, err := client.CoreV1().Nodes().Get(ctx, stale, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		var ready corev1.ConditionStatus
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = c.Status
			}
		}
		state := fmt.Sprintf("Ready %s, taints %v", ready, node.Spec.Taints)
		if ready != corev1.ConditionUnknown {
			return state, false
		}
		for _, want := range wantTaints {
			if !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return want.MatchTaint(&t) }) {
				return state, false
			}
		}
		return state, true
	})
	eventually(t, "pod "+evicted.Name+" evicted", func() (string, bool) {
		pod, err := client.CoreV1().Pods(evicted.Namespace).Get(ctx, evicted.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "deleted", true
		case err != nil:
			return err.Error(), false
		case pod.DeletionTimestamp != nil:
			// Deleted gracefully: it goes once its kubelet confirms.
			return "terminating", true
		}
		return "not deleted", false
	})
	// The controller deals with both pods when the taint appears; had it
	// meant to evict the tolerating one, it would have done so no later
	// than the other, whose default toleration runs a second.
	pod, err := client.CoreV1().Pods(tolerating.Namespace).Get(ctx, tolerating.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod %s: %v", tolerating.Name, err)
	}
	if pod.DeletionTimestamp != nil {
		t.Errorf("pod %s, which tolerates %s, was evicted", pod.Name, corev1.TaintNodeUnreachable)
	}
	healthyNode, err := client.CoreV1().Nodes().Get(ctx, healthy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(healthyNode.Spec.Taints) != 0 {
		t.Errorf("node %s, whose lease is renewed, has taints %v", healthy, healthyNode.Spec.Taints)
	}
}

// renewLease renews the lease of node every 200 ms until t ends, as its
// kubelet would.
func renewLease(t *testing.T, client kubernetes.Interface, node string) {
	ctx := t.Context()
	leases := client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after t's context is done
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			lease, err := leases.Get(ctx, node, metav1.GetOptions{})
			if err == nil {
				lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
				_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
			}
			if err != nil && ctx.Err() == nil {
				t.Logf("renewing the lease of node %s: %v", node, err)
			}
		}
	})
}

// firmwarePod returns a pod bound to node.
func firmwarePod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "firmware", Image: "registry.invalid/brake:1.2.3"}},
		},
	}
}

// testKubeletServingCSR asks for a kubelet serving certificate as a
// virtual kubelet does, approves the request as the test's administrator,
// and wants a certificate for the request's key and addresses that CAFile
// verifies.
func testKubeletServingCSR(t *testing.T, cp *controlplane.ControlPlane) {
	ctx := t.Context()
	csrs := cp.Client().CertificatesV1().CertificateSigningRequests()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const node = "demo-car-brake"
	loopback := net.IPv4(127, 0, 0, 1)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames:    []string{node},
		IPAddresses: []net.IP{loopback},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-serving"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certificatesv1.KubeletServingSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the CertificateSigningRequest: %v", err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "TestApproved", Message: "approved by the test",
	})
	if _, err := csrs.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("approving the CertificateSigningRequest: %v", err)
	}
	var certPEM []byte
	eventually(t, "CertificateSigningRequest "+csr.Name+" signed", func() (string, bool) {
		csr, err := csrs.Get(ctx, csr.Name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), false
		}
		for _, c := range csr.Status.Conditions {
			if c.Type == certificatesv1.CertificateFailed {
				t.Fatalf("the signer failed CertificateSigningRequest %s: %s: %s", csr.Name, c.Reason, c.Message)
			}
		}
		certPEM = csr.Status.Certificate
		return fmt.Sprintf("conditions %v", csr.Status.Conditions), len(certPEM) > 0
	})

	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("the issued certificate is not PEM: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parsing the issued certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: caPool(t, cp), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the issued certificate does not verify against CAFile for server auth: %v", err)
	}
	if err := cert.VerifyHostname(loopback.String()); err != nil {
		t.Errorf("the issued certificate: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("the issued certificate is not for the request's key")
	}
}

// testLoopbackKubelet serves a kubelet API's log endpoint on 127.0.0.1,
// trusting only client certificates from CAFile, and reads a pod's log
// through the API server, as kubectl logs does. The nodes/NAME/proxy path
// to the same address is refused: the API server proxies there only to
// global unicast addresses.
func testLoopbackKubelet(t *testing.T, cp *controlplane.ControlPlane) {
	ctx := t.Context()
	client := cp.Client()
	const node, pod, logLine = "loopback-kubelet", "flashed", "10:00:00.000 -> 10 02 (diagnosticSessionControl programming)\n"
	clients := make(chan *x509.Certificate, 1)
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case clients <- r.TLS.PeerCertificates[0]:
		default:
		}
		if r.URL.Path != "/containerLogs/default/"+pod+"/firmware" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, logLine)
	}))
	kubelet.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: caPool(t, cp)}
	kubelet.StartTLS()
	t.Cleanup(kubelet.Close)
	_, portText, err := net.SplitHostPort(kubelet.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: node},
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating node %s: %v", node, err)
	}
	p := firmwarePod(pod, node)
	// The node never becomes Ready; no taint may evict the pod mid-test.
	p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	if _, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s: %v", pod, err)
	}

	got, err := client.CoreV1().Pods(p.Namespace).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading pod %s's log through the API server: %v", pod, err)
	}
	if string(got) != logLine {
		t.Errorf("pod %s's log is %q, want %q", pod, got, logLine)
	}
	presented := <-clients
	if user := presented.Subject.CommonName; user != controlplane.KubeletClientUser {
		t.Errorf("the API server presented itself to the kubelet as %q, want %q", user, controlplane.KubeletClientUser)
	}
	certFile, keyFile := cp.KubeletClientFiles()
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("KubeletClientFiles: %v", err)
	} else if !presented.Equal(pair.Leaf) {
		t.Errorf("the API server presented a certificate other than KubeletClientFiles' %s", certFile)
	}

	// The API server answers with a Status that client-go does not decode
	// on this path; its code and message tell.
	res := client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "stats", "summary").Do(ctx)
	var code int
	res.StatusCode(&code)
	body, _ := res.Raw()
	if code != http.StatusBadRequest || !strings.Contains(string(body), "address not allowed") {
		t.Errorf("nodes/%s/proxy to 127.0.0.1 answered %d %s, want 400 and address not allowed", node, code, body)
	}
}

// caPool returns the certificates of cp's CAFile.
func caPool(t *testing.T, cp *controlplane.ControlPlane) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no PEM certificate", cp.CAFile())
	}
	return pool
}

// eventually polls cond until it reports true, and fails t when it has not
// within a minute, far longer than the controller manager takes even on a
// loaded machine. cond's string says what it saw, for the failure.
func eventually(t *testing.T, what string, cond func() (string, bool)) {
	t.Helper()
	const patience = time.Minute
	deadline := time.Now().Add(patience)
	for {
		seen, ok := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s; last seen: %s", what, patience, seen)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("no %s before the test ended; last seen: %s", what, seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BenchmarkStart starts and stops a control plane, without and with the
// controller manager, and reports the seconds a start takes.
func BenchmarkStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []controlplane.Option
	}{
		{"APIServer", nil},
		{"ControllerManager", []controlplane.Option{controlplane.WithControllerManager(controlplane.ControllerManager{})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				cp := controlplane.Start(b, bc.opts...)
				total += time.Since(start)
				if err := cp.Stop(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "start-seconds")
		})
	}
}
