"""Ray for this process: a private Ray listening on loopback only, or a join to a running cluster."""
from __future__ import annotations

import contextlib
import os
import signal
import threading

import ray


def start_ray(address: str | None, num_cpus: int | None = None, object_store_mb: int = 1024) -> None:
    """Joins the cluster at `address` (or $RAY_ADDRESS), else starts a private Ray, with no dashboard, that
    listens on loopback only (its GCS, raylet, workers, agents and autoscaler monitor)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        join_ray(address)
        return
    with _loopback_node_address(), _ignoring_warning_signal():
        ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=False,
                 configure_logging=False, object_store_memory=object_store_mb * 1024 * 1024)


@contextlib.contextmanager
def _loopback_node_address():
    """A Ray node listens on its node address; a new one takes the routable address unless Ray's cluster mode is
    off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read once when ray is imported), when it takes 127.0.0.1. Off only
    while this process starts its private Ray: a driver joining a cluster must stay reachable from other nodes."""
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
    if threading.current_thread() is not threading.main_thread():   # Python sets handlers only there
        yield
        return
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def join_ray(address: str, log_to_driver: bool = False) -> None:
    """Connects to a running Ray cluster; a refusal becomes one message naming the address and Ray's token."""
    try:
        ray.init(address=address, log_to_driver=log_to_driver, configure_logging=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as error:
        raise ConnectionError(
            f"could not join the Ray cluster at {address} ({error}). Check the address (`ray start --head` prints "
            "it); a cluster with token authentication needs its token here: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token) as on the head") from None
