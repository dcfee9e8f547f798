"""`twostream launch slurm`: checks the config and data, writes an sbatch script and submits it.

Default (`--via srun`): every rank is an srun task (SLURM's job steps, cgroups, GPU binding and accounting; no
SSH between nodes) that joins Horovod's Gloo rendezvous, which runs in the batch step (launch/jobs/srun.py). The job
asks for SIGUSR1 `--warning-s` seconds before its time limit; the ranks stop together after a checkpoint and exit
with 75, and the script then requeues the job (`--requeue`), which resumes from that checkpoint.
`--via horovodrun`: the batch step runs `horovodrun -H` over the allocation's nodes (needs SSH between them).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable

from twostream.launch import config_args
from twostream.launch.jobs.horovod_cmd import LaunchError, tool

TIME_FORMAT = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # SLURM's minutes, H:MM:SS, D-HH:MM:SS, ...
PATH_KEYS = ("manifest", "flow_cache_dir", "boxes")  # data.* values that name files or folders


def directives(args) -> list[str]:
    """The #SBATCH lines: one task per GPU (or --procs-per-node on CPU nodes) on each node."""
    slots = args.gpus_per_node or args.procs_per_node
    lines = [
        f"--job-name={args.job_name}",
        f"--nodes={args.nodes}",
        f"--ntasks-per-node={slots}",
        f"--time={args.time}",
        f"--partition={args.partition}",
        f"--output={os.path.join(os.path.abspath(args.workdir), 'slurm-%j.out')}",
        "--open-mode=append",
    ]  # a requeued run adds to the same log
    if args.gpus_per_node:  # srun binds one GPU to each task; horovodrun's ranks pick theirs by local rank
        lines.append("--gpus-per-task=1" if args.via == "srun" else f"--gpus-per-node={args.gpus_per_node}")
    if args.cpus_per_task:
        lines.append(f"--cpus-per-task={args.cpus_per_task}")
    if args.account:
        lines.append(f"--account={args.account}")
    if args.via == "srun":
        lines += [f"--signal=USR1@{args.warning_s}", "--requeue"]  # USR1 goes to the srun tasks (the ranks)
    return lines


def srun_body(train: list[str]) -> list[str]:
    """The rendezvous runs srun; exit status 75 (preempted, checkpoint saved) requeues the job."""
    rendezvous = shlex.join([sys.executable, "-m", "twostream.launch.jobs.srun", "rendezvous", "--", *train])
    return [
        'echo "twostream: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $SLURM_NTASKS ranks by srun '
        'on $SLURM_JOB_NODELIST"',
        f"{rendezvous} && status=0 || status=$?",
        'if [ "$status" -eq 75 ]; then',
        '    echo "twostream: stopped on a preemption signal after a checkpoint; requeueing job $SLURM_JOB_ID"',
        '    scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"',
    ]


def horovodrun_body(args, train: list[str]) -> list[str]:
    """The allocation's nodes, SLOTS ranks each, given to horovodrun -H (it starts remote ranks over SSH)."""
    return [
        f"SLOTS={args.gpus_per_node or args.procs_per_node}",
        'NODES=$(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'HOSTS=$(for node in $NODES; do printf "%s:%s," "$node" "$SLOTS"; done)',
        "HOSTS=${HOSTS%,}",
        'NP=$(( $(echo "$NODES" | wc -w) * SLOTS ))',
        'echo "twostream: $NP ranks on $HOSTS (job ${SLURM_JOB_ID:-local})"',
        f'exec {shlex.quote(tool("horovodrun"))} -np "$NP" -H "$HOSTS" --{args.controller} {shlex.join(train)}',
    ]


def render(args, train_args: list[str]) -> str:
    """The sbatch script."""
    train = [tool("twostream"), "train", *train_args]
    body = srun_body(train) if args.via == "srun" else horovodrun_body(args, train)
    return "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {d}" for d in directives(args)),
            f"# Written by `twostream launch slurm --via {args.via}`.",
            "set -uo pipefail",
            *body,
            "",
        ]
    )


