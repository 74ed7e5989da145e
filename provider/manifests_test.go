package provider

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/ecu-kubelet/ecu-kubelet/flash/vehicle"
	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
	"github.com/ecu-kubelet/ecu-kubelet/provider/kubeletapi"
)

// manifestsDir is deploy/kubernetes, from this package's directory.
const manifestsDir = "../deploy/kubernetes"

// kustomizations are the kustomize directories of deploy/kubernetes and
// what their rendered provider must look like: the URLs of its vehicle's
// buses, and whether it shares the host's network namespace (SocketCAN
// interfaces belong to one; socketcand is TCP).
type kustomization struct {
	dir         string
	busURL      *regexp.Regexp
	hostNetwork bool
}

var kustomizations = []kustomization{
	{"base", regexp.MustCompile(`^socketcan://can[0-9]+$`), true},
	{"overlays/vcan", regexp.MustCompile(`^socketcan://vcan[0-9]+$`), true},
	{"overlays/socketcand", regexp.MustCompile(`^socketcand://[^/]+:[0-9]+/[a-z0-9-]+$`), false},
	{"overlays/k3s-gateway", regexp.MustCompile(`^socketcan://can[0-9]+$`), true},
}

// firmwareManifests are the example firmware workloads, applied to the
// namespace default.
func firmwareManifests(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestsDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pods, err := filepath.Glob("../deploy/examples/*-pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, pods...)
	if len(files) < 3 {
		t.Fatalf("example firmware manifests: %v, want the pod, the Deployment and the DaemonSet", files)
	}
	return files
}

// kubectlCmd runs the control plane's kubectl against cp.
type kubectlCmd struct {
	path, kubeconfig string
}

func newKubectl(t *testing.T, cp *controlplane.ControlPlane) kubectlCmd {
	t.Helper()
	bins, err := controlplane.EnsureBinaries(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err) // Start built them a moment ago
	}
	return kubectlCmd{path: bins.Kubectl, kubeconfig: cp.Kubeconfig()}
}

