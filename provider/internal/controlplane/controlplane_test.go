package controlplane_test

import (
	"context"
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecu-kubelet/ecu-kubelet/provider/internal/controlplane"
)

// TestIntegrationControlPlane runs one control plane through what the
// provider's tests need of it. One start serves every step: a start is
// most of the test's time.
func TestIntegrationControlPlane(t *testing.T) {
	cp := controlplane.Start(t)
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