def absolute_paths(config) -> list[str]:
    """--data and the data.* paths as absolute paths (the job may start in another folder), as train arguments."""
    data = config.data
    paths = [
        f"data.{key}={os.path.abspath(getattr(data, key))}"
        for key in PATH_KEYS
        if getattr(data, key) and not os.path.isabs(getattr(data, key))
    ]
    return [item for path in paths for item in ("--set", path)]


def time_seconds(value: str) -> int:
    """SLURM's --time as seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (sbatch(1))."""
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # after a day count the fields are hours[:minutes[:seconds]]
        parts += [0] * (3 - len(parts))
        return int(days) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    to_seconds: dict[int, Callable[..., int]] = {  # by field count: each lambda takes that many fields
        1: lambda m: m * 60,
        2: lambda m, s: m * 60 + s,
        3: lambda h, m, s: h * 3600 + m * 60 + s,
    }
    return to_seconds[len(parts)](*parts)


def check(args) -> None:
    if args.nodes < 1:
        raise LaunchError(f"--nodes must be at least 1, got {args.nodes}")
    if args.gpus_per_node < 0 or args.procs_per_node < 1:
        raise LaunchError("--gpus-per-node must be >= 0 and --procs-per-node >= 1")
    if not TIME_FORMAT.match(args.time):
        raise LaunchError(f"--time {args.time!r} is not a SLURM time; write e.g. 30 (minutes), 04:00:00 or 1-12:00:00")
    limit = time_seconds(args.time)  # 0: no limit
    if args.via == "srun" and (args.warning_s < 1 or limit and args.warning_s >= limit):
        raise LaunchError(
            f"--warning-s {args.warning_s} must be more than 0 and less than --time {args.time} "
            f"({limit} s), or the job is signalled as soon as it starts"
        )
    if args.via == "srun" and args.controller != "gloo":
        raise LaunchError("--controller mpi needs --via horovodrun (srun ranks meet through Gloo's rendezvous)")


def run(args) -> int:
    from twostream.data.manifest import from_config

    check(args)
    config = config_args.preflight(args, [args.nodes * (args.gpus_per_node or args.procs_per_node)])
    from_config(config.data)  # a missing or empty data folder fails here, not in the job
    args.data = os.path.abspath(config.data.root)
    workdir = os.path.abspath(args.workdir)
    train_args = config_args.forward(args) + absolute_paths(config) + ["--workdir", workdir]
    script = os.path.abspath(args.script or os.path.join(workdir, "launch", "twostream.sbatch"))
    os.makedirs(os.path.dirname(script), exist_ok=True)
    os.makedirs(workdir, exist_ok=True)  # the job's --output lands there
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
    parser = commands.add_parser("slurm", help="write an sbatch script (ranks as srun tasks) and submit it")
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--gpus-per-node", type=int, required=True, help="one rank per GPU; 0 for CPU-only nodes")
    parser.add_argument("--procs-per-node", type=int, default=1, help="ranks per node when --gpus-per-node is 0")
    parser.add_argument("--time", required=True, help="wall-time limit, e.g. 04:00:00")
    parser.add_argument("--partition", required=True)
    parser.add_argument("--account", help="the account to charge (sites that require one)")
    parser.add_argument("--cpus-per-task", type=int, default=0, help="cores per rank (for its decode actors)")
    parser.add_argument("--job-name", default="twostream")
    parser.add_argument(
        "--via",
        choices=["srun", "horovodrun"],
        default="srun",
        help="srun: ranks as SLURM tasks, no SSH (default); horovodrun: horovodrun -H over SSH",
    )
    parser.add_argument(
        "--warning-s",
        type=int,
        default=300,
        help="srun: SIGUSR1 this many seconds before the time limit; the job checkpoints and requeues",
    )
    parser.add_argument("--controller", choices=["gloo", "mpi"], default="gloo", help="--via horovodrun only")
    parser.add_argument("--script", help="where to write the script (default WORKDIR/launch/twostream.sbatch)")
    parser.add_argument("--no-submit", action="store_true", help="write the script only")
    config_args.add_config_args(parser)
    parser.add_argument("--workdir", required=True, help="on a filesystem every node sees")
    parser.set_defaults(run=run)
