"""Horovod ranks started by SLURM's `srun`, not SSH: Horovod's Gloo rendezvous server runs in the batch step, and
each srun task sets Horovod's rank variables from its SLURM ones, then execs the training command.

    python -m twostream.launch.jobs.srun rendezvous -- twostream train ...   # in the sbatch script: runs srun
    python -m twostream.launch.jobs.srun task -- twostream train ...         # what srun starts, once per rank

The rank layout is Horovod's own (`get_host_assignments` over 'node:tasks' of the allocation, ranks filled node
by node), which is srun's block distribution; each task checks that SLURM placed it where that layout says.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from horovod.runner.common.util.hosts import SlotInfo, get_host_assignments, parse_hosts
from horovod.runner.http.http_server import RendezvousServer

HOSTS_VARIABLE = "TWOSTREAM_SRUN_HOSTS"  # 'node:tasks,...' from the batch step to every task


class SrunError(RuntimeError):
    """The SLURM environment does not match what the rendezvous expects; the message names the fix."""


def tasks_per_node(value: str) -> list[int]:
    """SLURM's compressed count list, e.g. SLURM_TASKS_PER_NODE '2(x3),1' -> [2, 2, 2, 1]."""
    counts = []
    for item in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not match:
            raise SrunError(f"cannot read tasks per node {value!r} (expected e.g. '2(x3),1')")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def node_names(nodelist: str) -> list[str]:
    """The allocation's node names in order: `scontrol show hostnames` expands SLURM's 'node[1-4]' form."""
    result = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
    if result.returncode != 0:
        raise SrunError(f"`scontrol show hostnames {nodelist}` failed: {result.stderr.strip()}")
    return result.stdout.split()


def plan(hosts: str) -> list[SlotInfo]:
    """Every rank's slot (host, rank, local and cross rank and sizes) for 'node:tasks,...', in rank order."""
    slots = parse_hosts(hosts)
    return get_host_assignments(slots, sum(host.slots for host in slots))


def rendezvous_address(nodes: list[str]) -> str:
    """This (the batch) node's address as the other nodes reach it; loopback when the job has one node."""
    if len(nodes) == 1:
        return "127.0.0.1"
    try:
        peer = socket.gethostbyname(nodes[1])
    except OSError as error:
        raise SrunError(
            f"cannot resolve node {nodes[1]!r} ({error}); the nodes must resolve each other's names"
        ) from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((peer, 9))  # UDP: no packet is sent; the kernel picks the route and its source address
        return probe.getsockname()[0]


def srun_command(command: list[str], environ=os.environ) -> list[str]:
    """srun with one task per rank of the allocation, block distribution (the layout `plan` assumes), each
    task wrapped by `task`. srun (SLURM >= 22.05) no longer takes --cpus-per-task from the job: passed on."""
    cpus = environ.get("SLURM_CPUS_PER_TASK")
    return [
        "srun",
        "--distribution=block",
        *([f"--cpus-per-task={cpus}"] if cpus else []),
        sys.executable,
        "-m",
        "twostream.launch.jobs.srun",
        "task",
        "--",
        *command,
    ]


def rendezvous(command: list[str]) -> int:
    """In the batch step: starts Horovod's rendezvous server for the allocation's layout, runs every rank with
    srun and returns srun's exit status (75: stopped on a preemption signal after a checkpoint)."""
    nodes = node_names(os.environ["SLURM_JOB_NODELIST"])
    counts = tasks_per_node(os.environ["SLURM_TASKS_PER_NODE"])
    if len(counts) != len(nodes):
        raise SrunError(f"{len(nodes)} nodes but {len(counts)} task counts in SLURM_TASKS_PER_NODE")
    hosts = ",".join(f"{node}:{count}" for node, count in zip(nodes, counts))
    server = RendezvousServer()
    port = server.start()
    server.init(plan(hosts))
    address = rendezvous_address(nodes)
    print(f"twostream: Gloo rendezvous at {address}:{port} for {hosts}", flush=True)
    env = {
        **os.environ,
        HOSTS_VARIABLE: hosts,
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": address,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
    }
    try:
        return subprocess.call(srun_command(command), env=env)
    finally:
        server.stop()


def task_environment(environ=os.environ) -> dict:
    """In an srun task: Horovod's variables for this task's slot, after checking SLURM placed it there."""
    rank = int(environ["SLURM_PROCID"])
    slots = plan(environ[HOSTS_VARIABLE])
    if len(slots) != int(environ["SLURM_NTASKS"]):
        raise SrunError(f"srun started {environ['SLURM_NTASKS']} tasks but the allocation has {len(slots)} slots")
    slot = slots[rank]
    node, local = environ.get("SLURMD_NODENAME", ""), int(environ["SLURM_LOCALID"])
    if (slot.hostname, slot.local_rank) != (node, local):
        raise SrunError(
            f"rank {rank} runs as local task {local} on {node!r} but block distribution puts it at "
            f"local task {slot.local_rank} on {slot.hostname!r}; start srun with --distribution=block"
        )
    return {
        "HOROVOD_HOSTNAME": slot.hostname,
        "HOROVOD_RANK": str(slot.rank),
        "HOROVOD_SIZE": str(slot.size),
        "HOROVOD_LOCAL_RANK": str(slot.local_rank),
        "HOROVOD_LOCAL_SIZE": str(slot.local_size),
        "HOROVOD_CROSS_RANK": str(slot.cross_rank),
        "HOROVOD_CROSS_SIZE": str(slot.cross_size),
        "HOROVOD_GLOO_IFACE": environ.get("HOROVOD_GLOO_IFACE")
        or interface_towards(environ["HOROVOD_GLOO_RENDEZVOUS_ADDR"]),
        "PYTHONUNBUFFERED": "1",
    }


def interface_towards(address: str) -> str:
    """The network interface this node uses to reach `address` (Gloo's ranks connect over it), e.g. eth0 or lo."""
    import psutil

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((address, 9))
        local = probe.getsockname()[0]
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == local for a in addresses):
            return name
    raise SrunError(f"no interface has the address {local} used to reach {address}; set HOROVOD_GLOO_IFACE")


def task(command: list[str]) -> None:
    """Replaces this process by `command` with Horovod's variables set: signals from SLURM reach it directly."""
    os.execvpe(command[0], command, {**os.environ, **task_environment()})


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("rendezvous", "task") or argv[1] != "--":
        print("usage: python -m twostream.launch.jobs.srun rendezvous|task -- COMMAND...", file=sys.stderr)
        return 2
    try:
        if argv[0] == "task":
            task(argv[2:])
        return rendezvous(argv[2:])
    except (SrunError, KeyError) as error:
        missing = f"{error} is not set: run this inside a SLURM job" if isinstance(error, KeyError) else error
        print(f"twostream srun {argv[0]}: error: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
