#!/usr/bin/env bash
# A real SLURM on this machine for the launcher tests: `start` installs slurm-wlm and munge when missing (root only),
# writes a slurm.conf into its own folder, starts munged (unless one already runs), slurmctld and slurmd, and waits
# until the nodes are idle; `stop` stops exactly the processes `start` started, by PID.
#
#   scripts/slurm_local.sh start   # prints SLURM_CONF=<file>; export it for sbatch, srun, squeue, scontrol
#   scripts/slurm_local.sh stop
#
# One node (this machine) by default. With TWOSTREAM_SLURM_HOSTS=N, nodes node1..nodeN on the network-namespace
# hosts that `scripts/hosts.sh up N` made (same HOSTS_PREFIX): slurmctld on node1 and a slurmd on every host, each
# in its host's namespaces. This machine has no route to the hosts: run SLURM's commands on one
# (`scripts/hosts.sh run 1 sbatch ...`). munged is reached through its socket file, which every host shares.
#
# Nothing under /etc/slurm is written: every SLURM command and daemon here reads $SLURM_CONF. The folder is
# $TWOSTREAM_SLURM_DIR (default /tmp/twostream-slurm); the ports are $TWOSTREAM_SLURM_PORT and the next one
# (default 6917, 6918), away from SLURM's own 6817/6818 so a site's SLURM on the same machine is left alone.
# AuthInfo=cred_expire=10: a requeued job may start again after 10 s instead of SLURM's default 120 s.
# See ../shared/notes/slurm-on-this-machine.md (or docs/launching.md) for why each line of the config is there.
set -euo pipefail

DIR=${TWOSTREAM_SLURM_DIR:-/tmp/twostream-slurm}
PORT=${TWOSTREAM_SLURM_PORT:-6917}
CONF=$DIR/slurm.conf
PIDS=$DIR/started.pids        # one PID per line: what `stop` stops
HOSTS=${TWOSTREAM_SLURM_HOSTS:-0}   # 0: one node, this machine; N: nodes node1..N on scripts/hosts.sh's hosts
HOSTS_SH=$(dirname "$0")/hosts.sh
export SLURM_CONF=$CONF

fail() { echo "slurm_local: $*" >&2; exit 1; }

install_if_missing() {   # the packages and their install live in test_system_deps.sh
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
  "$(dirname "$0")/test_system_deps.sh"
  command -v slurmctld >/dev/null && command -v munged >/dev/null \
    || fail "slurm-wlm and munge are not installed (needs root and apt-get): apt-get install slurm-wlm munge"
}

on_host() {   # $1: a host's number, 0 for this machine; then the command
  local host=$1
  shift
  if [ "$host" = 0 ]; then "$@"; else "$HOSTS_SH" run "$host" "$@"; fi
}

node_lines() {   # the NodeName lines and the partition; each host's slurmd sees the machine's CPUs (it checks them)
  local cpus=$1 memory=$2 i names=()
  if [ "$HOSTS" = 0 ]; then
    echo "NodeName=$(hostname -s) CPUs=$cpus RealMemory=$memory State=UNKNOWN"
    names=("$(hostname -s)")
  else
    for ((i = 1; i <= HOSTS; i++)); do
      echo "NodeName=node$i NodeAddr=$("$HOSTS_SH" addr "$i") CPUs=$cpus RealMemory=$memory State=UNKNOWN"
      names+=("node$i")
    done
  fi
  local IFS=,
  echo "PartitionName=debug Nodes=${names[*]} Default=YES MaxTime=INFINITE State=UP"
}

write_conf() {
  local controller cpus memory per_node=""
  controller=$(hostname -s)
  [ "$HOSTS" = 0 ] || { controller="node1($("$HOSTS_SH" addr 1))"; per_node=.%n; }
  cpus=$(nproc)
  memory=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))   # MB, a little below the total (slurmd checks)
  rm -rf "$DIR/ctld" "$DIR"/spool*   # a fresh cluster each start: no jobs recovered from an earlier one
  mkdir -p "$DIR/ctld" "$DIR/log"
  if [ "$HOSTS" = 0 ]; then mkdir -p "$DIR/spool"; else for ((i = 1; i <= HOSTS; i++)); do mkdir -p "$DIR/spool.node$i"; done; fi
  cat >"$CONF" <<EOF
ClusterName=twostream
SlurmctldHost=$controller
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool$per_node
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd$per_node.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd$per_node.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
InactiveLimit=0
MinJobAge=300
KillWait=30
$(node_lines "$cpus" "$memory")
EOF
}

start_munge() {
  if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then
    return   # a munged already answers: use it, leave it running
  fi
  [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || create-munge-key >/dev/null 2>&1 \
    || fail "no /etc/munge/munge.key and mungekey could not make one"
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cat /run/munge/munged.pid >>"$PIDS"
}

start_daemon() {   # $1: slurmctld or slurmd, $2: its host (0: this machine), $3: its PID file, as the config names it
  local pidfile=$DIR/$3
  rm -f "$pidfile"
  on_host "$2" "/usr/sbin/$1" -f "$CONF" || fail "$1 did not start; see $DIR/log/"
  for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.1; done
  [ -s "$pidfile" ] || fail "$1 wrote no PID file; see $DIR/log/"
  cat "$pidfile" >>"$PIDS"
}

start_daemons() {
  local i
  if [ "$HOSTS" = 0 ]; then
    start_daemon slurmctld 0 slurmctld.pid
    start_daemon slurmd 0 slurmd.pid
    return
  fi
  [ -e "/run/netns/${HOSTS_PREFIX:-ts}n$HOSTS" ] \
    || fail "no host $HOSTS (prefix ${HOSTS_PREFIX:-ts}): run scripts/hosts.sh up $HOSTS first"
  start_daemon slurmctld 1 slurmctld.pid
  for ((i = 1; i <= HOSTS; i++)); do start_daemon slurmd "$i" "slurmd.node$i.pid"; done
}

wait_idle() {   # every node idle (sinfo prints a line per state)
  local host=$((HOSTS > 0 ? 1 : 0)) states
  for _ in $(seq 60); do
    states=$(on_host "$host" sinfo -h -o %T 2>/dev/null || true)
    [ -n "$states" ] && ! grep -qv '^idle' <<<"$states" && return
    sleep 1
  done
  fail "the nodes did not become idle in 60 s: $(on_host "$host" sinfo -h -o '%N %T %E' 2>&1); see $DIR/log/"
}

start() {
  [ -s "$PIDS" ] && fail "already started (PIDs in $PIDS); run: $0 stop"
  install_if_missing
  [ "$(id -u)" = 0 ] || fail "slurmd must run as root to start jobs; run as root"
  write_conf
  : >"$PIDS"
  start_munge
  start_daemons
  wait_idle
  echo "SLURM_CONF=$CONF"
}

stop() {
  [ -f "$PIDS" ] || return 0
  while read -r pid; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done <"$PIDS"
  for _ in $(seq 50); do   # up to 5 s for them to exit, then the ones left are killed
    alive=0
    while read -r pid; do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1; done <"$PIDS"
    [ $alive = 0 ] && break
    sleep 0.1
  done
  while read -r pid; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done <"$PIDS"
  rm -f "$PIDS"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
