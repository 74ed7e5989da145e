#!/usr/bin/env bash
# controlplane.sh: runs the local control plane (etcd, kube-apiserver,
# kube-controller-manager on loopback ports of the shared network namespace;
# provider/internal/controlplane/cmd/controlplane) with its files in
# $SHARED/controlplane (SHARED: default /shared, the volume), until stopped.
#
# The control plane writes its kubeconfig and CA readable by its owner only.
# Once the API server is ready this copies the two files the provider needs
# (the kubeconfig, and the CA that signs the API server's kubelet client
# certificate) into $SHARED/provider, owned by PROVIDER_UID (the user the
# ecu-kubelet image runs as), and writes $SHARED/controlplane/ready, which
# the healthcheck looks for.
set -euo pipefail

shared=${SHARED:-/shared}
dir=$shared/controlplane
uid=${PROVIDER_UID:?set PROVIDER_UID to the uid the provider runs as}
rm -rf "$dir" "$shared/provider"
mkdir -p "$dir" "$shared/provider"

controlplane run -dir "$dir" >"$dir/run.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
tail -n +1 -f "$dir/run.log" --pid "$pid" &

# controlplane run prints the export line once everything serves.
until grep -q '^export KUBECONFIG=' "$dir/run.log"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || status=$?
    echo "controlplane: exited (${status:-0}) before it was ready; its log is above" >&2
    exit 1
  fi
  sleep 0.5
done
install -o "$uid" -m 0600 "$dir/kubeconfig" "$shared/provider/kubeconfig"
install -o "$uid" -m 0644 "$dir/pki/ca.crt" "$shared/provider/ca.crt"
chown "$uid" "$shared/provider"
touch "$dir/ready"
echo "controlplane: ready; kubeconfig $dir/kubeconfig"

# wait returns early when the trap runs; wait on until the control plane
# has stopped, and exit with its status.
while :; do
  status=0
  wait "$pid" || status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
