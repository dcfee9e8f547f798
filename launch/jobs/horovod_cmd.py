"""`twostream launch horovod`: builds the `horovodrun ... twostream train ...` command, prints or runs it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from twostream.launch import config_args


class LaunchError(ValueError):
    """A launcher's arguments do not fit together; the message names the fix."""


def tool(name: str) -> str:
    """The executable `name` installed next to this Python (the venv's), else the one on PATH."""
    beside = os.path.join(os.path.abspath(os.path.dirname(sys.executable)), name)
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if not found:
        raise LaunchError(
            f"'{name}' not found next to {sys.executable} nor on PATH; install twostream "
            "(make setup) or activate its virtualenv"
        )
    return found


def host_slots(hosts: str) -> list[tuple[str, int]]:
    """'a:4,b:4' -> [('a', 4), ('b', 4)]; a host without ':N' has one slot (horovodrun's rule)."""
    parsed = []
    for item in filter(None, (h.strip() for h in hosts.split(","))):
        name, _, slots = item.partition(":")
        if not name or (slots and not slots.isdigit()) or slots == "0":
            raise LaunchError(f"bad host {item!r} in -H {hosts!r}; write host:slots, e.g. -H node1:4,node2:4")
        parsed.append((name, int(slots or 1)))
    if not parsed:
        raise LaunchError("-H is empty; write host:slots, e.g. -H localhost:2")
    return parsed


