package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

const (
	// shutdownGrace is how long requests in flight may finish when the
	// server stops; streams still open then (a followed log, an exec) are
	// cancelled.
	shutdownGrace = 5 * time.Second
	// readHeaderTimeout bounds a client that connects and says nothing.
	readHeaderTimeout = 30 * time.Second
)

// Server is the kubelet API of every ECU node of one process.
type Server struct {
	log      *zap.Logger
	ln       net.Listener
	tls      *tls.Config
	handler  http.Handler
	files    *fileCert
	csr      *csrCert
	clientCA *dynamiccertificates.DynamicFileCAContent
	insecure bool
	grace    time.Duration // shutdownGrace; tests shorten it

	serveOnce sync.Once
	ready     chan struct{}
}

// New checks cfg, reads the serving certificate or the one kept in CertDir,
// and binds cfg.Addr; Serve serves it. The caller must call Serve, which
// releases the address when it returns.
func New(cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Server{log: cfg.Log, insecure: cfg.Insecure, grace: shutdownGrace, ready: make(chan struct{})}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.tls = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Every streaming endpoint (exec, attach, port-forward) is an
		// HTTP/1.1 upgrade; HTTP/2 would add surface and no use.
		NextProtos: []string{"http/1.1"},
	}
	var err error
	if cfg.CertFile != "" {
		if s.files, err = loadFileCert(cfg.CertFile, cfg.KeyFile, s.log); err != nil {
			return nil, err
		}
		s.tls.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.files.current(), nil }
	} else {
		if s.csr, err = newCSRCert(&cfg, s.log); err != nil {
			return nil, err
		}
		s.tls.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.csr.Current(); c != nil {
				return c, nil
			}
			return nil, errNoCertificate
		}
	}

	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{}))
	}
	api.AttachPodRoutes(api.PodHandlerConfig{
		RunInContainer:   cfg.Backend.Exec,
		GetContainerLogs: cfg.Backend.Logs,
		// A kubelet's /pods lists its node's pods; here the node is every
		// ECU of the process.
		GetPodsFromKubernetes: cfg.Backend.Pods,
		GetPods:               cfg.Backend.Pods,
		GetStatsSummary:       cfg.Backend.StatsSummary,
	}, mux, false)
	s.handler = mux

	if cfg.Insecure {
		s.log.Warn("kubelet API: authentication and authorization are OFF (Insecure): anyone who reaches " + cfg.Addr + " may read flash transcripts and run diagnostics on the ECUs; use it for the demo only")
	} else {
		if s.clientCA, err = dynamiccertificates.NewDynamicCAContentFromFile("client-ca", cfg.ClientCAFile); err != nil {
			return nil, fmt.Errorf("kubeletapi: client CA: %w", err)
		}
		// The pool only tells clients which certificate to send; the
		// authenticator verifies it, against the file as it is then.
		s.tls.ClientCAs = x509.NewCertPool()
		s.tls.ClientCAs.AppendCertsFromPEM(s.clientCA.CurrentCABundleContent())
		s.tls.ClientAuth = tls.RequestClientCert
		// The apiserver library's delegating webhook authenticator and
		// authorizer, with the kubelet's cache times (as virtual-kubelet's
		// nodeutil.WebhookAuth sets them up; used directly because nodeutil
		// links in the whole API server, 500 packages and half of this
		// program's memory).
		authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
			CacheTTL:                           2 * time.Minute,
			WebhookRetryBackoff:                webhookBackoff(),
			TokenAccessReviewClient:            cfg.Client.AuthenticationV1(),
			ClientCertificateCAContentProvider: s.clientCA,
		}.New()
		if err != nil {
			return nil, fmt.Errorf("kubeletapi: webhook authentication: %w", err)
		}
		authz, err := authorizerfactory.DelegatingAuthorizerConfig{
			AllowCacheTTL:             5 * time.Minute,
			DenyCacheTTL:              30 * time.Second,
			WebhookRetryBackoff:       webhookBackoff(),
			SubjectAccessReviewClient: cfg.Client.AuthorizationV1(),
		}.New()
		if err != nil {
			return nil, fmt.Errorf("kubeletapi: webhook authorization: %w", err)
		}
		g := &guard{authn: authn, authz: authz, nodeOf: podNode(cfg.Backend), log: s.log}
		s.handler = g.wrap(mux)
	}
	outer := http.NewServeMux()
	outer.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	outer.Handle("/", s.handler)
	s.handler = outer

	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("kubeletapi: %w", err)
	}
	return s, nil
}

