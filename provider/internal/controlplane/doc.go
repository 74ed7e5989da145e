// Package controlplane runs a real Kubernetes control plane, etcd and
// kube-apiserver, and kube-controller-manager when asked for, on loopback
// ports for tests and the demo, so that the provider is tested against the
// API server it will meet in a cluster and never against a fake clientset.
//
// The programs are built from the Go module proxy by two tools modules of
// their own, tools/kube (kube-apiserver, kube-controller-manager and
// kubectl, the minor version of the main module's k8s.io/client-go) and
// tools/etcd, so that the main module's go.mod never carries Kubernetes'
// dependency graph. EnsureBinaries builds them once per version into the
// user's cache directory (ecu-kubelet/controlplane/<module>-<hash of its
// go.mod and go.sum>) and reuses them afterwards;
// .ci/install-controlplane.sh does that ahead of the tests, and Start does
// it on demand when nobody did.
//
// Start gives a test its own control plane: etcd with its data in the
// test's temporary directory, kube-apiserver with certificates and
// service-account keys generated for the test, an administrator's
// kubeconfig, and a client. Restart stops and starts the API server alone,
// keeping its port, certificates and etcd's data, as an API server upgrade
// or crash would. The processes are stopped when the test ends, even when
// it panics, and die with the test process when it is killed (Linux).
//
// By default there is no kube-controller-manager and no kube-scheduler:
// nothing marks a node NotReady when its lease expires, nothing evicts,
// no CertificateSigningRequest is signed, and a pod runs on a node only
// when its spec names it. A test that needs the first ones starts the
// control plane with WithControllerManager, which adds
// kube-controller-manager with three controllers (a second or so more to
// start):
//
//   - node lifecycle: a node whose lease goes unrenewed for
//     NodeMonitorGracePeriod becomes Unknown and gets the
//     node.kubernetes.io/unreachable taints, NoSchedule and NoExecute;
//   - taint eviction: pods that do not tolerate a NoExecute taint are
//     deleted, those with tolerationSeconds when it runs out; the API
//     server gives every pod that says nothing about not-ready and
//     unreachable tolerations of DefaultToleration;
//   - certificate signing: approved CertificateSigningRequests for the
//     kubernetes.io/kubelet-serving signer (and the other kubernetes.io
//     signers) get a certificate from the control plane's CA, CAFile.
//     Nothing approves them: that stays with the test, as it stays with a
//     cluster's administrator.
//
// For example, a test that wants to see a node go Unknown within seconds:
//
//	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{
//		NodeMonitorPeriod:      time.Second,
//		NodeMonitorGracePeriod: 5 * time.Second,
//		DefaultToleration:      5 * time.Second,
//	}))
//
// Two things of the node lifecycle controller surprise: it taints nothing
// NoExecute while every node of the cluster is not Ready (it takes that for
// a control-plane outage), so such a test needs one more node whose lease
// it renews; and it counts nodes per zone (the topology.kubernetes.io/zone
// label), tainting nothing NoExecute in a zone of at most 50 nodes of which
// more than two and at least 55% are not Ready.
//
// The API server proxies pod logs, exec, attach and port-forward to the
// node's InternalIP (then Hostname) and its daemon endpoint's port, even
// when that is 127.0.0.1, presenting the client certificate of
// KubeletClientFiles, signed by CAFile, and without verifying the kubelet's
// serving certificate. It refuses the nodes/NAME/proxy path
// (/stats/summary, /metrics through the API server) to an address that
// is not global unicast, loopback included, with 400 "address not
// allowed".
//
// It must never listen on anything but 127.0.0.1, and never leave a process
// behind.
package controlplane
