package artifact

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// LayoutPrefix starts a reference to an OCI image layout directory:
// "oci-layout:DIR:TAG" or "oci-layout:DIR@sha256:<hex>".
const LayoutPrefix = "oci-layout:"

// Options say how to reach a registry. The zero value reaches registries
// over HTTPS without credentials.
type Options struct {
	// DockerConfig is the path of a docker config.json whose "auths" give
	// credentials by registry host.
	DockerConfig string
	// PullSecret is the .dockerconfigjson of a Kubernetes pull secret
	// (type kubernetes.io/dockerconfigjson), used if DockerConfig has no
	// credentials for the host.
	PullSecret []byte
	// PlainHTTP talks HTTP instead of HTTPS; it is allowed only for a
	// loopback registry (localhost, 127.0.0.0/8, ::1), so that firmware is
	// never fetched unprotected over a network.
	PlainHTTP bool
	// Client is the HTTP client under authentication; nil means
	// http.DefaultClient.
	Client *http.Client
}

// reference is a parsed reference: a layout directory or a registry.
type reference struct {
	layoutDir string // set for a layout reference
	registry  registry.Reference
	// ref is what the target resolves: the tag or "sha256:..." digest.
	ref string
}

// parseReference parses a registry or layout reference.
func parseReference(s string) (reference, error) {
	if rest, ok := strings.CutPrefix(s, LayoutPrefix); ok {
		dir, ref, found := "", "", false
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			dir, ref, found = rest[:i], rest[i+1:], true
			if !validDigest(ref) {
				return reference{}, fmt.Errorf("artifact: reference %q: %q is not a sha256 digest", s, ref)
			}
		} else if i := strings.LastIndex(rest, ":"); i >= 0 {
			dir, ref, found = rest[:i], rest[i+1:], true
		}
		if !found || dir == "" || ref == "" {
			return reference{}, fmt.Errorf("artifact: reference %q: want oci-layout:DIR:TAG or oci-layout:DIR@sha256:<hex>", s)
		}
		return reference{layoutDir: dir, ref: ref}, nil
	}
	r, err := registry.ParseReference(s)
	if err != nil {
		return reference{}, fmt.Errorf("artifact: reference %q: %w (want HOST[:PORT]/REPO:TAG, HOST[:PORT]/REPO@sha256:<hex> or oci-layout:DIR:TAG)", s, err)
	}
	if r.Reference == "" {
		return reference{}, fmt.Errorf("artifact: reference %q names no tag or digest: add :TAG or @sha256:<hex>", s)
	}
	return reference{registry: r, ref: r.Reference}, nil
}

// source opens what a reference names for reading. A layout is opened
// read-only, so that resolving from the offline cache never writes to it
// (it may sit on a read-only file system).
func (r reference) source(ctx context.Context, opts *Options) (oras.ReadOnlyTarget, error) {
	if r.layoutDir == "" {
		return r.repository(opts)
	}
	if _, err := os.Stat(filepath.Join(r.layoutDir, ocispec.ImageLayoutFile)); err != nil {
		return nil, fmt.Errorf("artifact: %s is not an OCI image layout: %w", r.layoutDir, err)
	}
	s, err := oci.NewFromFS(ctx, os.DirFS(r.layoutDir))
	if err != nil {
		return nil, fmt.Errorf("artifact: OCI layout %s: %w", r.layoutDir, err)
	}
	return s, nil
}

// destination opens what a reference names for writing; a layout
// directory is created if need be.
func (r reference) destination(ctx context.Context, opts *Options) (oras.Target, error) {
	if r.layoutDir == "" {
		return r.repository(opts)
	}
	s, err := oci.NewWithContext(ctx, r.layoutDir)
	if err != nil {
		return nil, fmt.Errorf("artifact: OCI layout %s: %w", r.layoutDir, err)
	}
	return s, nil
}

func (r reference) repository(opts *Options) (*remote.Repository, error) {
	if opts == nil {
		opts = &Options{}
	}
	repo := &remote.Repository{Reference: r.registry}
	if opts.PlainHTTP {
		if !isLoopback(r.registry.Host()) {
			return nil, fmt.Errorf("artifact: plain HTTP to %s refused: it is allowed for loopback registries only; use HTTPS", r.registry.Registry)
		}
		repo.PlainHTTP = true
	}
	store, err := credentialStore(opts)
	if err != nil {
		return nil, err
	}
	client := &auth.Client{Client: opts.Client, Cache: auth.NewCache()}
	if store != nil {
		client.Credential = credentials.Credential(store)
	}
	repo.Client = client
	return repo, nil
}

// credentialStore combines the docker config and the pull secret, the
// docker config first.
func credentialStore(opts *Options) (credentials.Store, error) {
	var stores []credentials.Store
	if opts.DockerConfig != "" {
		if _, err := os.Stat(opts.DockerConfig); err != nil {
			return nil, fmt.Errorf("artifact: docker config: %w", err)
		}
		fs, err := credentials.NewFileStore(opts.DockerConfig)
		if err != nil {
			return nil, fmt.Errorf("artifact: docker config %s: %w", opts.DockerConfig, err)
		}
		stores = append(stores, fs)
	}
	if opts.PullSecret != nil {
		ms, err := credentials.NewMemoryStoreFromDockerConfig(opts.PullSecret)
		if err != nil {
			return nil, fmt.Errorf("artifact: pull secret: not a .dockerconfigjson: %w", err)
		}
		stores = append(stores, ms)
	}
	switch len(stores) {
	case 0:
		return nil, nil
	case 1:
		return stores[0], nil
	}
	return credentials.NewStoreWithFallbacks(stores[0], stores[1:]...), nil
}

// isLoopback reports whether host (with or without a port) is a loopback name or
// address.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