def hostfile_slots(path: str) -> list[tuple[str, int]]:
    """Lines 'host slots=N' (the format of horovodrun, OpenMPI and the MPI operator); '#' starts a comment."""
    if not os.path.isfile(path):
        raise LaunchError(f"hostfile {path!r} not found")
    parsed = []
    for number, line in enumerate(open(path), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        slots = [w for w in words[1:] if w.startswith("slots=")]
        if len(words) > 2 or (words[1:] and not slots) or (slots and not slots[0][6:].isdigit()):
            raise LaunchError(f"{path}:{number}: {line.strip()!r} must look like 'hostname slots=4'")
        parsed.append((words[0], int(slots[0][6:]) if slots else 1))
    if not parsed:
        raise LaunchError(f"hostfile {path!r} lists no hosts; one line per host, e.g. 'node1 slots=4'")
    return parsed


MAX_COOLDOWN_S = 3600  # Horovod's own bound on a blacklisted host's cooldown


@dataclass(frozen=True)
class Elastic:
    """horovodrun's elastic mode: between min_np and max_np ranks, on the hosts a discovery script prints."""

    min_np: int
    max_np: int
    discovery_script: str  # an executable printing 'host:slots' lines, run again every second
    network_interface: str = ""  # e.g. lo or eth0; without it Horovod waits for 2 hosts before starting
    host_cooldown_s: int = 0  # Horovod's cooldown unit for a failed host (see cooldown_args); 0: never again

    def args(self, np: int) -> list[str]:
        if not os.path.isfile(self.discovery_script) or not os.access(self.discovery_script, os.X_OK):
            raise LaunchError(
                f"--host-discovery-script {self.discovery_script!r} must be an executable file that "
                "prints one 'host:slots' line per available host"
            )
        if not 1 <= self.min_np <= np <= self.max_np:
            raise LaunchError(f"elastic needs 1 <= --min-np ({self.min_np}) <= -np ({np}) <= --max-np ({self.max_np})")
        if not 0 <= self.host_cooldown_s <= MAX_COOLDOWN_S:
            raise LaunchError(
                f"--host-cooldown-s must be 0 (never again) to {MAX_COOLDOWN_S}, got {self.host_cooldown_s}"
            )
        return [
            "--min-np",
            str(self.min_np),
            "--max-np",
            str(self.max_np),
            "--host-discovery-script",
            os.path.abspath(self.discovery_script),
            *(["--network-interface", self.network_interface] if self.network_interface else []),
            *self.cooldown_args(),
        ]

    def cooldown_args(self) -> list[str]:
        """Horovod blacklists a host whose rank failed; with a cooldown it tries the host again after
        2^failures x host_cooldown_s plus up to one host_cooldown_s at random (2-3x at the first failure),
        at most MAX_COOLDOWN_S."""
        if not self.host_cooldown_s:
            return []
        return ["--blacklist-cooldown-range", str(self.host_cooldown_s), str(MAX_COOLDOWN_S)]

    def world_sizes(self) -> range:
        """Every number of ranks the job may pass through."""
        return range(self.min_np, self.max_np + 1)


def build_command(
    np: int,
    hosts: str | None,
    hostfile: str | None,
    train_args: list[str],
    controller: str = "gloo",
    extra: Sequence[str] = (),
    elastic: Elastic | None = None,
) -> list[str]:
    """horovodrun -np N (-H hosts | --hostfile F | elastic flags) --gloo|--mpi twostream train ARGS, checked."""
    if np < 1:
        raise LaunchError(f"-np must be at least 1, got {np}")
    if elastic is not None:
        if hosts or hostfile or controller != "gloo":
            raise LaunchError(
                "--elastic takes its hosts from --host-discovery-script (not -H/--hostfile) and "
                "needs the gloo controller"
            )
        return [
            tool("horovodrun"),
            "-np",
            str(np),
            *elastic.args(np),
            "--gloo",
            *extra,
            tool("twostream"),
            "train",
            *train_args,
            "--set",
            "train.elastic=true",
        ]
    if hosts and hostfile:
        raise LaunchError("pass either -H or --hostfile, not both")
    if hostfile:
        where, slots = ["--hostfile", os.path.abspath(hostfile)], hostfile_slots(hostfile)
    else:
        hosts = hosts or f"localhost:{np}"
        where, slots = ["-H", hosts], host_slots(hosts)
    total = sum(n for _, n in slots)
    if np > total:
        raise LaunchError(
            f"-np {np} needs {np} slots but the hosts offer {total} "
            f"({', '.join(f'{h}:{n}' for h, n in slots)}); lower -np or add slots, e.g. -H "
            f"{slots[0][0]}:{np - total + slots[0][1]}"
        )
    return [
        tool("horovodrun"),
        "-np",
        str(np),
        *where,
        f"--{controller}",
        *extra,
        tool("twostream"),
        "train",
        *train_args,
    ]


def stall_args(seconds: int) -> list[str]:
    """Horovod's stall check, made to end the job: a rank that stops taking part in collectives (hung, not
    dead) makes the others shut Horovod down after about `seconds` instead of waiting forever (0: off); and
    Gloo's timeout (default 30 s), after which a rank whose peer's host went silent gives up on it."""
    if seconds < 0:
        raise LaunchError(f"--stall-shutdown-s must be 0 (off) or a number of seconds, got {seconds}")
    return (
        [
            "--stall-check-warning-time-seconds",
            str(max(1, seconds // 2)),
            "--stall-check-shutdown-time-seconds",
            str(seconds),
            "--gloo-timeout-seconds",
            str(seconds),
        ]
        if seconds
        else []
    )


def run(args) -> int:
    elastic = (
        Elastic(
            args.min_np or args.np,
            args.max_np or args.np,
            args.host_discovery_script or "",
            args.network_interface or "",
            args.host_cooldown_s,
        )
        if args.elastic
        else None
    )
    command = build_command(
        args.np,
        args.hosts,
        args.hostfile,
        config_args.forward(args) + ["--workdir", args.workdir],
        args.controller,
        extra=stall_args(args.stall_shutdown_s),
        elastic=elastic,
    )
    # A bad value, a missing --data or a batch the ranks cannot split fails here, once, not on every rank.
    config_args.preflight(args, elastic.world_sizes() if elastic is not None else [args.np])
    print(shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(command)


def add_parser(commands) -> None:
    parser = commands.add_parser("horovod", help="run `twostream train` under horovodrun (-np N, hosts or hostfile)")
    parser.add_argument("-np", "--num-proc", dest="np", type=int, required=True, help="number of processes (ranks)")
    parser.add_argument("-H", "--hosts", help="host:slots list, e.g. node1:4,node2:4 (default localhost:NP)")
    parser.add_argument("--hostfile", help="file with lines 'hostname slots=N'")
    parser.add_argument(
        "--controller",
        choices=["gloo", "mpi"],
        default="gloo",
        help="gloo (default; what this build has) or mpi (a Horovod built with MPI)",
    )
    parser.add_argument(
        "--stall-shutdown-s",
        type=int,
        default=0,
        help="end the job when a rank hangs in a collective this long (default 0: wait)",
    )
    parser.add_argument(
        "--elastic",
        action="store_true",
        help="Horovod elastic: keep training when ranks die, take added hosts (needs the flags below)",
    )
    parser.add_argument("--min-np", type=int, help="elastic: fewest ranks to go on with (default -np)")
    parser.add_argument("--max-np", type=int, help="elastic: most ranks to grow to (default -np)")
    parser.add_argument("--host-discovery-script", help="elastic: executable printing 'host:slots' lines")
    parser.add_argument("--network-interface", help="elastic: interface for Gloo, e.g. eth0 (lo on one machine)")
    parser.add_argument(
        "--host-cooldown-s",
        type=int,
        default=0,
        help="elastic: try a host whose rank failed again after 2-3x this many seconds, twice that after a "
        "second failure, at most 1 h (default 0: never again in this job)",
    )
    config_args.add_config_args(parser)
    parser.add_argument("--workdir", required=True, help="checkpoints, logs and export (rank 0 writes)")
    parser.add_argument("--dry-run", action="store_true", help="print the horovodrun command, do not run it")
    parser.set_defaults(run=run)
