// Package deploy holds the container image, Kubernetes manifests and compose
// files of ecu-kubelet; its tests validate them.
//
// It has no code of its own: the tests build the image (Dockerfile, with
// buildah) and check the compose files, so that what users deploy is what CI
// built and checked. The Kubernetes manifests are checked against the real
// test API server by the provider package's TestManifests tests, which need
// its control plane helpers.
package deploy
