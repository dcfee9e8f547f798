"""The Ray `twostream train` starts is its own: a `ray start` on the machine, or the stale address file one leaves,
never makes it join another cluster (trainer/runtime/ray_node.py); and a pool that cannot start says how many actors
did."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import VENV_BIN, run_cli
from test_launch_ray import _free_ports, _our_processes

RAY = os.path.join(VENV_BIN, "ray")
START_RAY = (
    "import ray; from twostream.trainer.runtime.ray_node import start_ray; start_ray(None, num_cpus=1, "
    "object_store_mb=100); print(ray.get_runtime_context().gcs_address)"
)


def _sessions(ray_temp: str) -> list[str]:
    return sorted(name for name in os.listdir(ray_temp) if name.startswith("session_2"))


@pytest.fixture
def ray_tmpdir():
    """(RAY_TMPDIR, the Ray folder in it): Ray's default /tmp/ray, private to this test (the address file a
    `ray start` writes, and which a ray.init without an address reads, lies in it)."""
    root = tempfile.mkdtemp(prefix="tspr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    os.makedirs(os.path.join(root, "ray"))
    yield root, os.path.join(root, "ray")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ray_start_here(ray_tmpdir, tmp_path):
    """A `ray start --head` on this machine as a Ray user runs it (its address recorded in ray_current_cluster),
    on free ports, stopped by its process ids afterwards (never `ray stop`: it stops every Ray on the machine)."""
    root, ray_temp = ray_tmpdir
    gcs, *other = _free_ports(8)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=root, RAY_USAGE_STATS_ENABLED="0", PATH=f"{os.path.abspath(VENV_BIN)}:{os.environ['PATH']}")
    log = open(tmp_path / "ray_start.log", "w")
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--num-cpus=1",
            "--include-dashboard=false",
            f"--ray-client-server-port={other[0]}",
            f"--dashboard-agent-listen-port={other[1]}",
            f"--dashboard-agent-grpc-port={other[2]}",
            f"--runtime-env-agent-port={other[3]}",
            f"--metrics-export-port={other[4]}",
            f"--node-manager-port={other[5]}",
            f"--object-manager-port={other[6]}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join(ray_temp, "ray_current_cluster")):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start did not start: " + (tmp_path / "ray_start.log").read_text()[-3000:])
            time.sleep(0.5)
        yield root, ray_temp
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in [head.pid, *_our_processes(root)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@pytest.mark.timeout(400)
@pytest.mark.tensorflow
def test_train_beside_a_ray_start_runs_on_its_own_ray(ray_start_here, tiny_dataset, tmp_path):
    root, ray_temp = ray_start_here
    before = _sessions(ray_temp)  # the `ray start`'s session
    done = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        str(tmp_path / "run"),
        env={"RAY_TMPDIR": root, "RAY_ADDRESS": ""},
        timeout=360,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "num_cpus and num_gpus must not be provided" not in done.stderr
    assert len(before) == 1 and len(_sessions(ray_temp)) == 2  # train started a Ray (a session) of its own


def test_a_stale_ray_current_cluster_is_ignored(ray_tmpdir):
    """What a `ray start` that has ended leaves behind: an address file naming a cluster that is gone."""
    root, ray_temp = ray_tmpdir
    (gone,) = _free_ports(1)
    with open(os.path.join(ray_temp, "ray_current_cluster"), "w") as f:
        f.write(f"127.0.0.1:{gone}")
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": root}
    done = subprocess.run([sys.executable, "-c", START_RAY], capture_output=True, text=True, env=env, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] != f"127.0.0.1:{gone}"  # a new Ray, not the one the file names
    assert len(_sessions(ray_temp)) == 1


def test_a_pool_that_cannot_start_names_its_real_count(ray_session):
    """3 CPUs per actor on a 2-CPU Ray: none can start; the error counts the actors asked for, not an emptied list."""
    from twostream.data.distributed.actors import DecoderPool
    from twostream.trainer import config as config_lib

    with pytest.raises(
        RuntimeError,
        match=r"only 0 of 2 decode actors \(3.0 CPU each\) started within 1s; the "
        r"Ray cluster has 2 CPUs",
    ):
        DecoderPool(
            config_lib.load("tiny").clip, num_actors=2, clips_per_call=1, cpus_per_actor=3.0, start_timeout_s=1.0
        )


def test_a_private_ray_keeps_no_idle_worker_and_no_monitors(ray_session):
    """It runs actors only: no worker started ahead or kept for tasks (PRIVATE_RAY_CONFIG), and neither of the
    monitors `ray.init` starts (autoscaler, logs: ray_node._without_monitors), whose polling the actors' CPU per clip
    would carry. With Ray's defaults a 2-CPU Ray keeps a `ray::IDLE` beside a 1-CPU actor."""
    import psutil

    from twostream.data.distributed.actors import DecoderPool
    from twostream.trainer import config as config_lib

    pool = DecoderPool(config_lib.load("tiny").clip, num_actors=1, clips_per_call=1)
    try:
        time.sleep(3)  # Ray ends an idle worker beyond its soft limit after 1 s (idle_worker_killing_time_threshold_ms)
        children = psutil.Process().children(recursive=True)
        names = [process.name() for process in children]
        assert "ray::ClipDecoder" in names and "ray::IDLE" not in names, names
        scripts = [os.path.basename(word) for process in children for word in process.cmdline()[:3]]
        assert "raylet" in names and not {"monitor.py", "log_monitor.py"} & set(scripts), scripts
    finally:
        pool.shutdown()


def test_waiting_for_a_silent_address_obeys_sigterm():
    (closed,) = _free_ports(1)
    script = (
        "from twostream.trainer.runtime.ray_node import join_ray; print('waiting', flush=True); "
        f"join_ray('127.0.0.1:{closed}', connect_timeout_s=300)"
    )
    waiting = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert waiting.stdout.readline() == "waiting\n"
        time.sleep(1)  # inside the wait
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(timeout=60) == -signal.SIGTERM  # ended by the signal, long before the 300 s limit
    finally:
        waiting.kill()
        waiting.wait()
