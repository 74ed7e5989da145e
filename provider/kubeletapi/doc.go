// Package kubeletapi is the kubelet API of the provider: the HTTPS server
// the API server calls for kubectl logs, exec and attach, and that metrics
// collectors scrape. One server serves every ECU node of a process (a
// vehicle has 25 to 70): the nodes advertise the same address and port, and
// the server tells requests apart by the pod they name, through a Backend.
//
// The routes and the exec, attach and log protocols are virtual-kubelet's
// node/api. Its exec speaks SPDY (remotecommand up to v5) and, over
// websocket, only the older channel.k8s.io and v4.channel.k8s.io
// protocols, not v5.channel.k8s.io. kubectl speaks websocket v5 to the API
// server, which speaks SPDY to a kubelet, so kubectl exec works; a client
// calling the server directly uses SPDY. /metrics/resource, which
// metrics-server scrapes, is not served: ECU pods use no cluster CPU or
// memory. The package adds what a kubelet puts around the routes:
//
//   - TLS 1.2 or later, with a serving certificate from files (read again
//     when they change) or requested through a CertificateSigningRequest
//     for system:node:<NodeName> with the signer kubernetes.io/kubelet-serving,
//     kept in a directory and renewed before it expires. Nothing approves
//     kubelet serving certificates automatically: until someone runs the
//     `kubectl certificate approve` command the log prints, and a signer
//     (kube-controller-manager) signs, the server does not serve.
//   - Authentication and authorization as the kubelet's webhook mode:
//     client certificates verified against a CA file, bearer tokens through
//     TokenReview, then a SubjectAccessReview on the resource nodes with the
//     kubelet's subresources: stats for /stats, metrics for /metrics, log
//     for /logs, pods or else proxy for /pods, proxy for the rest
//     (/containerLogs, /exec, /attach, /portForward). An unauthenticated
//     request gets 401, an unauthorized one 403 naming the user, the verb
//     and the subresource. /healthz alone is open. Answers are cached as
//     the kubelet caches them (a token 2 min, an allowed request 5 min, a
//     denied one 30 s), so an RBAC change takes up to that long to show.
//     Insecure turns authentication and authorization off, TLS stays; it
//     is for a demo.
//
// # One server, many nodes
//
// The API server reaches node N at the address N advertises; here every
// node advertises the same one, and nothing in the request (the Host is
// that shared address) says which node the caller meant. So the server
// answers for the process:
//
//   - A request about a pod (logs, exec) is authorized against the node the
//     pod is bound to, so RBAC rules limited to some nodes by resourceNames
//     still hold, and dispatched by namespace and name.
//   - /pods lists every pod the provider holds, on all its nodes.
//   - /stats/summary returns one summary of all the process's ECU pods:
//     whichever node a caller asked for (a metrics collector walks
//     /api/v1/nodes/N/proxy/stats/summary node by node), it receives the
//     same summary. Splitting it per node would need the node name the
//     request does not carry; a collector that sums over nodes counts each
//     pod once per node, which for ECU pods (no CPU or memory of the
//     cluster's) is harmless.
//   - Requests about the whole process (/stats, /metrics, /pods) and about
//     a pod the provider does not hold are authorized against no node in
//     particular, which only a rule for every node allows
//     (system:kubelet-api-admin, metrics collectors' roles).
//
// The API server refuses to proxy /api/v1/nodes/N/proxy/... to a node whose
// address is not a global unicast address (loopback, link-local), while
// pods/log and pods/exec go through: a provider on 127.0.0.1 gets kubectl
// logs and exec but not kubectl get --raw .../nodes/N/proxy/stats/summary.
package kubeletapi
