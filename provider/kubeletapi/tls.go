package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certificatesv1client "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/util/certificate"
	"k8s.io/klog/v2"
)

// errNoCertificate fails TLS handshakes while a CSR awaits approval, in
// case a client connects in that window (the listener is bound before).
var errNoCertificate = errors.New("kubeletapi: no serving certificate yet: the CertificateSigningRequest awaits approval")

// fileCert is a serving certificate read from files and read again when
// either file changes, so that a certificate renewed on disk is served
// without a restart.
type fileCert struct {
	certFile, keyFile string
	log               *zap.Logger

	mu        sync.Mutex
	certStamp stamp
	keyStamp  stamp
	cert      *tls.Certificate
}

// stamp tells whether a file changed since it was read.
type stamp struct {
	mod  time.Time
	size int64
}

func loadFileCert(certFile, keyFile string, log *zap.Logger) (*fileCert, error) {
	f := &fileCert{certFile: certFile, keyFile: keyFile, log: log}
	certStamp, keyStamp, err := f.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kubeletapi: serving certificate %s and key %s: %w", certFile, keyFile, err)
	}
	f.cert, f.certStamp, f.keyStamp = &cert, certStamp, keyStamp
	return f, nil
}

func (f *fileCert) stamps() (certStamp, keyStamp stamp, err error) {
	for _, x := range []struct {
		path string
		s    *stamp
	}{{f.certFile, &certStamp}, {f.keyFile, &keyStamp}} {
		fi, err := os.Stat(x.path)
		if err != nil {
			return stamp{}, stamp{}, fmt.Errorf("kubeletapi: serving certificate: %w", err)
		}
		*x.s = stamp{fi.ModTime(), fi.Size()}
	}
	return certStamp, keyStamp, nil
}

// current returns the certificate, read again when a file changed. A pair
// that does not load (the certificate written but not yet its key) leaves
// the last good one in service, with a warning.
func (f *fileCert) current() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	certStamp, keyStamp, err := f.stamps()
	if err != nil {
		f.log.Warn("kubelet API: serving certificate unreadable; serving the previous one", zap.Error(err))
		return f.cert
	}
	if certStamp == f.certStamp && keyStamp == f.keyStamp {
		return f.cert
	}
	f.certStamp, f.keyStamp = certStamp, keyStamp
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		f.log.Warn("kubelet API: changed serving certificate does not load; serving the previous one until it is fixed",
			zap.String("cert", f.certFile), zap.String("key", f.keyFile), zap.Error(err))
		return f.cert
	}
	f.log.Info("kubelet API: serving certificate reloaded", zap.String("cert", f.certFile))
	f.cert = &cert
	return f.cert
}

// csrCert is a serving certificate requested through the certificates API,
// kept in a directory and renewed before it expires by client-go's
// certificate manager.
type csrCert struct {
	certificate.Manager
	// updated receives a value when the store is given a new certificate.
	updated chan struct{}
}

// newCSRCert prepares the certificate manager for cfg; it asks for nothing
// until started. A certificate stored in cfg.CertDir by an earlier run is
// served at once.
func newCSRCert(cfg *Config, log *zap.Logger) (*csrCert, error) {
	template := &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:   "system:node:" + cfg.NodeName,
			Organization: []string{"system:nodes"},
		},
	}
	for _, name := range cfg.ServingNames {
		if ip := net.ParseIP(name); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, name)
		}
	}
	if err := os.MkdirAll(cfg.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("kubeletapi: certificate directory: %w", err)
	}
	store, err := certificate.NewFileStore("kubelet-serving", cfg.CertDir, cfg.CertDir, "", "")
	if err != nil {
		return nil, fmt.Errorf("kubeletapi: certificate store in %s: %w", cfg.CertDir, err)
	}
	c := &csrCert{updated: make(chan struct{}, 1)}
	client := csrNamingClient{Interface: cfg.Client, created: func(csr *certificatesv1.CertificateSigningRequest) {
		msg := "kubelet API: waiting for approval of the serving certificate request; the server starts once it is signed"
		if c.Current() != nil {
			msg = "kubelet API: waiting for approval of the request renewing the serving certificate; the current one serves until it expires"
		}
		log.Info(msg, zap.String("csr", csr.Name), zap.String("approve", "kubectl certificate approve "+csr.Name))
	}}
	// The manager logs its failures (a CSR not signed in time) through
	// klog's logger in this context: the kubelet API's.
	logCtx := klog.NewContext(context.Background(), zapr.NewLogger(log))
	c.Manager, err = certificate.NewManager(&certificate.Config{
		ClientsetFn:      func(*tls.Certificate) (kubernetes.Interface, error) { return client, nil },
		Template:         template,
		SignerName:       certificatesv1.KubeletServingSignerName,
		GetUsages:        certificate.DefaultKubeletServingGetUsages,
		CertificateStore: notifyingStore{Store: store, updated: c.updated},
		Name:             "kubelet-serving",
		Ctx:              &logCtx,
	})
	if err != nil {
		return nil, fmt.Errorf("kubeletapi: certificate manager: %w", err)
	}
	return c, nil
}

// wait starts the manager and returns once it has a certificate, or false
// when ctx ends first.
func (c *csrCert) wait(ctx context.Context) bool {
	c.Start()
	// The store is told of a new certificate just before the manager
	// caches it, so Current may still be nil right after a notice: look
	// again shortly after each, and now and then regardless.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for c.Current() == nil {
		select {
		case <-c.updated:
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// notifyingStore tells when the certificate manager stores a certificate,
// so that the server starts the moment the first one is signed.
type notifyingStore struct {
	certificate.Store
	updated chan struct{}
}

func (s notifyingStore) Update(cert, key []byte) (*tls.Certificate, error) {
	c, err := s.Store.Update(cert, key)
	if err == nil {
		select {
		case s.updated <- struct{}{}:
		default:
		}
	}
	return c, err
}

// csrNamingClient is a clientset that reports each CSR it creates: the
// certificate manager keeps the name to itself, and the operator needs it
// to approve the request.
type csrNamingClient struct {
	kubernetes.Interface
	created func(*certificatesv1.CertificateSigningRequest)
}

func (c csrNamingClient) CertificatesV1() certificatesv1client.CertificatesV1Interface {
	return csrNamingV1{c.Interface.CertificatesV1(), c.created}
}

type csrNamingV1 struct {
	certificatesv1client.CertificatesV1Interface
	created func(*certificatesv1.CertificateSigningRequest)
}

func (c csrNamingV1) CertificateSigningRequests() certificatesv1client.CertificateSigningRequestInterface {
	return csrNamingRequests{c.CertificatesV1Interface.CertificateSigningRequests(), c.created}
}

type csrNamingRequests struct {
	certificatesv1client.CertificateSigningRequestInterface
	created func(*certificatesv1.CertificateSigningRequest)
}

func (c csrNamingRequests) Create(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, opts metav1.CreateOptions) (*certificatesv1.CertificateSigningRequest, error) {
	out, err := c.CertificateSigningRequestInterface.Create(ctx, csr, opts)
	if err == nil {
		c.created(out)
	}
	return out, err
}