// run runs kubectl with args and stdin, and fails t with its output when
// it fails.
func (k kubectlCmd) run(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	out, err := k.try(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// try runs kubectl with args and stdin; the error has its output.
func (k kubectlCmd) try(stdin []byte, args ...string) ([]byte, error) {
	if k.kubeconfig != "" {
		args = append([]string{"--kubeconfig", k.kubeconfig}, args...)
	}
	cmd := exec.Command(k.path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%w\n%s%s", err, out, stderr.Bytes())
	}
	return out, nil
}

// render renders a kustomization with kubectl's built-in kustomize.
func (k kubectlCmd) render(t *testing.T, dir string) []byte {
	t.Helper()
	return k.run(t, nil, "kustomize", filepath.Join(manifestsDir, dir))
}

// decodeAll decodes every object of a multi-document YAML stream into its
// typed form.
func decodeAll(t *testing.T, data []byte) []runtime.Object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}

func objectsOf[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestManifestsKustomizationsAreAllTested: every kustomization under
// deploy/kubernetes is one of those the tests render and apply.
func TestManifestsKustomizationsAreAllTested(t *testing.T) {
	var found []string
	err := filepath.WalkDir(manifestsDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "kustomization.yaml" {
			rel, err := filepath.Rel(manifestsDir, filepath.Dir(path))
			found = append(found, filepath.ToSlash(rel))
			return err
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range found {
		if !slices.ContainsFunc(kustomizations, func(k kustomization) bool { return k.dir == dir }) {
			t.Errorf("deploy/kubernetes/%s is a kustomization the tests do not know: add it to kustomizations", dir)
		}
	}
}

// TestManifestsApplyServerSide renders every kustomization and applies it,
// and every example firmware workload, to the real API server with a
// server-side dry run and strict field validation: the API server's
// defaulting, validation and admission accept every object. Then it checks
// what the API server cannot: the provider's workload is safe to run and
// consistent with the image and the vehicle config, and every firmware pod
// tolerates what docs/provider.md says it must.
func TestManifestsApplyServerSide(t *testing.T) {
	cp := controlplane.Start(t)
	k := newKubectl(t, cp)
	// Objects in a namespace are only dry-run where it exists.
	if _, err := cp.Client().CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ecu-kubelet"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The dry run is strict: a misspelt field fails it.
	typo := []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndatta: {a: b}\n")
	if _, err := k.try(typo, "apply", "--dry-run=server", "--validate=strict", "-n", "default", "-f", "-"); err == nil {
		t.Fatal("a config map with the unknown field datta passed the dry run: it validates nothing")
	}
	uid := imageUser(t)
	for _, kz := range kustomizations {
		t.Run(strings.ReplaceAll(kz.dir, "/", "-"), func(t *testing.T) {
			rendered := k.render(t, kz.dir)
			out := k.run(t, rendered, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			t.Logf("%s", out)
			checkProviderWorkload(t, decodeAll(t, rendered), uid, kz.busURL, kz.hostNetwork)
		})
	}
	for _, file := range firmwareManifests(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out := k.run(t, data, "apply", "--dry-run=server", "--validate=strict", "-n", "default", "-f", "-")
			t.Logf("%s", out)
			for _, obj := range decodeAll(t, data) {
				checkFirmwareWorkload(t, obj)
			}
		})
	}
}

// TestManifestsRunArgumentsAreAccepted runs the real ecu-kubelet with the
// arguments of every kustomization's Deployment, the downward API's
// variables filled in and --config pointed at the rendered vehicle config:
// every flag exists and every value passes the command's own checks, up to
// the first file only the pod has (the client CA). The API server's dry
// run cannot see a misspelt flag, which would crash-loop the provider.
func TestManifestsRunArgumentsAreAccepted(t *testing.T) {
	bins, err := controlplane.EnsureBinaries(context.Background(), t.Logf)
	switch {
	case errors.Is(err, controlplane.ErrUnavailable) && os.Getenv("CI") != "true":
		t.Skipf("%v (kubectl renders the manifests)", err)
	case err != nil:
		t.Fatal(err)
	}
	k := kubectlCmd{path: bins.Kubectl}
	bin := buildProvider(t)
	for _, kz := range kustomizations {
		t.Run(strings.ReplaceAll(kz.dir, "/", "-"), func(t *testing.T) {
			objs := decodeAll(t, k.render(t, kz.dir))
			c := objectsOf[*appsv1.Deployment](objs)[0].Spec.Template.Spec.Containers[0]
			config := filepath.Join(t.TempDir(), "vehicle.yaml")
			var args []string
			for _, a := range c.Args {
				switch name, _, _ := strings.Cut(a, "="); name {
				case "--config":
					cm := objectsOf[*corev1.ConfigMap](objs)[0]
					if err := os.WriteFile(config, []byte(cm.Data["vehicle.yaml"]), 0o600); err != nil {
						t.Fatal(err)
					}
					a = "--config=" + config
				case "--state-dir", "--cert-dir":
					a = name + "=" + t.TempDir()
				}
				args = append(args, strings.ReplaceAll(a, "$(NODE_IP)", "192.0.2.1"))
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = []string{"HOME=" + t.TempDir()} // no KUBECONFIG of the machine's
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), "--client-ca-file") || !strings.Contains(string(out), "no such file") {
				t.Errorf("ecu-kubelet %s: %v\n%s\nwant it to stop at the missing --client-ca-file, having accepted everything before", strings.Join(args, " "), err, out)
			}
		})
	}
}

// imageUser is the numeric user deploy/Dockerfile's images run as.
func imageUser(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^USER ([0-9]+):[0-9]+$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("deploy/Dockerfile has no numeric USER uid:gid")
	}
	var uid int64
	fmt.Sscan(string(m[1]), &uid)
	return uid
}

// checkProviderWorkload checks the provider's Deployment of one rendered
// kustomization.
func checkProviderWorkload(t *testing.T, objs []runtime.Object, uid int64, busURL *regexp.Regexp, hostNetwork bool) {
	t.Helper()
	deps := objectsOf[*appsv1.Deployment](objs)
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want the provider's", len(deps))
	}
	d := deps[0]
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %v: two providers of one vehicle must never run", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q: Recreate, so that the old provider stops before the new one starts", d.Spec.Strategy.Type)
	}
	spec := d.Spec.Template.Spec
	if spec.HostNetwork != hostNetwork {
		t.Errorf("hostNetwork %v, want %v for these buses", spec.HostNetwork, hostNetwork)
	}
	if spec.HostNetwork && spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("host network with dnsPolicy %q: the cluster's DNS needs ClusterFirstWithHostNet", spec.DNSPolicy)
	}
	if sas := objectsOf[*corev1.ServiceAccount](objs); len(sas) != 1 || spec.ServiceAccountName != sas[0].Name {
		t.Errorf("serviceAccountName %q is not the rendered service account", spec.ServiceAccountName)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != uid ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser %d (the image's USER) and seccomp RuntimeDefault", psc, uid)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil ||
		!*sc.ReadOnlyRootFilesystem || (sc.Privileged != nil && *sc.Privileged) || sc.Capabilities == nil ||
		!slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root, every capability dropped and none added", sc)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want a memory request and limit", c.Resources)
	}

	args := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, _ := strings.Cut(a, "=")
		args[name] = value
	}
	if c.Args[0] != "run" {
		t.Errorf("args %q do not start with run", c.Args)
	}
	mounted := func(path string) *corev1.Volume {
		for _, m := range c.VolumeMounts {
			if path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/") {
				for i := range spec.Volumes {
					if spec.Volumes[i].Name == m.Name {
						return &spec.Volumes[i]
					}
				}
			}
		}
		return nil
	}
	for _, flag := range []string{"--config", "--state-dir", "--client-ca-file", "--cert-dir"} {
		if args[flag] == "" || mounted(args[flag]) == nil {
			t.Errorf("%s=%q is not on a volume", flag, args[flag])
		}
	}
	if v := mounted(args["--state-dir"]); v != nil && v.HostPath == nil && v.PersistentVolumeClaim == nil {
		t.Errorf("the state directory is on volume %+v: it must outlive the pod (hostPath or a claim), or interrupted flashes cannot resume", v.VolumeSource)
	}
	if !strings.HasPrefix(args["--cert-dir"], args["--state-dir"]+"/") {
		t.Errorf("--cert-dir %q is not in --state-dir %q: the kubelet API's certificate would be requested again at every start", args["--cert-dir"], args["--state-dir"])
	}
	if args["--node-address"] != "$(NODE_IP)" || !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == map[bool]string{true: "status.hostIP", false: "status.podIP"}[hostNetwork]
	}) {
		t.Errorf("--node-address %q and env %+v: want the address the kubelet API listens on, from the downward API", args["--node-address"], c.Env)
	}
	if port := args["--kubelet-port"]; port == "" || port == "10250" || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return fmt.Sprint(p.ContainerPort) == port
	}) {
		t.Errorf("--kubelet-port %q, ports %+v: want a declared port other than the real kubelet's 10250", port, c.Ports)
	}

	// The vehicle config the provider reads.
	cv := mounted(args["--config"])
	if cv == nil || cv.ConfigMap == nil {
		t.Fatalf("--config %q is not in a config map", args["--config"])
	}
	var config *corev1.ConfigMap
	for _, cm := range objectsOf[*corev1.ConfigMap](objs) {
		if cm.Name == cv.ConfigMap.Name {
			config = cm
		}
	}
	if config == nil {
		t.Fatalf("the config map %s is not rendered", cv.ConfigMap.Name)
	}
	doc, ok := config.Data[filepath.Base(args["--config"])]
	if !ok {
		t.Fatalf("config map %s has no %s", config.Name, filepath.Base(args["--config"]))
	}
	v, err := vehicle.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("the vehicle config: %v", err)
	}
	for _, b := range v.Buses {
		if !busURL.MatchString(b.URL) {
			t.Errorf("bus %s URL %q does not match %v", b.Name, b.URL, busURL)
		}
	}
}

