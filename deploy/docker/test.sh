#!/usr/bin/env bash
# test.sh VEHICLE.yaml: the compose setups' integration scenario, run by their
# test service; its exit status is the setup's result (docker-compose up
# --exit-code-from test).
#
# With the control plane, the simulator and the provider running (the
# compose file starts them), it checks that every ECU of VEHICLE.yaml is a
# Ready node, approves the kubelet API's certificate request, builds
# firmware 1.3.0 for the brake ECU into an OCI image layout on the shared
# volume, applies deploy/examples/brake-firmware-pod.yaml pointed at it,
# waits for the pod to run, and checks what a user would: the node's
# firmware-version label, `kubectl logs` (the flash's UDS transcript) and
# `kubectl exec ... read-did F189` (the version the ECU reports over UDS).
#
# Environment: KUBECONFIG (the control plane's kubeconfig), SIM_STATUS (the
# simulator's status address, if the test can reach it), TIMEOUT (seconds
# for each wait, default 180), SHARED (the volume shared with the provider,
# default /shared), POD_FILE (default: the example in /src).
set -euo pipefail

vehicle=${1:?usage: test.sh VEHICLE.yaml}
: "${KUBECONFIG:?KUBECONFIG must name the kubeconfig of the control plane}"
timeout=${TIMEOUT:-180}
pod=brake-fw
pod_file=${POD_FILE:-/src/deploy/examples/brake-firmware-pod.yaml}
fw=${SHARED:-/shared}/firmware
image=oci-layout:$fw/cache:brake-1.3.0

say() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\ntest: FAIL: %s\n' "$*" >&2
  kubectl get nodes -o wide >&2 || true
  kubectl describe pod "$pod" >&2 2>/dev/null || true
  exit 1
}

# wait_for WHAT COMMAND...: runs COMMAND until it succeeds, or fails after
# $timeout seconds.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what: not done after $timeout s"
    sleep 1
  done
}

name=$(awk '$1 == "name:" { print $2; exit }' "$vehicle")
ecus=$(awk '/^ecus:/ { in_ecus = 1; next } /^[a-z]/ { in_ecus = 0 } in_ecus && /^  - name:/ { n++ } END { print n + 0 }' "$vehicle")
if [ -z "$name" ] || [ "$ecus" -eq 0 ]; then fail "$vehicle: no vehicle name or no ECUs found"; fi

say "the API server"
wait_for "the API server's readiness" kubectl get --raw /readyz
kubectl version

say "$ecus ECU nodes of vehicle $name"
nodes_registered() { [ "$(kubectl get nodes -l "ecu-kubelet.io/vehicle=$name" -o name | wc -l)" -eq "$ecus" ]; }
wait_for "$ecus nodes registered" nodes_registered

# The kubelet API asks for its serving certificate through a CSR, as a
# kubelet does; an administrator (here: this test) approves it and the
# controller manager signs it.
pending_csr() {
  kubectl get csr -o go-template='{{range .items}}{{if and (eq .spec.signerName "kubernetes.io/kubelet-serving") (not .status.conditions)}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
}
csr_pending() { [ -n "$(pending_csr)" ]; }
wait_for "the kubelet API's certificate signing request" csr_pending
for csr in $(pending_csr); do kubectl certificate approve "$csr"; done

wait_for "the ECU nodes Ready" kubectl wait --for=condition=Ready nodes -l "ecu-kubelet.io/vehicle=$name" --timeout=1s
kubectl get nodes -o wide -L ecu-kubelet.io/firmware-version,ecu-kubelet.io/bus

say "firmware: brake 1.3.0 into $image"
rm -rf "$fw"
mkdir -p "$fw"
head -c 262144 /dev/urandom >"$fw/brake-1.3.0.bin"
ecu-kubelet firmware build --hardware-id BRK-HW-01 --version 1.3.0 --release-counter 5 "$fw/brake-1.3.0.bin" -o "$fw/brake-1.3.0.img"
ecu-kubelet firmware pack "$fw/brake-1.3.0.img" -o "$image"
# The provider runs as another user; it reads the layout.
chmod -R a+rX "$fw"

say "kubectl apply: pod $pod on node $name-brake"
kubectl delete pod "$pod" --ignore-not-found --wait=true
sed -e "s|^\( *image:\).*|\1 $image|" -e "s|^\( *nodeName:\).*|\1 $name-brake|" "$pod_file" | kubectl apply -f -

phase() { kubectl get pod "$pod" -o jsonpath='{.status.phase}'; }
deadline=$((SECONDS + timeout))
until [ "$(phase)" = Running ]; do
  [ "$(phase)" != Failed ] || fail "$pod failed"
  ((SECONDS < deadline)) || fail "$pod did not run within $timeout s"
  sleep 1
done
kubectl get pod "$pod" -o wide

say "checks"
version() { kubectl get node "$name-brake" -o jsonpath='{.metadata.labels.ecu-kubelet\.io/firmware-version}'; }
label_updated() { [ "$(version)" = 1.3.0 ]; }
wait_for "node $name-brake's firmware-version label 1.3.0 (it is $(version))" label_updated
echo "node $name-brake: firmware-version $(version)"

# The kubelet API serves once its CSR is signed, which a loaded controller
# manager may take a while to do after the approval.
kubelet_api() { kubectl logs "$pod" --tail=1; }
wait_for "kubectl logs $pod: the kubelet API (serving once its certificate is signed)" kubelet_api
logs=$(kubectl logs "$pod") || fail "kubectl logs $pod: the kubelet API did not answer"
printf '%s\n' "$logs" | tail -n 5
[ -n "$logs" ] || fail "kubectl logs $pod is empty; want the flash's transcript"

did=$(kubectl exec "$pod" -- read-did F189) || fail "kubectl exec $pod -- read-did F189 failed"
echo "$did"
[[ $did == *1.3.0* ]] || fail "read-did F189 says $did; want version 1.3.0"

if [ -n "${SIM_STATUS:-}" ]; then
  ecu-kubelet sim status --server "$SIM_STATUS"
fi

say "PASS: vehicle $name, $ecus ECU nodes Ready, $pod flashed and running 1.3.0"
