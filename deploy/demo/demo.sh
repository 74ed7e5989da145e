#!/usr/bin/env bash
# The demo behind `make demo`: a simulated car whose ECUs are Kubernetes
# nodes, and a firmware pod flashed onto one of them.
#
# It starts, each as its own process with its log in a new temporary
# directory:
#   1. a local control plane (etcd, kube-apiserver, kube-controller-manager on
#      loopback ports; provider/internal/controlplane/cmd/controlplane),
#   2. the demo car's simulator (ecu-kubelet sim, deploy/examples/demo-car.yaml:
#      seven ECUs on two buses served over socketcand at 127.0.0.1:29536),
#   3. the provider (ecu-kubelet run) with the same vehicle file, which
#      registers every ECU as a node and serves the kubelet API with a
#      certificate it requests through a CSR (approved here),
# then builds firmware 1.3.0 for the brake ECU into an OCI image layout,
# applies deploy/examples/brake-firmware-pod.yaml pointed at it, and shows
# the pod go Running as the ECU is flashed. Everything keeps running until
# Ctrl-C, then stops; the logs stay.
#
# Needs: Go, and bin/ecu-kubelet (`make demo` builds it). The first run builds
# etcd, kube-apiserver and kubectl from the Go module proxy (minutes; cached
# afterwards, see .ci/install-controlplane.sh).
#
# Environment: DEMO_KUBELET_PORT (default 10250) is the kubelet API's port on
# 127.0.0.1; DEMO_ONCE=1 stops everything once the pod runs, instead of
# waiting for Ctrl-C (for CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

bin=$root/bin/ecu-kubelet
vehicle=deploy/examples/demo-car.yaml
pod_file=deploy/examples/brake-firmware-pod.yaml
pod=brake-fw
ecu=brake
# The simulator serves the buses where the vehicle file's URLs point.
sim_addr=127.0.0.1:29536
sim_status=127.0.0.1:29537
kubelet_port=${DEMO_KUBELET_PORT:-10250}
labels='ecu-kubelet.io/firmware-version,ecu-kubelet.io/bus'

if [ -t 1 ]; then bold=$'\e[1m' red=$'\e[31m' plain=$'\e[0m'; else bold='' red='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\n%sdemo: %s%s\n' "$red" "$*" "$plain" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ecu-kubelet-demo.XXXXXX")
echo "demo: logs and files in $work"

# Processes started here, stopped in reverse order on exit; watcher is
# the kubectl watching the pod, while it runs.
pids=() names=() logs=() watcher=''
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [ -z "$watcher" ] || kill "$watcher" 2>/dev/null || true
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping ${names[*]}"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      kill -TERM "${pids[i]}" 2>/dev/null || true
      # Give each 20 s to stop cleanly, then kill it.
      for _ in $(seq 200); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "${pids[i]}" 2>/dev/null || true
      wait "${pids[i]}" 2>/dev/null || true
    done
  fi
  echo "demo: logs and files stay in $work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background, its output in
# $work/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!) names+=("$name") logs+=("$work/$name.log")
  echo "started $name (pid $!): $*"
}

# check_alive: fails with the end of its log if a started process exited.
check_alive() {
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      echo "--- end of ${logs[i]}" >&2
      tail -n 40 "${logs[i]}" >&2
      fail "${names[i]} exited; its log is ${logs[i]}"
    fi
  done
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND until it succeeds; fails
# when SECONDS pass or a started process exits.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    check_alive
    ((SECONDS < deadline)) || fail "$what: not done after $secs s; the logs are in $work"
    sleep 0.5
  done
}

port_taken() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$sim_addr" "$sim_status" "127.0.0.1:$kubelet_port"; do
  if port_taken "$addr"; then
    fail "$addr is in use (another demo or simulator still running?); stop it first (for the kubelet API port: DEMO_KUBELET_PORT=NNNN make demo)"
  fi
done
[ -x "$bin" ] || fail "$bin is missing; run make demo (it builds it first)"
command -v go >/dev/null || fail "no go command on PATH; the control plane is built with the Go toolchain"

say "control plane: etcd, kube-apiserver, kube-controller-manager and kubectl (built once, then cached)"
go build -o "$work/controlplane" ./provider/internal/controlplane/cmd/controlplane
kubectl_bin=$("$work/controlplane" build | awk '$1 == "kubectl" { print $2 }')
[ -x "$kubectl_bin" ] || fail "controlplane build gave no kubectl"
cp_dir=$work/controlplane-files
start controlplane "$work/controlplane" run -dir "$cp_dir"
wait_for 180 "the control plane" grep -q '^export KUBECONFIG=' "$work/controlplane.log"
export KUBECONFIG=$cp_dir/kubeconfig
kubectl() { "$kubectl_bin" "$@"; }
kubectl version

say "simulator: the demo car ($vehicle), its buses served over socketcand at $sim_addr"
start sim "$bin" sim --vehicle "$vehicle" --listen "$sim_addr" --status-listen "$sim_status"
wait_for 30 "the simulator" grep -q "socketcand $sim_addr" "$work/sim.log"
"$bin" sim status --server "$sim_status"

say "provider: ecu-kubelet run, every ECU of $vehicle a node"
start provider "$bin" run --config "$vehicle" --kubeconfig "$KUBECONFIG" \
  --state-dir "$work/state" \
  --node-address 127.0.0.1 --kubelet-port "$kubelet_port" --listen "127.0.0.1:$kubelet_port" \
  --client-ca-file "$cp_dir/pki/ca.crt"

