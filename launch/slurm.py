"""`twostream launch slurm`: writes an sbatch script (hosts from scontrol, then horovodrun) and submits it."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

from twostream.launch import config_args
from twostream.launch.horovod_cmd import LaunchError, tool

TIME_FORMAT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")   # SLURM's minutes, H:MM:SS, D-HH:MM:SS, ...


def render(args, train_args: list[str]) -> str:
    """The sbatch script: one rank per GPU (or --procs-per-node on CPU nodes), every node's slots given to -H."""
    slots = args.gpus_per_node or args.procs_per_node
    directives = [f"--job-name={args.job_name}", f"--nodes={args.nodes}", f"--ntasks-per-node={slots}",
                  f"--time={args.time}", f"--partition={args.partition}",
                  f"--output={os.path.join(os.path.abspath(args.workdir), 'slurm-%j.out')}"]
    if args.gpus_per_node:
        directives.append(f"--gpus-per-node={args.gpus_per_node}")
    if args.cpus_per_task:
        directives.append(f"--cpus-per-task={args.cpus_per_task}")
    if args.account:
        directives.append(f"--account={args.account}")
    train = shlex.join([tool("twostream"), "train", *train_args])
    return "\n".join([
        "#!/bin/bash",
        *(f"#SBATCH {d}" for d in directives),
        "# Written by `twostream launch slurm`. Rank layout: SLOTS ranks on each node of the allocation.",
        "set -euo pipefail",
        f"SLOTS={slots}",
        'NODES=$(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'HOSTS=$(for node in $NODES; do printf "%s:%s," "$node" "$SLOTS"; done)',
        'HOSTS=${HOSTS%,}',
        'NP=$(( $(echo "$NODES" | wc -w) * SLOTS ))',
        'echo "twostream: $NP ranks on $HOSTS (job ${SLURM_JOB_ID:-local})"',
        f'exec {shlex.quote(tool("horovodrun"))} -np "$NP" -H "$HOSTS" --{args.controller} \\',
        f"    {train}",
        "",
    ])


def run(args) -> int:
    if args.nodes < 1:
        raise LaunchError(f"--nodes must be at least 1, got {args.nodes}")
    if args.gpus_per_node < 0 or args.procs_per_node < 1:
        raise LaunchError("--gpus-per-node must be >= 0 and --procs-per-node >= 1")
    if not TIME_FORMAT.match(args.time):
        raise LaunchError(f"--time {args.time!r} is not a SLURM time; write e.g. 30 (minutes), 04:00:00 or 1-12:00:00")
    config_args.preflight(args, [args.nodes * (args.gpus_per_node or args.procs_per_node)])
    train_args = config_args.forward(args) + ["--workdir", os.path.abspath(args.workdir)]
    script = args.script or os.path.join(os.path.abspath(args.workdir), "launch", "twostream.sbatch")
    os.makedirs(os.path.dirname(os.path.abspath(script)), exist_ok=True)
    os.makedirs(os.path.abspath(args.workdir), exist_ok=True)   # the job's --output lands there
    with open(script, "w") as f:
        f.write(render(args, train_args))
    os.chmod(script, 0o755)
    sbatch = shutil.which("sbatch")
    if args.no_submit or not sbatch:
        reason = "--no-submit" if args.no_submit else "no sbatch on PATH"
        print(f"wrote {script} ({reason}); submit it with: sbatch {shlex.quote(script)}")
        return 0
    print(f"wrote {script}; submitting", flush=True)
    return subprocess.call([sbatch, script])


def add_parser(commands) -> None:
    parser = commands.add_parser("slurm", help="write an sbatch script for horovodrun across nodes, and submit it")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, required=True, help="one rank per GPU; 0 for CPU-only nodes")
    parser.add_argument("--procs-per-node", type=int, default=1, help="ranks per node when --gpus-per-node is 0")
    parser.add_argument("--time", required=True, help="wall-time limit, e.g. 04:00:00")
    parser.add_argument("--partition", required=True)
    parser.add_argument("--account", help="the account to charge (sites that require one)")
    parser.add_argument("--cpus-per-task", type=int, default=0, help="cores per rank (for its decode actors)")
    parser.add_argument("--job-name", default="twostream")
    parser.add_argument("--controller", choices=["gloo", "mpi"], default="gloo")
    parser.add_argument("--script", help="where to write the script (default WORKDIR/launch/twostream.sbatch)")
    parser.add_argument("--no-submit", action="store_true", help="write the script only")
    config_args.add_config_args(parser)
    parser.add_argument("--workdir", required=True, help="on a filesystem every node sees")
    parser.set_defaults(run=run)
