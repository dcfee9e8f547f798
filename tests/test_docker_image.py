"""The image, built and run for real: the project's Dockerfile built by a private Docker daemon
(scripts/docker_image.sh), and a `twostream launch k8s` MPIJob run from it as the MPI operator runs its pods
(scripts/docker_mpijob.sh): two workers running sshd -De under the entrypoint, each its own host of a namespace bed,
and a launcher running the MPIJob's horovodrun over SSH with the operator's key, hostfile and environment.

Only with TWOSTREAM_DOCKER=1 (`make docker-test`): it needs root, apt-get for docker.io and mmdebstrap, Debian's
mirror and PyPI. Measured on this machine (2 cores, shared, load 3-19): `make docker-test` 4.6 min with Horovod's
layer in the daemon's cache (1.1 min rebuilding the source layers, 3.4 min the runs: one epoch 54 s, the stop and
the retry 148 s); a cold `make image` 13.8 min, 7.6 of them Horovod's compile (1.7 min on a quiet machine).
Not run: a real Kubernetes (no kubelet, operator or cluster DNS; /etc/hosts stands for the Service), GPUs and NCCL.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.tensorflow

if os.environ.get("TWOSTREAM_DOCKER") != "1":
    pytest.skip(
        "builds and runs the Docker image for real (root, docker.io; ~5 min with a cached image, ~14 cold): "
        "TWOSTREAM_DOCKER=1, or `make docker-test`",
        allow_module_level=True,
    )

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SH = os.path.join(REPO, "scripts", "docker_image.sh")
MPIJOB_SH = os.path.join(REPO, "scripts", "docker_mpijob.sh")
NAME = "tsd"  # the MPIJob; its pods tsd-launcher, tsd-worker-0 and tsd-worker-1
GRACE_S = 120  # the MPIJob's terminationGracePeriodSeconds (`twostream launch k8s` default)
EPOCHS = 60  # the stopped job's: ~0.3 s each once running, so the stop lands mid-job and the retry ends in ~20 s


def _run(*command: str, timeout: float = 600) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _docker(*args: str, timeout: float = 600) -> str:
    return _run(IMAGE_SH, "docker", *args, timeout=timeout)


def _logs(container: str) -> str:
    """The container's output, stdout and stderr interleaved as written (`docker logs` splits them again)."""
    return subprocess.run(
        [IMAGE_SH, "docker", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ).stdout


@pytest.fixture(scope="module")
def image():
    """twostream:test in the private daemon, built from the Dockerfile (its layer cache kept between runs)."""
    _run(IMAGE_SH, "install", timeout=600)
    _run(IMAGE_SH, "start", timeout=120)
    try:
        _run(IMAGE_SH, "base", timeout=900)
        _run(IMAGE_SH, "build", timeout=2400)  # cold: Horovod compiles for ~9 min on 2 cores
        yield "twostream:test"
    finally:
        _run(IMAGE_SH, "stop", timeout=120)


@pytest.fixture(scope="module")
def claim(tiny_dataset, tmp_path_factory) -> str:
    """The ReadWriteMany claim's place: a host folder every pod mounts at /mnt/twostream, the videos in it."""
    folder = str(tmp_path_factory.mktemp("claim"))
    shutil.copytree(tiny_dataset, os.path.join(folder, "videos"))
    return folder


def _job(image, tmp_path, run: str, *settings: str) -> str:
    """The MPIJob `twostream launch k8s` writes: 2 workers x 1 slot, CPUs, the tiny preset."""
    out = str(tmp_path / f"{run}.yaml")
    _run(
        *(os.path.join(REPO, ".venv", "bin", "twostream"), "launch", "k8s", "--image", image, "--name", NAME),
        *("--workers", "2", "--slots-per-worker", "1", "--no-gpus", "--pvc", "claim", "--out", out),
        *("--preset", "tiny", "--data", "/mnt/twostream/videos", "--workdir", f"/mnt/twostream/runs/{run}"),
        *[item for setting in settings for item in ("--set", setting)],
    )
    return out


@pytest.fixture
def pods():
    """`up` a job; every container and the network removed after the test, whatever happened."""
    jobs = []

    def up(job: str, claim: str) -> None:
        jobs.append(job)
        _run(MPIJOB_SH, "up", job, claim, timeout=300)

    yield up
    for job in jobs:
        subprocess.run([MPIJOB_SH, "down", job], capture_output=True, timeout=300)


def _placement_while_running(job: str, timeout: float = 900) -> list[str]:
    """The ranks' placement once both run (read from their processes), then waits for the launcher to exit."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        lines = _run(MPIJOB_SH, "ranks", job).split("\n")
        seen = sorted({line for line in lines if line} | set(seen))
        if not _docker("inspect", "-f", "{{.State.Running}}", f"{NAME}-launcher").strip() == "true":
            return seen
        time.sleep(2)
    raise AssertionError(f"the launcher still runs after {timeout} s; ranks seen: {seen}")


def _exit_code(container: str) -> int:
    return int(_docker("inspect", "-f", "{{.State.ExitCode}}", container))


def _records(workdir: str, kind: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


@pytest.mark.timeout(3000)  # the first test builds the image: ~13 min cold
def test_one_epoch_with_two_ranks_on_two_worker_pods(image, claim, pods, tmp_path):
    job = _job(image, tmp_path, "one", "train.epochs=1")
    pods(job, claim)
    placement = _placement_while_running(job)
    logs = _logs(f"{NAME}-launcher")
    assert _exit_code(f"{NAME}-launcher") == 0, logs[-3000:]
    # rank R on pod tsd-worker-R, each at its own address, horovodrun's HOROVOD_HOSTNAME the operator's name for it
    assert [line.split()[2:4] for line in placement] == [["rank=0", "size=2"], ["rank=1", "size=2"]], placement
    pods_, addresses = {line.split()[0] for line in placement}, {line.split()[1] for line in placement}
    assert len(pods_) == 2 and len(addresses) == 2, placement
    for line in placement:
        pod = line.split()[0]
        assert line.endswith(f"host={pod}.{NAME}.default.svc"), placement
    # the ranks' output, through horovodrun: rank 0's final metrics
    assert re.search(r'^\[0\]<stdout>:\{"final": ', logs, re.M), logs[-3000:]
    # each worker's Ray kept its object store in the pod's memory-backed /dev/shm, not in /tmp (a container's own
    # /dev/shm is 64 MB)
    assert "instead of /dev/shm" not in logs, logs[-3000:]
    # and its decode actors wrote their clips into slots there (data/distributed/shared_slots.py), none fell back
    assert re.search(r"decode actors, .* [1-9]\d* write their clips into shared memory", logs), logs[-3000:]
    assert "for decoded clips" not in logs, logs[-3000:]
    # each worker's sshd let the launcher (host 1, 10.79.0.11) in with the job's key
    for i in range(2):
        assert "Accepted publickey for root from 10.79.0.11" in _logs(f"{NAME}-worker-{i}")
    [record] = _records(os.path.join(claim, "runs", "one"), "epoch")
    assert record["epoch"] == 1 and record["world_size"] == 2


@pytest.mark.timeout(1200)
def test_sigterm_stops_every_rank_at_a_checkpoint_and_the_retry_resumes(image, claim, pods, tmp_path):
    """`docker stop` is the kubelet's stop: SIGTERM to the container's first process, SIGKILL after the grace
    period. The entrypoint has every worker signal its ranks; they checkpoint and exit 75, horovodrun exits 1; the
    launcher's retry resumes from that checkpoint and finishes."""
    job = _job(image, tmp_path, "stop", f"train.epochs={EPOCHS}")
    workdir = os.path.join(claim, "runs", "stop")
    pods(job, claim)
    deadline = time.monotonic() + 600
    while not _records(workdir, "epoch"):  # training for real: a whole epoch behind it
        assert time.monotonic() < deadline, _logs(f"{NAME}-launcher")[-3000:]
        assert _docker("inspect", "-f", "{{.State.Running}}", f"{NAME}-launcher").strip() == "true"
        time.sleep(1)
    assert len(_run(MPIJOB_SH, "ranks", job).splitlines()) == 2  # both ranks still run
    started = time.monotonic()
    _docker("stop", "-t", str(GRACE_S), f"{NAME}-launcher", timeout=GRACE_S + 60)
    stopped_s = time.monotonic() - started
    logs = _logs(f"{NAME}-launcher")
    assert stopped_s < GRACE_S - 10, f"stopped only after {stopped_s:.0f} s (SIGKILL at {GRACE_S} s)\n{logs[-3000:]}"
    assert _exit_code(f"{NAME}-launcher") == 1, logs[-3000:]  # a rank exited 75: horovodrun's status 1
    for rank in (0, 1):  # each rank stopped on its own, saying where it resumes from
        assert re.search(rf"^\[{rank}\]<stderr>:twostream train: ", logs, re.M), logs[-3000:]
    assert _run(MPIJOB_SH, "ranks", job) == ""  # no rank left behind on any worker
    [preempted] = _records(workdir, "preempted")
    with open(os.path.join(workdir, "checkpoints", "checkpoint")) as f:
        latest = int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(), re.M).group(1))
    assert latest == preempted["step"]  # the stop's own checkpoint is the one a rerun resumes from
    # the launcher's retry (restartPolicy OnFailure: the kubelet starts the container again in its pod) resumes there
    _docker("start", f"{NAME}-launcher")
    assert _docker("wait", f"{NAME}-launcher", timeout=600).strip() == "0", _logs(f"{NAME}-launcher")[-3000:]
    assert f"restored /mnt/twostream/runs/stop/checkpoints/ckpt-{latest} (step {latest})" in _logs(f"{NAME}-launcher")
    assert [r["epoch"] for r in _records(workdir, "epoch")] == list(range(1, EPOCHS + 1))  # each epoch once
    # the operator then deletes the running workers (cleanPodPolicy: Running): no rank left, sshd stops at once
    _docker("stop", "-t", str(GRACE_S), f"{NAME}-worker-0", f"{NAME}-worker-1", timeout=GRACE_S + 60)
    assert [_exit_code(f"{NAME}-worker-{i}") for i in range(2)] == [143, 143]
