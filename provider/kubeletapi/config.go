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
//
// Errors map to HTTP statuses as virtual-kubelet's node/api maps them: an
// error for which errdefs.IsNotFound holds (package
// github.com/virtual-kubelet/virtual-kubelet/errdefs) answers 404, one for
// which errdefs.IsInvalidInput holds 400, any other 500.
type Backend interface {
	// Pods returns every pod the provider holds. The server also reads
	// each pod's spec.nodeName from it to authorize a request about that
	// pod against its node.
	Pods(ctx context.Context) ([]*corev1.Pod, error)
	// Logs opens the UDS transcript of a pod's flash.
	Logs(ctx context.Context, namespace, pod, container string, opts api.ContainerLogOpts) (io.ReadCloser, error)
	// Exec runs one allow-listed diagnostic command against the pod's ECU.
	// A command that ran and failed, or was refused, should say why on
	// attach.Stderr() (nil when the client asked for no stderr) and return
	// a k8s.io/utils/exec.CodeExitError: the client shows "command
	// terminated with exit code N" and drops the error's message. Any
	// other error reaches the client as an internal error. Exec returns
	// when the command is done; ctx ends when the client goes away or the
	// server shuts down.
	Exec(ctx context.Context, namespace, pod, container string, cmd []string, attach api.AttachIO) error
	// StatsSummary reports the process's nodes and pods (see the package
	// documentation for why one summary covers every node).
	StatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error)
}

// Config configures the kubelet API server.
type Config struct {
	// Addr is the listen address, ":10250". Every ECU node of the process
	// advertises it.
	Addr string
	// CertFile and KeyFile are the serving certificate and key, read again
	// when either file changes. Without them the server requests a
	// certificate through a CertificateSigningRequest (signer
	// kubernetes.io/kubelet-serving), waits for its approval, and renews it
	// before it expires.
	CertFile, KeyFile string
	// CertDir keeps a certificate obtained through a CSR across restarts;
	// required without CertFile.
	CertDir string
	// ServingNames are the DNS names and IP addresses the certificate
	// requested through a CSR covers, at least one: the address the nodes
	// advertise.
	ServingNames []string
	// ClientCAFile verifies client certificates (the API server's kubelet
	// client certificate among them); required unless Insecure. It is read
	// again when it changes.
	ClientCAFile string
	// NodeName is the identity the CSR asks for (system:node:<NodeName>).
	// Authorization names the node of the pod a request is about, or no
	// node for requests about the whole process (see the package
	// documentation).
	NodeName string
	// Client serves TokenReview, SubjectAccessReview and CSRs.
	Client kubernetes.Interface
	// Insecure turns webhook authentication and authorization off: anyone
	// who reaches the port may read logs and run diagnostics. It is for
	// the demo only and never the default.
	Insecure bool

	// Backend answers the requests; Metrics is served at /metrics (nil
	// serves no /metrics).
	Backend Backend
	Metrics prometheus.Gatherer
	// Log receives the server's log; nil discards it.
	Log *zap.Logger
}
