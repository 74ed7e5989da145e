package kubeletapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// guard authenticates and authorizes every request before it reaches the
// handlers, as the kubelet does in webhook mode.
type guard struct {
	authn authenticator.Request
	authz authorizer.Authorizer
	// nodeOf names the node of a pod the provider holds, "" when it holds
	// no such pod.
	nodeOf func(ctx context.Context, namespace, name string) string
	log    *zap.Logger
}

func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, ok, err := g.authn.AuthenticateRequest(r)
		if err != nil || !ok {
			// The reason stays in the log: telling a stranger why its
			// credentials failed helps only the stranger.
			g.log.Debug("kubelet API: unauthenticated request", zap.String("path", r.URL.Path), zap.Error(err))
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		u := resp.User
		scope := scopeOf(r)
		node := ""
		if scope.pod != "" {
			node = g.nodeOf(r.Context(), scope.namespace, scope.pod)
		}
		attrs := attributes(u, r, scope, node)
		var reasons []string
		for _, a := range attrs {
			decision, reason, err := g.authz.Authorize(r.Context(), a)
			if err != nil {
				g.log.Warn("kubelet API: authorization failed", zap.String("user", u.GetName()), zap.String("path", r.URL.Path), zap.Error(err))
				http.Error(w, fmt.Sprintf("Authorization error (%s): %v", describe(u, attrs), err), http.StatusInternalServerError)
				return
			}
			if decision == authorizer.DecisionAllow {
				next.ServeHTTP(w, r)
				return
			}
			if reason != "" {
				reasons = append(reasons, reason)
			}
		}
		g.log.Info("kubelet API: forbidden", zap.String("user", u.GetName()), zap.String("path", r.URL.Path), zap.Strings("reasons", reasons))
		http.Error(w, fmt.Sprintf("Forbidden (%s)", describe(u, attrs)), http.StatusForbidden)
	})
}

// describe names the user and what was asked for, as the kubelet's 403
// does, so that whoever reads it knows which RBAC rule is missing.
func describe(u user.Info, attrs []authorizer.AttributesRecord) string {
	subresources := make([]string, len(attrs))
	for i, a := range attrs {
		subresources[i] = a.Subresource
	}
	node := attrs[0].Name
	if node == "" {
		node = "(every node)"
	}
	return fmt.Sprintf("user=%s, verb=%s, resource=nodes, subresource(s)=%v, node=%s",
		u.GetName(), attrs[0].Verb, subresources, node)
}

// scope is what a request is about: which nodes subresources authorize it
// and, for a request about one pod, that pod.
type scope struct {
	subresources   []string
	namespace, pod string
}

// Paths whose two segments after the first name a pod's namespace and
// name, as the kubelet's routes do.
var podPaths = []string{"/containerLogs", "/exec", "/attach", "/portForward", "/run"}

// scopeOf maps a request to the kubelet's authorization attributes: /stats
// to nodes/stats, /metrics to nodes/metrics, /logs to nodes/log, /pods and
// /runningpods to nodes/pods or else nodes/proxy (the kubelet's fine-grained
// authorization, on by default since 1.33), everything else to nodes/proxy.
func scopeOf(r *http.Request) scope {
	p := r.URL.Path
	var s scope
	switch {
	case isSubpath(p, "/pods"), isSubpath(p, "/runningpods"):
		s.subresources = []string{"pods", "proxy"}
	case isSubpath(p, "/stats"):
		s.subresources = []string{"stats"}
	case isSubpath(p, "/metrics"):
		s.subresources = []string{"metrics"}
	case isSubpath(p, "/logs"):
		// "log", as pods/log.
		s.subresources = []string{"log"}
	case isSubpath(p, "/checkpoint"):
		s.subresources = []string{"checkpoint"}
	default:
		s.subresources = []string{"proxy"}
	}
	for _, prefix := range podPaths {
		if isSubpath(p, prefix) {
			parts := strings.SplitN(strings.TrimPrefix(p, prefix+"/"), "/", 3)
			if len(parts) >= 2 && parts[0] != "" && parts[1] != "" {
				s.namespace, s.pod = parts[0], parts[1]
			}
			break
		}
	}
	return s
}

// isSubpath reports whether path is prefix or below it.
func isSubpath(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// attributes are the SubjectAccessReviews a request needs, one of which
// must allow it. A request about a pod names the pod's node, so that an
// RBAC rule limited to some nodes by resourceNames works; one about the
// whole process (/stats, /metrics, /pods) or about a pod the provider does
// not hold names no node, which only a rule for every node allows.
func attributes(u user.Info, r *http.Request, s scope, node string) []authorizer.AttributesRecord {
	attrs := make([]authorizer.AttributesRecord, len(s.subresources))
	for i, sub := range s.subresources {
		attrs[i] = authorizer.AttributesRecord{
			User:            u,
			Verb:            verbOf(r.Method),
			APIVersion:      "v1",
			Resource:        "nodes",
			Subresource:     sub,
			Name:            node,
			ResourceRequest: true,
			Path:            r.URL.Path,
		}
	}
	return attrs
}

// verbOf maps an HTTP method to an API verb as the kubelet does; any other
// method has no verb, which no rule allows.
func verbOf(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodGet:
		return "get"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return ""
}
