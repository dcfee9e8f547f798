"""One Ray per node: the ranks of a job on one machine share the Ray its local rank 0 starts
(trainer/runtime/ray_node.py)."""

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import psutil
import pytest
from conftest import REPO, VENV_BIN

INPUTS_HELPER = os.path.join(REPO, "tests", "helpers", "node_ray_inputs.py")
RANK_HELPER = os.path.join(REPO, "tests", "helpers", "node_ray_rank.py")


def _still_running(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def _video(root: str) -> str:
    return next(os.path.join(d, f) for d, _, fs in os.walk(root) for f in sorted(fs) if f.endswith(".avi"))


@pytest.mark.timeout(600)
@pytest.mark.tensorflow
def test_two_ranks_share_one_ray_and_leave_no_process_behind(tiny_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(
        [
            os.path.join(VENV_BIN, "horovodrun"),
            "-np",
            "2",
            "-H",
            "localhost:2",
            "--gloo",
            sys.executable,
            INPUTS_HELPER,
            str(tmp_path),
            f"data.root={tiny_dataset}",
            "data.num_actors=1",
            "data.object_store_mb=100",
            "train.global_batch=4",
        ],
        capture_output=True,
        text=True,
        timeout=560,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    first, second = sorted(ranks, key=lambda r: r["local_rank"])
    assert first["gcs"] == second["gcs"] and first["node"] == second["node"]  # one Ray: one GCS, one node
    started = [name for _, name in first["descendants"]]
    assert started.count("gcs_server") == 1 and started.count("raylet") == 1, started
    assert [name for _, name in second["descendants"]] == []  # the other rank started no Ray process
    assert first["batch"] == second["batch"] == [2, 4, 32, 32, 3]  # each rank decoded its half of the batch
    assert _still_running([pid for pid, _ in first["descendants"]]) == []  # stopped when the job ended
    assert first["folder"] == second["folder"] and not os.path.exists(first["folder"])


@pytest.mark.timeout(400)
def test_a_joined_rank_stops_with_one_message_when_local_rank_0_is_killed(tiny_dataset, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "PYTHONUNBUFFERED": "1"}
    key, video = f"test{os.getpid()}", _video(tiny_dataset)
    ranks = [
        subprocess.Popen(
            [sys.executable, RANK_HELPER, str(k), "2", key, video, "--hold"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"rank{k}.err", "w"),
        )
        for k in (0, 1)
    ]
    try:
        first, second = (json.loads(rank.stdout.readline() or "{}") for rank in ranks)  # both decoded a clip
        assert first and second, [(tmp_path / f"rank{k}.err").read_text()[-3000:] for k in (0, 1)]
        assert first["gcs"] == second["gcs"] and first["rgb_shape"] == second["rgb_shape"] == [4, 32, 32, 3]
        assert first["actor_pid"] != second["actor_pid"]  # actors per rank, as with a private Ray each
        listening = first["listening"] + second["listening"]
        assert listening and all(map(_is_loopback, listening)), listening  # loopback only, the joiner's too
        ranks[0].send_signal(signal.SIGTERM)  # no handler in the helper: it ends without cleaning up
        assert ranks[1].wait(timeout=240) == 1  # not a hang
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
    error = (tmp_path / "rank1.err").read_text()
    assert f"local rank 1 stops: local rank 0 (pid {first['pid']}), which ran this node's Ray, ended" in error
    assert _still_running([pid for pid, _ in first["descendants"]]) == []  # Ray's processes died with rank 0
    from twostream.trainer.runtime.ray_node import node_folder

    shutil.rmtree(node_folder(key), ignore_errors=True)  # rank 0 was killed before removing it


def test_a_rank_whose_local_rank_0_never_starts_gets_a_clear_error(monkeypatch, tmp_path):
    from twostream.trainer.runtime import ray_node

    monkeypatch.setattr(ray_node, "MEET_TIMEOUT_S", 0.3)
    monkeypatch.setattr(ray_node.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.raises(RuntimeError, match="local rank 1 waited 0s for local rank 0 in .*every one of the 2 local"):
        ray_node.SharedRay(ray_node.NodeRanks(local_rank=1, local_size=2, job_key="nobody"), 1, 100)


def test_each_job_meets_in_its_own_folder():
    from twostream.trainer.runtime.ray_node import node_folder

    assert node_folder("a") != node_folder("b") and os.path.basename(node_folder("a")).startswith("a-")


def test_a_new_job_removes_the_folders_of_jobs_whose_local_rank_0_was_killed(tmp_path):
    from twostream.trainer.runtime.ray_node import _remove_ended_jobs

    host = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, pid in [
        (f"ended-{host}", int(ended.stdout)),
        (f"running-{host}", os.getpid()),
        ("elsewhere-othermachine", int(ended.stdout)),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "rank.0").write_text(json.dumps({"pid": pid}))
    (tmp_path / f"waiting-{host}").mkdir()  # a rank waiting for its local rank 0
    _remove_ended_jobs(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["elsewhere-othermachine", f"running-{host}", f"waiting-{host}"]
