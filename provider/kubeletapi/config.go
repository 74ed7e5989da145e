package kubeletapi

import (
	"context"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Backend is what the server asks of the provider. Pods are named by
// namespace and name across every ECU node of the process: the server
// dispatches by pod, not by node.
type Backend interface {
	// Pods returns every pod the provider holds.
	Pods(ctx context.Context) ([]*corev1.Pod, error)
	// Logs opens the UDS transcript of a pod's flash.
	Logs(ctx context.Context, namespace, pod, container string, opts api.ContainerLogOpts) (io.ReadCloser, error)
	// Exec runs one allow-listed diagnostic command against the pod's ECU.
	Exec(ctx context.Context, namespace, pod, container string, cmd []string, attach api.AttachIO) error
	// StatsSummary reports the process's nodes and pods.
	StatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error)
}

// Config configures the kubelet API server.
type Config struct {
	// Addr is the listen address, ":10250".
	Addr string
	// CertFile and KeyFile are the serving certificate and key. Without
	// them the server requests one through a CertificateSigningRequest
	// (signer kubernetes.io/kubelet-serving) and waits for its approval.
	CertFile, KeyFile string
	// CertDir keeps a certificate obtained through a CSR across restarts.
	CertDir string
	// ServingNames are the DNS names and IP addresses the certificate
	// requested through a CSR covers.
	ServingNames []string
	// ClientCAFile verifies client certificates (the API server's kubelet
	// client certificate).
	ClientCAFile string
	// NodeName is the identity of the CSR (system:node:<NodeName>) and of
	// authorization checks.
	NodeName string
	// Client serves TokenReview, SubjectAccessReview and CSRs.
	Client kubernetes.Interface
	// Insecure turns webhook authentication and authorization off
	// (anonymous access); it is never the default.
	Insecure bool

	// Backend answers the requests; Metrics is served at /metrics.
	Backend Backend
	Metrics prometheus.Gatherer
	Log     *zap.Logger
}