// checkFirmwareWorkload checks that a firmware workload's pods tolerate
// the ECU taint and an offline vehicle for ever (docs/provider.md), and
// that a controller of one ECU never runs two pods.
func checkFirmwareWorkload(t *testing.T, obj runtime.Object) {
	t.Helper()
	var spec corev1.PodSpec
	switch o := obj.(type) {
	case *corev1.Pod:
		spec = o.Spec
	case *appsv1.Deployment:
		spec = o.Spec.Template.Spec
		if o.Spec.Replicas == nil || *o.Spec.Replicas != 1 || o.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("Deployment %s: replicas %v, strategy %q; an ECU takes one pod: want 1 and Recreate", o.Name, o.Spec.Replicas, o.Spec.Strategy.Type)
		}
		for _, label := range []string{LabelVehicle, LabelECU} {
			if spec.NodeSelector[label] == "" {
				t.Errorf("Deployment %s: no nodeSelector on %s; want one ECU of one vehicle", o.Name, label)
			}
		}
	case *appsv1.DaemonSet:
		spec = o.Spec.Template.Spec
		ru := o.Spec.UpdateStrategy.RollingUpdate
		if o.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
			t.Errorf("DaemonSet %s: update strategy %+v; want RollingUpdate with maxUnavailable 1, one ECU at a time", o.Name, o.Spec.UpdateStrategy)
		}
		if spec.NodeSelector[LabelHardwareID] == "" {
			t.Errorf("DaemonSet %s: no nodeSelector on %s", o.Name, LabelHardwareID)
		}
	default:
		t.Fatalf("%T is not a firmware workload", obj)
	}
	want := []corev1.Toleration{
		{Key: TaintKey, Operator: corev1.TolerationOpEqual, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	}
	for _, w := range want {
		if !slices.ContainsFunc(spec.Tolerations, func(got corev1.Toleration) bool {
			return got.Key == w.Key && got.Operator == w.Operator && got.Value == w.Value && got.Effect == w.Effect && got.TolerationSeconds == nil
		}) {
			t.Errorf("%T: tolerations %+v lack %+v without tolerationSeconds", obj, spec.Tolerations, w)
		}
	}
}