// check says what is missing from cfg.
func (cfg *Config) check() error {
	var errs []error
	if cfg.Addr == "" {
		errs = append(errs, errors.New("no listen address: set Addr, such as :10250"))
	}
	if cfg.Backend == nil {
		errs = append(errs, errors.New("no Backend"))
	}
	switch {
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		errs = append(errs, errors.New("only one of CertFile and KeyFile: set both, or neither to request a certificate through a CSR"))
	case cfg.CertFile == "":
		if cfg.Client == nil {
			errs = append(errs, errors.New("without CertFile the serving certificate is requested through a CSR, which needs Client"))
		}
		if cfg.NodeName == "" {
			errs = append(errs, errors.New("without CertFile the serving certificate is requested through a CSR for system:node:<NodeName>; set NodeName"))
		}
		if cfg.CertDir == "" {
			errs = append(errs, errors.New("without CertFile set CertDir, where the certificate obtained through a CSR is kept across restarts"))
		}
		if len(cfg.ServingNames) == 0 {
			errs = append(errs, errors.New("without CertFile set ServingNames, the addresses the requested certificate covers (the signer requires one)"))
		}
	}
	if !cfg.Insecure {
		if cfg.ClientCAFile == "" {
			errs = append(errs, errors.New("no ClientCAFile: set it to the CA of the API server's kubelet client certificate (or Insecure, for a demo only)"))
		}
		if cfg.Client == nil {
			errs = append(errs, errors.New("no Client: authentication (TokenReview) and authorization (SubjectAccessReview) need it (or Insecure, for a demo only)"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kubeletapi: %w", err)
	}
	return nil
}

// podNode returns a function naming the node of a pod b holds.
func podNode(b Backend) func(ctx context.Context, namespace, name string) string {
	return func(ctx context.Context, namespace, name string) string {
		pods, err := b.Pods(ctx)
		if err != nil {
			return ""
		}
		for _, p := range pods {
			if p.Namespace == namespace && p.Name == name {
				return p.Spec.NodeName
			}
		}
		return ""
	}
}

// Addr returns the address the server is bound to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Ready is closed once the server has a certificate and serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve serves until ctx ends, then stops accepting connections, lets
// requests in flight finish for a few seconds, cancels the streams still
// open and returns nil. Without a serving certificate it first waits for
// its CSR to be signed. Serve may be called once; a second call returns an
// error.
func (s *Server) Serve(ctx context.Context) error {
	err := errors.New("kubeletapi: Serve called twice")
	s.serveOnce.Do(func() { err = s.serve(ctx) })
	return err
}

func (s *Server) serve(ctx context.Context) error {
	defer s.ln.Close()
	if s.clientCA != nil {
		go s.clientCA.Run(ctx, 1)
	}
	if s.csr != nil {
		defer s.csr.Stop()
		if s.csr.Current() == nil {
			s.log.Info("kubelet API: no serving certificate yet; requesting one through a CertificateSigningRequest")
		}
		if !s.csr.wait(ctx) {
			return nil
		}
	}

	// Streams (exec, followed logs) outlive Shutdown's wait; their context
	// is this one, cancelled once the grace period is over.
	streams, cancelStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStreams()
	// Mostly failed handshakes of scanners and probes: no news. The error
	// is for a level zap does not know.
	errorLog, _ := zap.NewStdLogAt(s.log, zap.DebugLevel)
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return streams },
		ErrorLog:          errorLog,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(s.ln, s.tls)) }()
	s.log.Info("kubelet API: serving", zap.String("addr", s.Addr()), zap.Bool("insecure", s.insecure))
	close(s.ready)

	select {
	case err := <-served:
		return fmt.Errorf("kubeletapi: %w", err)
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	if err := srv.Shutdown(grace); err != nil {
		s.log.Info("kubelet API: streams still open after the grace period are cancelled", zap.Error(err))
	}
	cancelStreams()
	srv.Close()
	<-served
	return nil
}

// webhookBackoff is how TokenReview and SubjectAccessReview calls are
// retried: the API server's default for its own webhooks.
func webhookBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
}
