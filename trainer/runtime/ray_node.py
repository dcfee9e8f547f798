"""Ray for this process: a join to a running cluster, a private Ray on loopback, or the one Ray its node's ranks share.

The ranks of one job on one machine share one Ray: local rank 0 starts it (in its own process, as a private Ray,
listening on loopback only) and the other local ranks join it as further drivers; each rank's DecoderPool creates
its own actors there. They meet through files in a folder of their job on this machine (`node_folder`):

    rank.<k>    written by every local rank first: its pid, the CPUs it may run on and the CPUs its actors need
    head        written by local rank 0 once Ray is up: the address to join and Ray's authentication mode
    members     each joined rank holds a shared lock on it while it uses the node's Ray (the kernel drops the
                lock when the process ends, however it ends); local rank 0 takes it exclusively before stopping Ray

Ray's processes are children of local rank 0 and die with it (Ray starts them with PR_SET_PDEATHSIG), so nothing
is left behind even when that rank is killed; a joined rank then stops with one clear error instead of waiting
for a Ray that is gone (`_exit_when_gone`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import math
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TextIO

import ray

from twostream.trainer.runtime.resources import usable_cores

log = logging.getLogger(__name__)
MEET_TIMEOUT_S = 300.0  # how long a rank waits for the others of its node (they import TensorFlow meanwhile)
LEAVE_TIMEOUT_S = 120.0  # how long local rank 0 waits for the others to leave before it stops the node's Ray
CONNECT_TIMEOUT_S = 30.0  # how long a join waits for a cluster's address to answer (config: data.ray_connect_timeout_s)
_node_ray = None  # this process's SharedRay, when it takes part in one


@dataclass(frozen=True)
class NodeRanks:
    """This rank's place among the ranks of its job on this machine."""

    local_rank: int
    local_size: int
    job_key: str  # the same on every rank of the job and different for every job (two jobs on one node)


def start_ray(
    address: str | None,
    num_cpus: float | None = None,
    object_store_mb: int = 1024,
    node: NodeRanks | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> None:
    """Joins the cluster at `address` (or $RAY_ADDRESS; refused after `connect_timeout_s` when it does not
    answer); else, with `node` naming two or more ranks on this machine, takes part in the Ray they share; else
    starts a private Ray. `num_cpus`: the logical CPUs this process's actors reserve; a Ray started here offers
    at least the cores its ranks may use (trainer/runtime/resources.py). `object_store_mb`: this rank's share of
    the object store."""
    global _node_ray
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        join_ray(address, connect_timeout_s=connect_timeout_s)
    elif node is None or node.local_size == 1:
        start_private_ray(max(usable_cores(), math.ceil(num_cpus or 0)), object_store_mb)
    else:
        _node_ray = SharedRay(node, math.ceil(num_cpus or 0), object_store_mb)


def stop_ray() -> None:
    """Leaves the node's shared Ray (local rank 0: stops it once the node's other ranks have left). A private
    Ray or a joined cluster is left as it is (a private Ray stops when this process ends)."""
    global _node_ray
    if _node_ray is not None:
        _node_ray.leave()
        _node_ray = None


PRIVATE_RAY_CONFIG = {
    # Ray's default, nice 15, starved the decode actors beside the busy trainer: `make demo` waited 10-13% for data
    # in 2 of 6 epochs, 0.8-1.6% with nice 0
    "worker_niceness": 0,
    # No idle workers started ahead or kept for tasks (this Ray runs actors only: a restarted actor starts its own),
    # and no metrics nobody reads (it has no dashboard): an idle Ray with one decode actor used 37 ms of CPU a second
    # against 42 (no idle worker's 6 ms; benchmarks/ray_idle.py), which the actors' CPU per clip carries.
    "enable_worker_prestart": False,
    "num_workers_soft_limit": 0,
    "enable_metrics_collection": False,
}


def start_private_ray(num_cpus: int, object_store_mb: int) -> None:
    """A Ray of this process alone, with no dashboard and no monitors, that listens on loopback only (its GCS,
    raylet, workers and agents); its processes die with this one. Always a new one (address "local"): without
    it Ray joins the cluster a `ray start` on this machine recorded in /tmp/ray/ray_current_cluster (and fails
    when given num_cpus, or when that cluster has ended)."""
    with _loopback_node_address(), _ignoring_warning_signal(), _without_monitors():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=object_store_mb * 1024 * 1024,
            _system_config=PRIVATE_RAY_CONFIG,
        )
    atexit.unregister(_stop_private_ray)  # once, however many times a process starts one
    atexit.register(_stop_private_ray)  # runs before Ray's own exit hook (registered when ray was imported)