// providerRights are the (API group, resource, verb) triples the provider
// uses (deploy/kubernetes/base/rbac.yaml says why each), and so exactly
// what its roles may grant.
var providerRights = []string{
	"/nodes/get", "/nodes/create", "/nodes/status/patch",
	"/pods/list", "/pods/watch", "/pods/delete", "/pods/status/update",
	"/events/create", "/events/patch",
	"/secrets/get",
	"certificates.k8s.io/certificatesigningrequests/create", "certificates.k8s.io/certificatesigningrequests/get",
	"certificates.k8s.io/certificatesigningrequests/list", "certificates.k8s.io/certificatesigningrequests/watch",
	"authentication.k8s.io/tokenreviews/create",
	"authorization.k8s.io/subjectaccessreviews/create",
	// In kube-node-lease only.
	"coordination.k8s.io/leases/get", "coordination.k8s.io/leases/create", "coordination.k8s.io/leases/update",
}

// TestManifestsRBACGrantsOnlyWhatTheProviderUses reads the base's roles:
// they grant exactly providerRights, without wildcards or resource names,
// and the leases only in kube-node-lease.
func TestManifestsRBACGrantsOnlyWhatTheProviderUses(t *testing.T) {
	bins, err := controlplane.EnsureBinaries(context.Background(), t.Logf)
	switch {
	case errors.Is(err, controlplane.ErrUnavailable) && os.Getenv("CI") != "true":
		t.Skipf("%v (kubectl renders the manifests)", err)
	case err != nil:
		t.Fatal(err)
	}
	objs := decodeAll(t, kubectlCmd{path: bins.Kubectl}.run(t, nil, "kustomize", filepath.Join(manifestsDir, "base")))
	var granted []string
	rules := func(where string, rs []rbacv1.PolicyRule) {
		for _, r := range rs {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s: rule %+v has resource names or URLs, which the provider does not use", where, r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if g == "*" || res == "*" || v == "*" {
							t.Errorf("%s: wildcard in rule %+v", where, r)
						}
						granted = append(granted, g+"/"+res+"/"+v)
					}
				}
			}
		}
	}
	for _, cr := range objectsOf[*rbacv1.ClusterRole](objs) {
		if cr.AggregationRule != nil {
			t.Errorf("ClusterRole %s aggregates other roles", cr.Name)
		}
		rules("ClusterRole "+cr.Name, cr.Rules)
		for _, r := range cr.Rules {
			if slices.Contains(r.Resources, "leases") {
				t.Errorf("ClusterRole %s grants leases everywhere; the provider's are in kube-node-lease", cr.Name)
			}
		}
	}
	for _, r := range objectsOf[*rbacv1.Role](objs) {
		if r.Namespace != corev1.NamespaceNodeLease {
			t.Errorf("Role %s/%s: the provider needs a Role in %s only", r.Namespace, r.Name, corev1.NamespaceNodeLease)
		}
		rules("Role "+r.Name, r.Rules)
	}
	slices.Sort(granted)
	want := slices.Sorted(slices.Values(providerRights))
	if !slices.Equal(granted, want) {
		t.Errorf("the roles grant\n  %v\nwant exactly\n  %v\n(a new need goes into base/rbac.yaml with its reason, docs/security.md and providerRights)", granted, want)
	}
	for _, b := range objectsOf[*rbacv1.ClusterRoleBinding](objs) {
		if b.RoleRef.Kind != "ClusterRole" || len(b.Subjects) != 1 || b.Subjects[0].Kind != rbacv1.ServiceAccountKind {
			t.Errorf("ClusterRoleBinding %s binds %+v to %+v: want the one service account", b.Name, b.RoleRef, b.Subjects)
		}
	}
}

