#!/usr/bin/env bash
# Builds the test control plane's programs (etcd, kube-apiserver,
# kube-controller-manager, kubectl) into the cache of the user who runs it,
# so that the first integration test does not pay for the build inside its
# timeout: about 4 to 7 minutes on 2 cores from a cold Go build cache for
# kube-apiserver, and a minute more for kube-controller-manager, which
# shares most of its packages; a few seconds when they are cached. The
# versions are those of the tools modules under
# provider/internal/controlplane/tools; see package controlplane.
# Idempotent. Needs the Go toolchain and the Go module proxy, not root; run
# it as the user who runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  else
    echo "install-controlplane: no go command on PATH; the control plane is built with the Go toolchain" >&2
    exit 1
  fi
fi

start=$(date +%s)
go run ./provider/internal/controlplane/cmd/controlplane build
echo "install-controlplane: ready in $(( $(date +%s) - start )) s"
