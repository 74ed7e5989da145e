#!/usr/bin/env bash
# netns.sh [IFACE[:MTU]]...: the first service of a compose setup. It holds
# the network namespace the other services join (network_mode:
# "service:<this>"), so that the control plane's loopback ports, the
# kubelet API and the vcan interfaces are the same for all of them.
#
# Each argument names a vcan interface to create here and bring up: MTU 16
# is classic CAN (the default), 72 is CAN FD. Creating one needs the vcan
# module loaded in the host's kernel (`sudo modprobe vcan`: a container
# cannot load modules) and CAP_NET_ADMIN in this container; no other
# container needs either. Without arguments (the socketcand setup) it
# creates nothing and needs no capability.
#
# It writes /tmp/netns-ready once done (the healthcheck looks for it) and
# then waits until it is stopped.
set -euo pipefail

for arg in "$@"; do
  iface=${arg%%:*} mtu=16
  [[ $arg == *:* ]] && mtu=${arg#*:}
  if ! ip link show dev "$iface" >/dev/null 2>&1; then
    if ! ip link add dev "$iface" type vcan; then
      echo "netns: cannot create $iface: load the vcan module on the host (sudo modprobe vcan) and give this service cap_add: [NET_ADMIN]" >&2
      exit 1
    fi
  fi
  ip link set dev "$iface" mtu "$mtu" up
  echo "netns: $iface up, mtu $mtu"
done
touch /tmp/netns-ready
echo "netns: ready"

# sleep in the background so that the TERM of docker stop ends the wait at
# once (bash as PID 1 runs the trap; a foreground sleep would delay it).
trap 'exit 0' TERM INT
sleep infinity &
wait
