#!/usr/bin/env bash
# The pods' entrypoint in a `twostream launch k8s` MPIJob: passes Kubernetes' SIGTERM on to the training ranks.
#
# Kubernetes stops a pod (deletion, eviction, a node drained) by sending SIGTERM to the container's first process
# only, and SIGKILL once terminationGracePeriodSeconds have passed. The ranks run under sshd sessions on the
# workers and would never see it. With this script as that first process, every `twostream train` process in the
# job gets SIGTERM once, stops with every other rank at the next agreed step, rank 0 checkpoints, and they exit 75.
#
#   twostream-k8s-entrypoint worker             run sshd; on SIGTERM signal this pod's ranks, wait for them to
#                                               exit, then stop sshd
#   twostream-k8s-entrypoint launcher CMD...    stop ranks a previous launcher left on the workers, run CMD
#                                               (horovodrun); on SIGTERM have every worker signal its ranks, wait
#                                               for CMD (it ends when they do) and exit with its status
#   twostream-k8s-entrypoint signal-ranks       send SIGTERM to this container's ranks not yet signalled
#   twostream-k8s-entrypoint stop-ranks         the same, then wait until none is left
#
# The launcher never passes SIGTERM to horovodrun itself: horovodrun answers it by killing its SSH sessions (and,
# 5 s later, with SIGKILL, what runs under them) instead of letting the ranks checkpoint.
#
# Settings (environment): TWOSTREAM_DAEMON, the worker's daemon (default '/usr/sbin/sshd -De'); TWOSTREAM_HOSTFILE,
# the workers, one 'host slots=N' line each (default the operator's /etc/mpi/hostfile); TWOSTREAM_REMOTE, how the
# launcher runs a command on a worker (default ssh, given the host then the command); TWOSTREAM_SIGNALLED, the file
# recording the ranks already signalled (default /tmp/twostream-signalled); TWOSTREAM_RESIGNAL_S, how often the
# launcher asks again while CMD runs, for ranks started after the first request (default 5); TWOSTREAM_RANKS_UNDER,
# the process the ranks must run below (default 1: anywhere in the container; `worker`: itself).
set -uo pipefail

SELF=$(readlink -f "$0")   # the same path in every pod of the job: one image
SIGNALLED=${TWOSTREAM_SIGNALLED:-/tmp/twostream-signalled}
RANKS_UNDER=${TWOSTREAM_RANKS_UNDER:-1}   # only processes below this one are ranks of ours (1: the whole container)

log() { echo "twostream-k8s-entrypoint: $*" >&2; }

# ---- the ranks: processes whose arguments hold 'twostream train' (.../bin/twostream, then train) ----

# Prints 'PID:START' (START: the process's start time, so a reused PID is another process) for each rank below
# RANKS_UNDER, leaving out a rank's own forked children (their parent is a rank too) and processes that have
# exited (zombies).
list_ranks() {
    local dir pid start parent
    declare -A rank_pids=() starts=() parents=()
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        is_rank "$pid" && read_stat "$pid" && [[ $STATE != Z ]] || continue
        start=$START parent=$PPID_OF
        descends_from "$parent" "$RANKS_UNDER" || continue
        rank_pids[$pid]=1 starts[$pid]=$start parents[$pid]=$parent
    done
    for pid in "${!rank_pids[@]}"; do
        [[ -n ${rank_pids[${parents[$pid]}]:-} ]] || echo "$pid:${starts[$pid]}"
    done
}

# Whether process $1 is $2 or below it. In a pod every process is below PID 1; the tests narrow it to their own.
descends_from() {
    local pid=$1
    while [[ $pid != "$2" ]]; do
        [[ $pid -gt 1 ]] && read_stat "$pid" || return 1
        pid=$PPID_OF
    done
}

