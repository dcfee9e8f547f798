"""`twostream launch ray` submitted as a Ray job (`ray job submit --working-dir .`) to a head started here."""

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from conftest import REPO, VENV_BIN
from helpers.records import final_record

RAY = os.path.join(VENV_BIN, "ray")
LISTENERS = os.path.join(REPO, "tests", "helpers", "ray_listeners.py")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _our_processes(marker: str) -> list[int]:
    """Processes of this head only (their command line names its private temp dir), never Ray's of others."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.fixture
def ray_head(tmp_path):
    """A one-node Ray cluster on loopback, 4 logical CPUs, dashboard (the job server) on 127.0.0.1 only.

    Stopped by process id, not `ray stop`: `ray stop` kills every Ray process of this user on the machine,
    including the private Rays of other test runs sharing it."""
    gcs, dashboard, *other = _free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="tsray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Token authentication on, with a token of this test's own (the head, the job CLI and the driver share it).
    env.update(
        PATH=f"{os.path.abspath(VENV_BIN)}:{os.environ['PATH']}",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
    )
    log = open(tmp_path / "ray_head.log", "w")
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--num-cpus=4",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={other[0]}",
            f"--dashboard-agent-listen-port={other[1]}",
            f"--dashboard-agent-grpc-port={other[2]}",
            f"--runtime-env-agent-port={other[3]}",
            f"--metrics-export-port={other[4]}",
            f"--node-manager-port={other[5]}",
            f"--object-manager-port={other[6]}",
            "--object-store-memory=300000000",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=5).read()
                break
            except urllib.error.HTTPError:  # it answers (401 without Ray's auth token): it is up
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("Ray head did not start: " + open(tmp_path / "ray_head.log").read()[-3000:])
                time.sleep(1)
        yield f"127.0.0.1:{gcs}", url, env
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for pid in [head.pid, *_our_processes(temp_dir)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(360)
@pytest.mark.tensorflow
def test_ray_job_trains_two_horovod_workers(ray_head, tiny_dataset, tmp_path):
    address, dashboard, env = ray_head
    workdir = str(tmp_path / "ray_run")
    submit = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            dashboard,
            "--working-dir",
            REPO,
            "--",
            "twostream",
            "launch",
            "ray",
            "--address",
            address,
            "--num-workers",
            "2",
            "--preset",
            "tiny",
            "--data",
            tiny_dataset,
            "--workdir",
            workdir,
            "--set",
            "data.num_actors=1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=330,
    )
    output = submit.stdout + submit.stderr
    assert submit.returncode == 0 and "succeeded" in output, output[-5000:]
    final = final_record(output)
    assert final["world_size"] == 2 and final["final"]["clips"] > 0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    assert [r["world_size"] for r in epochs] == [2] and epochs[0]["clips_failed"] == 0
    # Each rank's decode actor ran on that rank's own Ray node: the actors report their node and each rank's
    # DecoderPool compares (INFO on rank 0; a warning, which every rank logs, for an actor elsewhere).
    assert "1 decode actors, 1 of them on this process's Ray node" in output, output[-5000:]
    assert "no room left there" not in output
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))


def test_no_cluster_address_is_a_clear_error(monkeypatch, capsys):
    from twostream.launch import cli

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cli.main(["launch", "ray", "--num-workers", "2", "--preset", "tiny", "--data", "d", "--workdir", "w"]) == 2
    assert "no Ray cluster: pass --address HOST:PORT" in capsys.readouterr().err


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def _listeners(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = env if env is not None else {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, LISTENERS, *args], capture_output=True, text=True, timeout=170, env=env)


@pytest.mark.timeout(180)
def test_private_ray_listens_on_loopback_only_and_outlives_the_warning_signal():
    """What `twostream train` starts without a cluster: no process of it listens beyond this machine."""
    result = _listeners()
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    names = " ".join(name for _, name, _, _ in found["listening"])
    for process in ["gcs_server", "raylet", "DashboardAgent", "RuntimeEnvAgent", "ClipDecoder"]:
        assert process in names, names  # each kind of Ray process was looked at
    assert [entry for entry in found["listening"] if not _is_loopback(entry[2])] == []
    assert found["actor_nodes"] == [found["node"]]
    assert found["killed_by_usr1"] == []  # SLURM's warning signal leaves the private Ray running


@pytest.mark.timeout(240)
def test_joining_a_token_cluster_needs_its_token_and_works_with_it(ray_head, tmp_path):
    address, _, env = ray_head
    joined = _listeners(address, env={**env, "HOME": str(tmp_path)})  # RAY_AUTH_MODE=token, RAY_AUTH_TOKEN
    assert joined.returncode == 0, joined.stderr[-3000:]
    found = json.loads(joined.stdout.strip().splitlines()[-1])
    assert found["actor_nodes"] == [found["node"]]
    no_token = {k: v for k, v in env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    refused = _listeners(address, env={**no_token, "HOME": str(tmp_path)})  # and no ~/.ray/auth_token
    assert refused.returncode != 0
    assert f"could not join the Ray cluster at {address}" in refused.stderr and "RAY_AUTH_TOKEN" in refused.stderr


@pytest.mark.parametrize("command", ["train", "launch"])
@pytest.mark.tensorflow
def test_a_ray_address_that_does_not_answer_is_refused_in_one_line(command, tiny_dataset, tmp_path):
    """Ray alone retries such an address for minutes, printing warnings; here the wait ends at the limit."""
    (closed,) = _free_ports(1)  # nothing listens there
    address = f"127.0.0.1:{closed}"
    where = (
        ["train", "--set", f"data.ray_address={address}"]
        if command == "train"
        else ["launch", "ray", "--address", address, "--num-workers", "2"]
    )
    done = subprocess.run(
        [
            os.path.join(VENV_BIN, "twostream"),
            *where,
            "--preset",
            "tiny",
            "--data",
            tiny_dataset,
            "--workdir",
            str(tmp_path / "run"),
            "--set",
            "data.ray_connect_timeout_s=5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    refusals = [line for line in done.stderr.splitlines() if address in line]
    assert (
        len(refusals) == 1 and "did not answer within 5s" in refusals[0] and "data.ray_connect_timeout_s" in refusals[0]
    ), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "gcs_client" not in done.stderr