// forbiddenRecorder records every request the API server refused with 403.
type forbiddenRecorder struct {
	mu       sync.Mutex
	refused  []string
	delegate http.RoundTripper
}

func (f *forbiddenRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.delegate.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusForbidden {
		f.mu.Lock()
		f.refused = append(f.refused, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
		f.mu.Unlock()
	}
	return resp, err
}

func (f *forbiddenRecorder) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.refused)
}

// TestManifestsProviderRunsWithOnlyItsRBAC applies the base's objects for
// real, and runs a provider as its service account, authenticated by a
// token from the TokenRequest API as in a pod: with nothing but the roles
// of deploy/kubernetes/base it registers its nodes and their leases,
// obtains the kubelet API's certificate through a CSR (approved by the
// administrator), reads a pod's pull secret, flashes the pod to Running
// with events, serves its logs through the API server (subject access
// review) and a bearer token (token review), and lets a deleted pod go.
// Every request the API server refuses fails the test.
func TestManifestsProviderRunsWithOnlyItsRBAC(t *testing.T) {
	cp := controlplane.Start(t, controlplane.WithControllerManager(controlplane.ControllerManager{}))
	k := newKubectl(t, cp)
	k.run(t, k.render(t, "base"), "apply", "-f", "-")
	ctx := context.Background()
	admin := cp.Client()

	objs := decodeAll(t, k.render(t, "base"))
	sas := objectsOf[*corev1.ServiceAccount](objs)
	if len(sas) != 1 {
		t.Fatalf("%d service accounts in the base, want 1", len(sas))
	}
	sa := sas[0]
	tok, err := admin.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	config := cp.RESTConfig()
	config.CertData, config.KeyData = nil, nil
	config.BearerToken = tok.Status.Token
	refused := &forbiddenRecorder{}
	config.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		refused.delegate = rt
		return refused
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", sa.Namespace, sa.Name)
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != user {
		t.Fatalf("the token authenticates as %+v (%v), want %s", review, err, user)
	}

	// Rights the provider must not have.
	for _, attrs := range []authorizationv1.ResourceAttributes{
		{Verb: "list", Resource: "secrets", Namespace: "default"},
		{Verb: "watch", Resource: "secrets"},
		{Verb: "list", Resource: "configmaps"},
		{Verb: "create", Resource: "pods", Namespace: "default"},
		{Verb: "update", Resource: "pods", Namespace: "default"},
		{Verb: "update", Resource: "nodes"},
		{Verb: "delete", Resource: "nodes"},
		{Verb: "patch", Resource: "nodes"},
		{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "default"},
		{Verb: "update", Group: "certificates.k8s.io", Resource: "certificatesigningrequests", Subresource: "approval"},
		{Verb: "approve", Group: "certificates.k8s.io", Resource: "signers", Name: "kubernetes.io/kubelet-serving"},
		{Verb: "impersonate", Resource: "users"},
		{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"},
	} {
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
			ResourceAttributes: &attrs,
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			t.Errorf("the provider may %s %s/%s %s in %q; it must not", attrs.Verb, attrs.Group, attrs.Resource, attrs.Subresource, attrs.Namespace)
		}
	}

	e := newEnv(t, cp, testVehicle(t, "rbac", 1, 1, "1ms", ""))
	port := freePort(t)
	e.startProvider(Config{Client: client, KubeletPort: port, API: kubeletAPIConfig(cp, port, t.TempDir())})
	e.approveServingCSR()

	n := e.waitNode("rbac-ecu0", "Ready with its firmware version", func(n *corev1.Node) bool {
		return nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue && n.Labels[LabelFirmwareVersion] == "1.0.0"
	})
	if _, err := admin.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("node %s has no lease: %v", n.Name, err)
	}

	if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "registry"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}`)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := firmwarePod("fw", n.Name, e.artifactRef(testImage(t, "2.0.0", 2, testHW), "2.0.0"))
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	e.create(pod)
	e.waitPod("fw", "Running", running)
	evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=fw"})
	if err != nil || len(evs.Items) == 0 {
		t.Errorf("no events for the pod (%v): the provider could not record them", err)
	}

	// Logs through the API server: its kubelet client certificate, then a
	// subject access review by the provider.
	if logs, err := admin.CoreV1().Pods("default").GetLogs("fw", &corev1.PodLogOptions{}).DoRaw(ctx); err != nil || !strings.Contains(string(logs), "RequestDownload") {
		t.Errorf("logs through the API server: %v\n%s", err, logs)
	}
	// A bearer token at the kubelet API: a token review, then a subject
	// access review that refuses the provider's own account nodes/log. A
	// 401 or 500 would mean a review the provider may not create.
	if code := kubeletAPIStatus(t, cp, port, tok.Status.Token, "/containerLogs/default/fw/firmware"); code != http.StatusForbidden {
		t.Errorf("the kubelet API answered a bearer token without nodes/log rights with %d, want 403 after its token and access reviews", code)
	}

	if err := admin.CoreV1().Pods("default").Delete(ctx, "fw", metav1.DeleteOptions{GracePeriodSeconds: new(int64(1))}); err != nil {
		t.Fatal(err)
	}
	e.waitPodGone("fw")
	e.stopProvider()

	if r := refused.list(); len(r) > 0 {
		t.Errorf("the API server refused the provider %d request(s) its roles do not allow:\n  %s", len(r), strings.Join(r, "\n  "))
	}
}

// kubeletAPIConfig is a kubelet API on a loopback port whose serving
// certificate comes through a CSR kept in certDir, authenticating clients
// by the control plane's CA and webhooks.
func kubeletAPIConfig(cp *controlplane.ControlPlane, port int32, certDir string) kubeletapi.Config {
	return kubeletapi.Config{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), ClientCAFile: cp.CAFile(), CertDir: certDir, ServingNames: []string{"127.0.0.1"},
	}
}

// kubeletAPIStatus is the HTTP status of a GET of path at the kubelet API
// on the loopback port with a bearer token. The serving certificate must
// verify against the control plane's CA, which signed it from the CSR.
func kubeletAPIStatus(t *testing.T, cp *controlplane.ControlPlane, port int32, token, path string) int {
	t.Helper()
	ca, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: waitFor}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("the kubelet API: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	t.Logf("kubelet API %s: %d %s", path, resp.StatusCode, bytes.TrimSpace(body))
	return resp.StatusCode
}