def _stop_private_ray() -> None:
    """Stops the private Ray at exit without the half second Ray's exit hook sleeps for its drivers' log lines to
    print (this driver receives none: log_to_driver=False)."""
    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def _without_monitors():
    """The Ray `ray.init` starts has no autoscaler monitor and no log monitor (Ray's own switches, RayParams'
    no_monitor and include_log_monitor, which `ray.init` does not take): a private Ray has a fixed size and its
    workers' logs stay in its session folder (log_to_driver=False). The log monitor polls those files, about 6 ms of
    CPU a second (benchmarks/ray_idle.py), and the autoscaler monitor, stopped after the GCS it reports its end
    to, held up every stop by its second of grace (ray.shutdown took 1.4 s, 0.4 s without it)."""
    from ray._private import parameter

    original = parameter.RayParams

    class WithoutMonitors(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{"no_monitor": True, "include_log_monitor": False, **kwargs})

    parameter.RayParams = WithoutMonitors
    try:
        yield
    finally:
        parameter.RayParams = original


@contextlib.contextmanager
def _loopback_node_address():
    """A Ray node listens on its node address; a new one takes the routable address unless Ray's cluster mode is
    off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read once when ray is imported), when it takes 127.0.0.1. Off only
    while this process starts its private Ray or joins its node's (a joining driver would otherwise rewrite
    127.0.0.1 to the routable address, where nothing listens): a driver joining a cluster must stay reachable."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def _ignoring_warning_signal():
    """The private Ray's processes start with SIGUSR1 ignored (they inherit it): a scheduler's warning signal
    (SLURM --signal=USR1@N) reaches every process of the job step, and by default it kills Ray's agents and
    workers, which takes the node down while the rank, which handles it, is stopping at a checkpoint."""
    if threading.current_thread() is not threading.main_thread():  # Python sets handlers only there
        yield
        return
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def join_ray(address: str, log_to_driver: bool = False, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connects to a running Ray cluster; an address that does not answer within `connect_timeout_s`, or a
    refusal, becomes one message naming the address (and Ray's token)."""
    wait_until_answers(address, connect_timeout_s)
    try:
        ray.init(address=address, log_to_driver=log_to_driver, configure_logging=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as error:
        raise ConnectionError(
            f"could not join the Ray cluster at {address} ({error}). Check the address (`ray start --head` prints "
            "it); a cluster with token authentication needs its token here: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) as on the head"
        ) from None


def wait_until_answers(address: str, timeout_s: float) -> None:
    """Returns once something accepts a TCP connection at `address` (HOST:PORT); a ConnectionError after
    `timeout_s`. Ray itself retries a silent address for minutes, printing warnings, deaf to SIGTERM while it
    waits in its C++ client; this wait is plain Python, so a signal ends it at once. Other address forms
    (ray://, auto) are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    host = host.strip("[]")  # an IPv6 address in brackets
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host, int(port)), timeout=max(0.1, min(2.0, left))).close()
            return
        except OSError as error:
            if left <= 0.5:
                raise ConnectionError(
                    f"the Ray cluster at {address} did not answer within {timeout_s:g}s ({error.strerror or error}). "
                    "Check the address (`ray start --head` prints it) and that the head is running and reachable; "
                    "a slow head: raise data.ray_connect_timeout_s"
                ) from None
            time.sleep(0.5)  # a head still starting answers soon


# ---------------------------------------------------------------------------------- the node's shared Ray
def node_folder(job_key: str) -> str:
    """Where the ranks of job `job_key` on this machine meet: private to this user, named after the machine too
    in case a temporary folder is shared between machines."""
    return os.path.join(tempfile.gettempdir(), f"twostream-ray-{os.getuid()}", f"{job_key}-{socket.gethostname()}")


class SharedRay:
    """This rank's part in its node's Ray: local rank 0 starts it and stops it last; the others join and leave."""

    def __init__(self, node: NodeRanks, num_cpus: int, object_store_mb: int):
        self.node, self.folder = node, node_folder(node.job_key)
        self.starter = node.local_rank == 0
        self._members: TextIO | None = None  # the open `members` file whose lock this rank holds (a joined rank)
        self._left = threading.Event()
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        _write_json(
            self._path(f"rank.{node.local_rank}"),
            {
                "pid": os.getpid(),
                "cpus": sorted(os.sched_getaffinity(0)),
                "usable": usable_cores(),
                "num_cpus": num_cpus,
                "object_store_mb": object_store_mb,
            },
        )
        if not self.starter:
            self._join()
            return
        _remove_ended_jobs(os.path.dirname(self.folder))
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)  # the others see rank 0 end and say so
            raise

    def _path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def _start(self) -> None:
        ranks = [self._wait_for(f"rank.{k}", f"local rank {k}", None) for k in range(self.node.local_size)]
        cpus = set().union(*(rank["cpus"] for rank in ranks))
        # The node's cores the job may use (each rank's affinity; under SLURM each task's grant), and room for
        # every rank's actors.
        num_cpus = max(min(len(cpus), sum(r["usable"] for r in ranks)), sum(r["num_cpus"] for r in ranks))
        object_store_mb = sum(r["object_store_mb"] for r in ranks)
        started = time.monotonic()
        with _affinity(cpus):  # Ray's processes serve every local rank: they may run on any rank's CPUs
            start_private_ray(num_cpus, object_store_mb)
        _write_json(
            self._path("head"),
            {"address": ray.get_runtime_context().gcs_address, "auth_mode": os.environ.get("RAY_AUTH_MODE", "")},
        )
        log.info(
            "started this node's Ray for %d local ranks in %.1fs: %d CPUs, %d MiB object store",
            self.node.local_size,
            time.monotonic() - started,
            num_cpus,
            object_store_mb,
        )

    def _join(self) -> None:
        starter = self._wait_for("rank.0", "local rank 0", None)["pid"]
        head = self._wait_for("head", f"local rank 0 (pid {starter}) to start this node's Ray", starter)
        if head["auth_mode"] and os.environ.get("RAY_AUTH_MODE") != head["auth_mode"]:
            _set_auth_mode(head["auth_mode"])  # the starter's token (~/.ray/auth_token or RAY_AUTH_TOKEN*) is ours
        self._members = open(self._path("members"), "a")
        fcntl.flock(self._members, fcntl.LOCK_SH)  # held until leave() or this process ends
        threading.Thread(target=self._exit_when_gone, args=(starter,), daemon=True, name="node-ray-watch").start()
        try:
            with _loopback_node_address():
                ray.init(address=head["address"], log_to_driver=False, configure_logging=False)
        except (ConnectionError, ray.exceptions.AuthenticationError) as error:
            raise ConnectionError(
                f"local rank {self.node.local_rank} could not join this node's Ray at "
                f"{head['address']}, started by local rank 0 (pid {starter}): {error}"
            ) from None

    def _wait_for(self, name: str, what: str, starter: int | None) -> dict:
        """The JSON in file `name`, once written; a clear error after MEET_TIMEOUT_S, or at once if the starter
        (a pid) ended."""
        deadline = time.monotonic() + MEET_TIMEOUT_S
        while not os.path.exists(self._path(name)):
            if starter is not None and not _alive(starter):
                raise RuntimeError(
                    f"local rank {self.node.local_rank}: local rank 0 (pid {starter}) ended before "
                    "starting this node's Ray; see its error"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"local rank {self.node.local_rank} waited {MEET_TIMEOUT_S:.0f}s for {what} in {self.folder}: "
                    f"every one of the {self.node.local_size} local ranks must start (see the missing one's error)"
                )
            time.sleep(0.1)
        with open(self._path(name)) as f:
            return json.load(f)

    def _exit_when_gone(self, starter: int) -> None:
        """Ends this process, with one message, when local rank 0 ends while this rank still uses its Ray (the
        node's Ray has ended with it); Ray alone would retry for a minute, then exit with a GCS error."""
        _wait_until_ended(starter)
        if not self._left.is_set():
            print(
                f"twostream: local rank {self.node.local_rank} stops: local rank 0 (pid {starter}), which ran "
                "this node's Ray, ended, and the decode actors ended with it; see its error",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)

    def leave(self) -> None:
        """A joined rank disconnects and releases its lock; local rank 0 waits (at most LEAVE_TIMEOUT_S) for the
        others' locks, then stops the node's Ray (its own processes only) and removes the meeting folder."""
        if not self.starter:
            self._left.set()
            ray.shutdown()
            assert self._members is not None, "__init__ (_join) opens it: a rank whose join failed has no object"
            self._members.close()  # releases the lock
            return
        with open(self._path("members"), "a") as members:
            if not _lock_within(members, LEAVE_TIMEOUT_S):
                log.warning("local ranks still use this node's Ray after %.0fs; stopping it anyway", LEAVE_TIMEOUT_S)
            ray.shutdown()
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_ended_jobs(parent: str) -> None:
    """Removes the meeting folders of earlier jobs whose local rank 0 has ended without removing its own (it was
    killed); their Ray ended with it. A folder with no rank 0 yet may be a rank waiting for it: kept. Only this
    machine's folders: another machine's pids mean nothing here."""
    for name in os.listdir(parent):
        if not name.endswith(f"-{socket.gethostname()}"):
            continue
        try:
            with open(os.path.join(parent, name, "rank.0")) as f:
                ended = not _alive(json.load(f)["pid"])
        except (OSError, ValueError, KeyError):
            continue
        if ended:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _write_json(path: str, value: dict) -> None:
    """Atomically: a reader sees the whole file or none."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def _alive(pid: int) -> bool:
    """False once the process has ended, also while it waits to be reaped (a zombie) by its launcher."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # the state, after the command name
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_until_ended(pid: int) -> None:
    try:
        with os.fdopen(os.pidfd_open(pid)) as pidfd:  # Linux 5.3+: readable once the process has ended
            select.select([pidfd], [], [])
    except ProcessLookupError:
        return
    except OSError:  # no pidfd here: look once a second
        while _alive(pid):
            time.sleep(1)


def _lock_within(file, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


@contextlib.contextmanager
def _affinity(cpus: set[int]):
    """This thread (and the processes it starts) may run on `cpus` meanwhile; under SLURM's task binding these are
    the CPUs of all of the node's tasks, which the job's cgroup allows."""
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as error:  # a CPU outside this process's cgroup: Ray runs on this rank's CPUs
        log.warning("this node's Ray runs on local rank 0's CPUs only (%s)", error)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _set_auth_mode(mode: str) -> None:
    """Ray reads RAY_AUTH_MODE into its config when imported; a joined driver takes the starter's mode (Ray turns
    token authentication on for a new local Ray by itself) and reloads the config and token as Ray does."""
    # Ray's _raylet.pyi stub lists only part of the compiled module; both names exist in it at run time
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    os.environ["RAY_AUTH_MODE"] = mode
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
