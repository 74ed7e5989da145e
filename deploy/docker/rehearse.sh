#!/usr/bin/env bash
# rehearse.sh WORKDIR: runs the socketcand setup (compose.socketcand.yaml)
# without Docker: the same scripts and commands as its services, as
# processes in the network namespace this script starts in, and exits with
# test.sh's status. deploy/compose_test.go starts it in a new, empty
# namespace (unshare --net), so that loopback is the setup's alone, as the
# containers' shared namespace is; CI has no Docker daemon, and this is how
# it runs controlplane.sh and test.sh at all.
#
# The differences from the containers: the simulator shares the namespace
# (its buses at 127.0.0.1:29536 instead of sim:29536), the provider runs as
# user 65532 only when this runs as root (setpriv), and the programs come
# from PATH: controlplane (go build ./provider/internal/controlplane/cmd/controlplane),
# kubectl and ecu-kubelet. Run it from the repository's root, which the
# control plane needs to find its programs. Files and logs go to WORKDIR.
set -euo pipefail

work=${1:?usage: rehearse.sh WORKDIR}
here=$(dirname "$0")
for prog in controlplane kubectl ecu-kubelet; do
  command -v "$prog" >/dev/null || { echo "rehearse: no $prog on PATH" >&2; exit 2; }
done
ip link set lo up 2>/dev/null || true # a new namespace starts with lo down

as_provider=()
uid=$(id -u)
if [ "$uid" = 0 ] && command -v setpriv >/dev/null; then
  uid=65532
  as_provider=(setpriv --reuid "$uid" --regid "$uid" --clear-groups)
fi
mkdir -p "$work/state"
chown "$uid" "$work/state"
chmod 0700 "$work/state"
sed 's|socketcand://sim:|socketcand://127.0.0.1:|' "$here/vehicle-socketcand.yaml" >"$work/vehicle.yaml"

pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
stop() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT

# controlplane, sim, provider: their services' commands.
SHARED=$work/shared PROVIDER_UID=$uid bash "$here/controlplane.sh" >"$work/controlplane.log" 2>&1 &
pids+=($!)
ecu-kubelet sim --vehicle "$work/vehicle.yaml" --listen 0.0.0.0:29536 >"$work/sim.log" 2>&1 &
pids+=($!)

# The healthchecks the provider's depends_on waits for.
wait_healthy() {
  local what=$1 log=$2; shift 2
  local deadline=$((SECONDS + 180))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "${pids[@]}" 2>/dev/null; then
      echo "rehearse: $what did not get healthy; the end of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
}
wait_healthy controlplane "$work/controlplane.log" test -f "$work/shared/controlplane/ready"
wait_healthy sim "$work/sim.log" ecu-kubelet sim status --server 127.0.0.1:29537 --timeout 2s

"${as_provider[@]}" ecu-kubelet run --config="$work/vehicle.yaml" \
  --kubeconfig="$work/shared/provider/kubeconfig" --client-ca-file="$work/shared/provider/ca.crt" \
  --state-dir="$work/state/state" --node-address=127.0.0.1 --listen=127.0.0.1:10250 >"$work/provider.log" 2>&1 &
pids+=($!)

status=0
KUBECONFIG=$work/shared/controlplane/kubeconfig SHARED=$work/shared SIM_STATUS=127.0.0.1:29537 \
  POD_FILE=deploy/examples/brake-firmware-pod.yaml bash "$here/test.sh" "$work/vehicle.yaml" || status=$?
if [ "$status" != 0 ]; then
  for log in controlplane sim provider; do
    echo "--- the end of $work/$log.log" >&2
    tail -n 30 "$work/$log.log" >&2
  done
fi
exit "$status"