is_rank() {
    local args i
    mapfile -d '' args 2>/dev/null < "/proc/$1/cmdline" || return 1
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
        [[ ${args[i]##*/} == twostream && ${args[i + 1]} == train ]] && return 0
    done
    return 1
}

# Sets STATE, PPID_OF and START from /proc/PID/stat (fields 3, 4 and 22; the name before them may hold spaces).
read_stat() {
    local stat fields
    { stat=$(< "/proc/$1/stat"); } 2>/dev/null || return 1
    read -ra fields <<< "${stat##*) }"
    STATE=${fields[0]} PPID_OF=${fields[1]} START=${fields[19]}
}

# SIGTERM, once, to each rank not signalled before (a second one could end a rank that is already saving and
# exiting); prints the ranks still running.
signal_ranks() {
    local rank
    touch "$SIGNALLED"
    for rank in $(list_ranks); do
        echo "$rank"
        grep -qxF "$rank" "$SIGNALLED" && continue
        echo "$rank" >> "$SIGNALLED"
        log "SIGTERM to rank process ${rank%%:*} ($(tr '\0' ' ' < "/proc/${rank%%:*}/cmdline" 2>/dev/null))"
        kill -TERM "${rank%%:*}" 2>/dev/null
    done
}

# Signals the ranks, and any started meanwhile, until none is left. No time limit of its own: the pod's
# terminationGracePeriodSeconds is the limit.
stop_ranks() {
    local running waited=0
    while running=$(signal_ranks) && [[ -n $running ]]; do
        if (( waited % 20 == 0 )); then   # every 10 s
            log "waiting for rank process(es) $(cut -d: -f1 <<< "$running" | tr '\n' ' ')to checkpoint and exit"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
}

# ---- waiting for a child while SIGTERM may arrive ----

# Runs "$@" in the background, then waits for it; on SIGTERM or SIGINT runs the function named by ON_STOP once
# (in this shell) and goes on waiting. Sets CHILD_STATUS.
run_until_done() {
    local code
    "$@" &
    CHILD=$!
    STOP_REQUESTED='' INTERRUPTED=''
    trap 'INTERRUPTED=1; if [[ -z $STOP_REQUESTED ]]; then STOP_REQUESTED=1; "$ON_STOP"; fi' TERM INT
    while :; do
        INTERRUPTED=''
        wait "$CHILD"; code=$?
        # A trapped signal ends `wait` with a status above 128 and leaves the child running: wait again.
        if [[ -z $INTERRUPTED || $code -le 128 ]]; then CHILD_STATUS=$code; return; fi
    done
}

# ---- the worker: sshd, and the ranks the launcher starts through it ----

stop_worker() {
    log "SIGTERM: stopping this pod's training ranks (they checkpoint and exit 75), then the daemon"
    stop_ranks
    log "no rank left; stopping the daemon (pid $CHILD)"
    kill -TERM "$CHILD" 2>/dev/null
}

worker() {
    local daemon
    read -ra daemon <<< "${TWOSTREAM_DAEMON:-/usr/sbin/sshd -De}"
    RANKS_UNDER=${TWOSTREAM_RANKS_UNDER:-$$}   # in a pod $$ is 1: the same processes
    ON_STOP=stop_worker
    run_until_done "${daemon[@]}"
    if [[ -n $STOP_REQUESTED ]]; then
        exit 143   # 128 + SIGTERM: stopped on request
    fi
    log "${daemon[*]} exited on its own with status $CHILD_STATUS"
    exit "$CHILD_STATUS"
}

# ---- the launcher: horovodrun, which starts the ranks on the workers over SSH ----

workers() {
    local hostfile=${TWOSTREAM_HOSTFILE:-/etc/mpi/hostfile}
    [[ -r $hostfile ]] || { log "no hostfile at $hostfile"; return; }
    awk '$1 !~ /^#/ && NF { print $1 }' "$hostfile"
}

# Runs this script with the given mode on every worker at once, and waits for all of them.
on_every_worker() {
    local remote host pids=()
    read -ra remote <<< "${TWOSTREAM_REMOTE:-ssh -o BatchMode=yes -o ConnectTimeout=10}"
    for host in $(workers); do
        "${remote[@]}" "$host" "$SELF" "$@" > /dev/null &
        pids+=($!)
    done
    for host in "${pids[@]}"; do wait "$host"; done
}

# In the background, while the launcher's command runs: every worker signals its ranks, again every
# TWOSTREAM_RESIGNAL_S seconds (a rank horovodrun starts after the first request gets the next one).
stop_launcher() {
    log "SIGTERM: asking every worker to stop its training ranks (they checkpoint and exit 75); waiting for $CHILD"
    local child=$CHILD interval=${TWOSTREAM_RESIGNAL_S:-5}
    (
        sleeper=''
        trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
        while kill -0 "$child" 2>/dev/null; do
            on_every_worker signal-ranks
            sleep "$interval" & sleeper=$!
            wait "$sleeper"
        done
    ) &
    RESIGNALLER=$!
}

launcher() {
    (( $# )) || { log "launcher: no command given"; exit 2; }
    # Ranks a previous launcher started (this one is a retry) must not train beside the new ones.
    on_every_worker stop-ranks
    ON_STOP=stop_launcher RESIGNALLER=''
    run_until_done "$@"
    if [[ -n $RESIGNALLER ]]; then kill "$RESIGNALLER" 2>/dev/null; fi
    log "$1 exited with status $CHILD_STATUS"
    exit "$CHILD_STATUS"
}

case "${1:-}" in
    worker) worker ;;
    launcher) shift; launcher "$@" ;;
    signal-ranks) signal_ranks > /dev/null ;;
    stop-ranks) stop_ranks ;;
    *) echo "usage: $0 worker | launcher COMMAND... | signal-ranks | stop-ranks" >&2; exit 2 ;;
esac
