#!/usr/bin/env bash
# Several "hosts" on this one machine, made of network namespaces: up N, run HOST CMD..., addr HOST, down.
#
#   scripts/hosts.sh up 3                 # hosts node1..node3 at 10.77.0.11..13 (root, `ip netns`)
#   scripts/hosts.sh run 2 hostname       # runs a command on host 2: prints node2
#   scripts/hosts.sh down                 # stops every process still on the hosts (by their PIDs), removes them
#
# Each host has its own network stack, address and hostname (a UTS namespace) and an /etc/hosts naming every
# host (a mount namespace); the filesystem and the PIDs are the machine's, so a local folder is shared storage.
# The hosts' bridge lives in a namespace of its own: the machine has no route to the hosts and the hosts none
# out, so nothing they send leaves the machine. HOSTS_PREFIX (default ts) names the namespaces (PREFIXw, the
# bridge; PREFIXn1.., the hosts) and HOSTS_SUBNET (default 10.77.0) their /24, so that two sets can coexist.
# HOSTS_BIND="SRC:DST ..." bind-mounts files over existing ones in what `run` starts (e.g. a test's ssh_config over
# /etc/ssh/ssh_config), seen by that process and its children only.
set -euo pipefail

PREFIX=${HOSTS_PREFIX:-ts}
SUBNET=${HOSTS_SUBNET:-10.77.0}
STATE=/run/twostream-hosts-$PREFIX   # the hosts file and the host count

die() { echo "hosts.sh: $*" >&2; exit 2; }

address() { echo "$SUBNET.$((10 + $1))"; }   # host i at .1i (i <= 244)

up() {
  local count=$1 i
  [[ $count =~ ^[1-9][0-9]*$ && $count -le 244 ]] || die "up needs a host count from 1 to 244, got '$count'"
  [[ $(id -u) == 0 ]] || die "making hosts needs root (network namespaces); run it as root"
  command -v ip >/dev/null && ip netns list >/dev/null 2>&1 || die "no 'ip netns' here (iproute2 with netns support)"
  [[ -e /run/netns/${PREFIX}w ]] && die "hosts with prefix $PREFIX are up already; 'down' first or set HOSTS_PREFIX"
  mkdir -p "$STATE"
  { echo "127.0.0.1 localhost"; for ((i = 1; i <= count; i++)); do echo "$(address $i) node$i"; done; } >"$STATE/hosts"
  echo "$count" >"$STATE/count"
  ip netns add "${PREFIX}w"
  ip netns exec "${PREFIX}w" ip link add br0 type bridge
  ip netns exec "${PREFIX}w" ip link set br0 up
  for ((i = 1; i <= count; i++)); do
    ip netns add "${PREFIX}n$i"
    ip link add "veth$i" netns "${PREFIX}w" type veth peer name eth0 netns "${PREFIX}n$i"
    ip netns exec "${PREFIX}w" ip link set "veth$i" master br0 up
    ip netns exec "${PREFIX}n$i" ip addr add "$(address $i)/24" dev eth0
    ip netns exec "${PREFIX}n$i" ip link set eth0 up
    ip netns exec "${PREFIX}n$i" ip link set lo up
    echo "node$i $(address $i)"
  done
}

run() {
  local host=$1; shift
  [[ -e /run/netns/${PREFIX}n$host ]] || die "no host $host (prefix $PREFIX); 'up N' first"
  [[ $# -gt 0 ]] || die "run needs a command: run HOST CMD [ARGS...]"
  # nsenter, not `ip netns exec`: that remounts /sys, which hides the cgroup mounts (slurmd needs them)
  exec nsenter --net="/run/netns/${PREFIX}n$host" unshare --uts --mount --propagation private \
    bash -c 'hostname "$1"; mount --bind "$2" /etc/hosts; for pair in $3; do mount --bind "${pair%%:*}" "${pair#*:}"; done
             shift 3; exec "$@"' _ "node$host" "$STATE/hosts" "${HOSTS_BIND:-}" "$@"
}

stop_pids() {   # TERM, up to 10 s for them to end, then KILL: the processes of namespace $1 only
  local ns=$1 pids i
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -z $pids ]] && return 0
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -z $pids ]] && return 0
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null || true
}

down() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}(n[0-9]+|w)$" || true); do
    stop_pids "$ns"
    ip netns del "$ns"
  done
  rm -rf "$STATE"
}

case ${1:-} in
  up) [[ $# == 2 ]] || die "usage: hosts.sh up N"; up "$2" ;;
  run) [[ $# -ge 3 ]] || die "usage: hosts.sh run HOST CMD [ARGS...]"; shift; run "$@" ;;
  addr) [[ $# == 2 ]] || die "usage: hosts.sh addr HOST"; address "$2" ;;
  down) down ;;
  *) die "usage: hosts.sh up N | run HOST CMD [ARGS...] | addr HOST | down" ;;
esac
