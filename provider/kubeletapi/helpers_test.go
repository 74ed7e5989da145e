package kubeletapi

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
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// testCA issues the serving certificates of the tests, as a cluster's CA
// or a kubelet-serving signer would.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubeletapi-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

var serial struct {
	sync.Mutex
	n int64
}

// sign issues a serving certificate for the subject and names of tmpl with
// the public key pub, and returns it in PEM.
func (ca *testCA) sign(t testing.TB, tmpl *x509.Certificate, pub any) []byte {
	t.Helper()
	serial.Lock()
	serial.n++
	tmpl.SerialNumber = big.NewInt(100 + serial.n)
	serial.Unlock()
	tmpl.NotBefore = time.Now().Add(-time.Minute)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// serving issues a serving certificate for 127.0.0.1 named cn and returns
// it and its key in PEM.
func (ca *testCA) serving(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = ca.sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:    []string{"localhost"},
	}, &key.PublicKey)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// writeServing writes a serving certificate named cn into dir and returns
// the paths of the certificate and key.
func (ca *testCA) writeServing(t testing.TB, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := ca.serving(t, cn)
	certFile, keyFile = filepath.Join(dir, "serving.crt"), filepath.Join(dir, "serving.key")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// client returns an HTTPS client that trusts ca and presents cert, if any.
func (ca *testCA) client(cert *tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// start runs a server for cfg until t ends, and returns it once it serves.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Serve returned before it was ready: %v", err)
	}
	return s
}

// backend is a Backend holding fixed pods, whose logs are a fixed
// transcript and whose only command is read-did.
type backend struct {
	pods []*corev1.Pod

	mu       sync.Mutex
	logOpts  []api.ContainerLogOpts
	commands [][]string
}

const transcript = "10 02 -> 50 02\n34 ... -> 74\n"

func newBackend(pods ...*corev1.Pod) *backend { return &backend{pods: pods} }

func pod(namespace, name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "firmware", Image: "registry.example/brake:1.2.3"}},
		},
	}
}

func (b *backend) find(namespace, name string) error {
	for _, p := range b.pods {
		if p.Namespace == namespace && p.Name == name {
			return nil
		}
	}
	return errdefs.NotFoundf("pod %s/%s is not on any ECU of this provider", namespace, name)
}

func (b *backend) Pods(context.Context) ([]*corev1.Pod, error) { return b.pods, nil }

func (b *backend) Logs(_ context.Context, namespace, name, _ string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	if err := b.find(namespace, name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.logOpts = append(b.logOpts, opts)
	b.mu.Unlock()
	return io.NopCloser(strings.NewReader(transcript)), nil
}

func (b *backend) Exec(_ context.Context, namespace, name, _ string, cmd []string, attach api.AttachIO) error {
	if err := b.find(namespace, name); err != nil {
		return err
	}
	b.mu.Lock()
	b.commands = append(b.commands, cmd)
	b.mu.Unlock()
	if len(cmd) == 2 && cmd[0] == "read-did" {
		fmt.Fprintf(attach.Stdout(), "%s = 1.2.3\n", cmd[1])
		return nil
	}
	err := fmt.Errorf("%q is not an allowed diagnostic", strings.Join(cmd, " "))
	if attach.Stderr() != nil {
		fmt.Fprintln(attach.Stderr(), err)
	}
	return utilexec.CodeExitError{Err: err, Code: 2}
}

func (b *backend) StatsSummary(context.Context) (*statsv1alpha1.Summary, error) {
	s := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: "demo-car"}}
	for _, p := range b.pods {
		s.Pods = append(s.Pods, statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Namespace: p.Namespace, Name: p.Name}})
	}
	return s, nil
}
