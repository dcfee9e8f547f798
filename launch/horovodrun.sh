#!/usr/bin/env bash
# Runs `twostream train` on NP processes with horovodrun; the arguments are `twostream train`'s own.
#
#   NP=2 launch/horovodrun.sh --preset tiny --data runs/demo/videos --workdir runs/np2
#   NP=8 HOSTS=node1:4,node2:4 launch/horovodrun.sh --preset demo --data /shared/videos --workdir /shared/runs/a
#   NP=8 HOSTFILE=hosts.txt launch/horovodrun.sh ...        (lines 'node1 slots=4')
#   DRY_RUN=1 NP=2 launch/horovodrun.sh ...                 (print the command only)
#
# NP: processes (default 2). HOSTS: host:slots list (default localhost:NP). HOSTFILE: instead of HOSTS.
# CONTROLLER: gloo (default) or mpi. TWOSTREAM_BIN: folder holding horovodrun and twostream
# (default: the repository's .venv/bin, else whatever is on PATH).
set -euo pipefail

NP=${NP:-2}
CONTROLLER=${CONTROLLER:-gloo}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z "${TWOSTREAM_BIN:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/twostream" ]]; then TWOSTREAM_BIN=$REPO/.venv/bin
    else TWOSTREAM_BIN=$(dirname "$(command -v twostream || echo /twostream-not-found/twostream)")
    fi
fi
for tool in horovodrun twostream; do
    if [[ ! -x "$TWOSTREAM_BIN/$tool" ]]; then
        echo "horovodrun.sh: $TWOSTREAM_BIN/$tool not found; run 'make setup' or set TWOSTREAM_BIN" >&2
        exit 2
    fi
done
if [[ $# -eq 0 ]]; then
    echo "usage: NP=2 $0 --preset tiny --data DIR --workdir DIR   (arguments of 'twostream train')" >&2
    exit 2
fi
if [[ -n "${HOSTFILE:-}" && -n "${HOSTS:-}" ]]; then
    echo "horovodrun.sh: set HOSTS or HOSTFILE, not both" >&2
    exit 2
fi
if [[ -n "${HOSTFILE:-}" ]]; then WHERE=(--hostfile "$HOSTFILE"); else WHERE=(-H "${HOSTS:-localhost:$NP}"); fi

COMMAND=("$TWOSTREAM_BIN/horovodrun" -np "$NP" "${WHERE[@]}" "--$CONTROLLER" "$TWOSTREAM_BIN/twostream" train "$@")
echo "${COMMAND[*]}"
if [[ -n "${DRY_RUN:-}" ]]; then exit 0; fi
exec "${COMMAND[@]}"