# The kubelet API asks for its serving certificate through a CSR, as a
# kubelet does; an administrator (here: this script) approves it and the
# controller manager signs it.
pending_csr() {
  kubectl get csr -o go-template='{{range .items}}{{if and (eq .spec.signerName "kubernetes.io/kubelet-serving") (not .status.conditions)}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
}
csr_pending() { [ -n "$(pending_csr)" ]; }
wait_for 60 "the kubelet API's certificate signing request" csr_pending
for csr in $(pending_csr); do kubectl certificate approve "$csr"; done

ecus=$(awk '/^ecus:/ { in_ecus = 1; next } /^[a-z]/ { in_ecus = 0 } in_ecus && /^  - name:/ { n++ } END { print n }' "$vehicle")
nodes_registered() { [ "$(kubectl get nodes -l ecu-kubelet.io/vehicle=demo-car -o name | wc -l)" -eq "$ecus" ]; }
wait_for 60 "$ecus ECU nodes" nodes_registered
wait_for 60 "the ECU nodes Ready" kubectl wait --for=condition=Ready nodes -l ecu-kubelet.io/vehicle=demo-car --timeout=1s

say "kubectl get nodes -o wide -L $labels"
kubectl get nodes -o wide -L "$labels"

say "firmware: brake 1.3.0 (release counter 5, hardware BRK-HW-01) into an OCI image layout"
fw=$work/firmware
mkdir -p "$fw"
# 1.3.0 is 1.2.0, the image the brake ECU runs, with 16 KiB changed: the
# artifact carries a delta from 1.2.0 besides the full image, and the flash
# sends the delta.
"$bin" sim image --vehicle "$vehicle" --ecu brake --slot a -o "$fw/brake-1.2.0.img"
tail -c +129 "$fw/brake-1.2.0.img" >"$fw/brake-1.3.0.bin" # the payload behind the 128-byte header
head -c 16384 /dev/urandom | dd of="$fw/brake-1.3.0.bin" bs=4096 seek=20 conv=notrunc status=none
"$bin" firmware build --hardware-id BRK-HW-01 --version 1.3.0 --release-counter 5 "$fw/brake-1.3.0.bin" -o "$fw/brake-1.3.0.img"
image=oci-layout:$fw/cache:brake-1.3.0
"$bin" firmware pack "$fw/brake-1.3.0.img" --delta-from "$fw/brake-1.2.0.img" -o "$image"
"$bin" firmware inspect "$image"

say "kubectl apply -f $pod_file (image: $image)"
sed "s|^\( *image:\).*|\1 $image|" "$pod_file" >"$work/$pod.yaml"
kubectl apply -f "$work/$pod.yaml"

say "kubectl get pod $pod -w: the brake ECU is flashed"
kubectl get pod "$pod" -w &
watcher=$!
phase() { kubectl get pod "$pod" -o jsonpath='{.status.phase}'; }
deadline=$((SECONDS + 180))
until [ "$(phase)" = Running ] || [ "$(phase)" = Failed ]; do
  check_alive
  if ((SECONDS >= deadline)); then kubectl describe pod "$pod"; fail "$pod did not run within 180 s"; fi
  sleep 1
done
sleep 1 # the watch prints the last change
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
watcher=''
if [ "$(phase)" = Failed ]; then
  kubectl describe pod "$pod"
  fail "$pod failed (above: its conditions and events; the provider's log is $work/provider.log)"
fi

say "the brake node shows its new firmware"
brake_updated() { [ "$(kubectl get node "demo-car-$ecu" -o jsonpath='{.metadata.labels.ecu-kubelet\.io/firmware-version}')" = 1.3.0 ]; }
wait_for 30 "the brake node's firmware-version label 1.3.0" brake_updated
kubectl get nodes -L "$labels,ecu-kubelet.io/active-slot"
"$bin" sim status --server "$sim_status"

say "kubectl get events: the flash, phase by phase (the plan says whether a delta was sent)"
kubectl get events --field-selector "involvedObject.name=$pod" --sort-by=.lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message | cut -c1-160

printf '\n%sThe demo car runs.%s In another terminal:\n\n' "$bold" "$plain"
printf '  export KUBECONFIG=%s\n  alias kubectl=%s\n\n' "$KUBECONFIG" "$kubectl_bin"
try() { printf '  %-58s # %s\n' "$1" "$2"; }
try "kubectl get nodes -L $labels" "the ECUs, their firmware and bus"
try "kubectl describe node demo-car-$ecu" "slots, versions, conditions"
try "kubectl describe pod $pod" "conditions and events of the flash"
try "kubectl logs $pod" "the UDS transcript of the flash"
try "kubectl exec $pod -- read-did F189" "the running version, read over UDS"
try "kubectl exec $pod -- identity" "versions, hardware and part numbers, serial"
try "kubectl exec $pod -- help" "the diagnostics allowed; anything else is refused"
try "kubectl delete pod $pod" "the firmware stays on the ECU"
try "bin/ecu-kubelet sim status --server $sim_status" "the simulator's view: slots A and B"
printf '\nLogs: %s/{controlplane,sim,provider}.log\n' "$work"

if [ "${DEMO_ONCE:-0}" = 1 ]; then
  exit 0
fi
say "everything keeps running; Ctrl-C stops it"
while true; do
  wait -n "${pids[@]}" || true
  check_alive
done
