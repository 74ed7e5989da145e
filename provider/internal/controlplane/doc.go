// Package controlplane runs a real Kubernetes control plane, etcd and
// kube-apiserver, on loopback ports for tests and the demo, so that the
// provider is tested against the API server it will meet in a cluster and
// never against a fake clientset.
//
// The programs are built from the Go module proxy by two tools modules of
// their own, tools/kube (kube-apiserver and kubectl, the minor version of
// the main module's k8s.io/client-go) and tools/etcd, so that the main
// module's go.mod never carries Kubernetes' dependency graph. EnsureBinaries
// builds them once per version into the user's cache directory
// (ecu-kubelet/controlplane/<module>-<hash of its go.mod and go.sum>) and
// reuses them afterwards; .ci/install-controlplane.sh does that ahead of the
// tests, and Start does it on demand when nobody did.
//
// Start gives a test its own control plane: etcd with its data in the
// test's temporary directory, kube-apiserver with certificates and
// service-account keys generated for the test, an administrator's
// kubeconfig, and a client. Restart stops and starts the API server alone,
// keeping its port, certificates and etcd's data, as an API server upgrade
// or crash would. The processes are stopped when the test ends, even when
// it panics, and die with the test process when it is killed (Linux).
//
// The control plane has no kube-controller-manager and no kube-scheduler:
// nothing marks a node NotReady when its lease expires, nothing evicts or
// garbage-collects, no namespace finishes terminating and no
// CertificateSigningRequest is signed, and a pod runs on a node only when
// its spec names it. Tests that need one of those do it themselves.
//
// It must never listen on anything but 127.0.0.1, and never leave a process
// behind.
package controlplane
