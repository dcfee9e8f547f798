#!/usr/bin/env bash
# Runs `twostream train` on NP processes with horovodrun; the arguments are `twostream train`'s own.
# It is `twostream launch horovod` with its settings from the environment: the same checks (every config
# value, the batch split over NP ranks, hosts and slots) run before anything starts, and a failed one exits 2.
#
#   NP=2 launch/jobs/horovodrun.sh --preset tiny --data runs/demo/videos --workdir runs/np2
#   NP=8 HOSTS=node1:4,node2:4 launch/jobs/horovodrun.sh --preset demo --data /shared/videos --workdir /shared/runs/a
#   NP=8 HOSTFILE=hosts.txt launch/jobs/horovodrun.sh ...        (lines 'node1 slots=4')
#   DRY_RUN=1 NP=2 launch/jobs/horovodrun.sh ...                 (check and print the command only)
#
# NP: processes (default 2). HOSTS: host:slots list (default localhost:NP). HOSTFILE: instead of HOSTS.
# CONTROLLER: gloo (default) or mpi. TWOSTREAM_BIN: folder holding the twostream command, whose environment's
# horovodrun is used (default: the repository's .venv/bin, else whatever is on PATH).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -z "${TWOSTREAM_BIN:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/twostream" ]]; then TWOSTREAM_BIN=$REPO/.venv/bin
    else TWOSTREAM_BIN=$(dirname "$(command -v twostream || echo /twostream-not-found/twostream)")
    fi
fi
if [[ ! -x "$TWOSTREAM_BIN/twostream" ]]; then
    echo "horovodrun.sh: $TWOSTREAM_BIN/twostream not found; run 'make setup' or set TWOSTREAM_BIN" >&2
    exit 2
fi
if [[ $# -eq 0 ]]; then
    echo "usage: NP=2 $0 --preset tiny --data DIR --workdir DIR   (arguments of 'twostream train')" >&2
    exit 2
fi

WHERE=()
if [[ -n "${HOSTS:-}" ]]; then WHERE+=(-H "$HOSTS"); fi
if [[ -n "${HOSTFILE:-}" ]]; then WHERE+=(--hostfile "$HOSTFILE"); fi   # both set: the launcher refuses
exec "$TWOSTREAM_BIN/twostream" launch horovod -np "${NP:-2}" "${WHERE[@]}" --controller "${CONTROLLER:-gloo}" \
    ${DRY_RUN:+--dry-run} "$@"
