"""`twostream launch slurm` on a real two-node SLURM: slurmctld on node1 and a slurmd on each of two network-namespace
hosts (tests/helpers/hosts.py, host_services.py), each with its own address, hostname and sshd.

Proven here: srun ranks on both nodes, the ranks of a node sharing that node's one Ray; SLURM's warning signal
stopping every rank at one step, the requeued job resuming on the two nodes, scancel and a resubmission recording
every epoch once; and `--via horovodrun` starting node2's rank over real SSH with the same result as srun.
"""

import json
import os
import re
import subprocess
import time

import pytest
from conftest import VENV_BIN
from helpers.host_services import SshAccess, start_slurm, stop_slurm
from helpers.hosts import make_hosts
from helpers.records import final_record

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

NODES = 2
EPOCHS, STEPS_PER_EPOCH = 4, 5  # of the requeued job: tiny preset on the test's 22 training clips, global batch 4
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """Two hosts, an sshd on each and SLURM across them; the Hosts, whose env reaches SLURM (SLURM_CONF, PATH)."""
    folder = tmp_path_factory.mktemp("slurm_hosts")
    with make_hosts(NODES) as hosts:
        ssh = SshAccess(str(folder / "ssh"))
        try:
            ssh.start(hosts)  # first: slurmd's jobs inherit the ssh client config bound on the hosts
            hosts.env["SLURM_CONF"] = start_slurm(hosts, str(folder / "slurm"))
            hosts.env["PATH"] = f"{os.path.abspath(VENV_BIN)}:{os.environ['PATH']}"
            hosts.ssh = ssh
            yield hosts
        finally:
            stop_slurm(hosts, str(folder / "slurm"))
            ssh.cleanup()


def _on_node1(bed, *command: str) -> subprocess.CompletedProcess:
    """A SLURM command, run where SLURM is reachable: on a host (this machine has no route to them)."""
    return bed.run(1, list(command), timeout=120)


def _submit(bed, dataset: str, workdir: str, procs_per_node: int, epochs: int, *extra: str) -> str:
    done = _on_node1(
        bed,
        os.path.join(VENV_BIN, "twostream"),
        "launch",
        "slurm",
        *("--nodes", str(NODES), "--gpus-per-node", "0", "--procs-per-node", str(procs_per_node)),
        *("--time", "10", "--warning-s", "60", "--partition", "debug"),
        *("--preset", "tiny", "--data", dataset, "--workdir", workdir),
        *("--set", "data.num_actors=1", "--set", "data.object_store_mb=128", "--set", f"train.epochs={epochs}"),
        *("--set", "train.log_every=1"),
        *extra,
    )
    assert done.returncode == 0 and "Submitted batch job" in done.stdout, done.stdout + done.stderr
    return done.stdout.split()[-1]


def _job(bed, job_id: str) -> dict:
    """`scontrol show job` as a dict (jobs stay listed MinJobAge=300 s after they end)."""
    out = _on_node1(bed, "scontrol", "-o", "show", "job", job_id).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def _wait(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _records(workdir: str, kind: str = "epoch") -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def _log(workdir: str, job_id: str) -> str:
    with open(os.path.join(workdir, f"slurm-{job_id}.out")) as f:
        return f.read()


def _latest_checkpoint_step(workdir: str) -> int:
    """The step of the checkpoint a resume starts from, as the checkpoints' own state file names it."""
    with open(os.path.join(workdir, "checkpoints", "checkpoint")) as f:
        return int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(), re.M).group(1))


def _ray_heads_per_host(bed) -> list[int]:
    """How many Ray clusters (GCS servers) run on each host now: its namespace's processes, by name."""
    counts = []
    for host in range(1, NODES + 1):
        pids = subprocess.run(["ip", "netns", "pids", f"{bed.prefix}n{host}"], capture_output=True, text=True).stdout
        names = [_process_name(pid) for pid in pids.split()]
        counts.append(names.count("gcs_server"))
    return counts


def _process_name(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:  # ended meanwhile
        return ""


@pytest.mark.timeout(900)
def test_two_nodes_share_a_ray_each_requeue_resume_and_record_every_epoch_once(bed, tiny_dataset, tmp_path):
    """Two ranks on each node, sharing the node's one Ray; SLURM's warning signal (to every rank on both nodes)
    checkpoints and requeues, the job resumes on both nodes; scancel stops it, the same command resubmitted
    resumes it to the end, every epoch recorded once with world size 4."""
    workdir = str(tmp_path / "run")
    job_id = _submit(bed, tiny_dataset, workdir, 2, EPOCHS)
    heads = []
    _wait(
        lambda: heads.append(_ray_heads_per_host(bed)) or _records(workdir) or _job(bed, job_id)["JobState"] in ENDED,
        "the first epoch's record",
    )
    assert _records(workdir), _log(workdir, job_id)[-3000:]
    assert [1, 1] in heads, heads  # while training: one Ray per node, shared by the node's two ranks
    assert all(count <= 1 for seen in heads for count in seen), heads
    # The warning SLURM sends --warning-s before the time limit, sent now: to the job steps (the ranks) only.
    _on_node1(bed, "scancel", "--signal=USR1", job_id)
    _wait(lambda: _job(bed, job_id).get("Restarts") == "1", "the requeue")  # restarts 10 s later (cred_expire)
    (warned,) = _records(workdir, "preempted")
    assert warned["step"] >= STEPS_PER_EPOCH  # after the first epoch
    _wait(
        lambda: len(_records(workdir)) > warned["step"] // STEPS_PER_EPOCH or _job(bed, job_id)["JobState"] in ENDED,
        "the requeued run's first epoch record",
    )
    _on_node1(bed, "scancel", job_id)
    _wait(lambda: _job(bed, job_id).get("JobState") in ENDED, "the cancel")
    job, log = _job(bed, job_id), _log(workdir, job_id)
    assert job["JobState"] == "CANCELLED" and job["Restarts"] == "1", log[-3000:]
    assert f"requeueing job {job_id}" in log and "(restart 1): 4 ranks by srun on node[1-2]" in log
    assert f"ckpt-{warned['step']} (step {warned['step']})" in log  # the requeued run resumed there
    latest = _latest_checkpoint_step(workdir)
    first, *cancelled = _records(workdir, "preempted")
    assert first == warned and latest >= max(warned["step"], _records(workdir)[-1]["step"])
    if cancelled:  # rank 0 finished a step after the SIGTERM: it checkpointed that step, the run resumes there
        assert [r["step"] for r in cancelled] == [latest]

    again = _submit(bed, tiny_dataset, workdir, 2, EPOCHS)  # the user resubmits the same command
    _wait(lambda: _job(bed, again).get("JobState") in ENDED, "the resubmission", timeout=420)
    assert _job(bed, again)["JobState"] == "COMPLETED", _log(workdir, again)[-3000:]
    assert f"ckpt-{latest} (step {latest})" in _log(workdir, again)
    assert [(r["epoch"], r["world_size"]) for r in _records(workdir)] == [(e, 4) for e in range(1, EPOCHS + 1)]
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))


@pytest.mark.timeout(900)
def test_via_horovodrun_starts_node2s_rank_over_ssh_and_trains_as_srun_does(bed, tiny_dataset, tmp_path):
    finals = {}
    for via in ("srun", "horovodrun"):
        workdir = str(tmp_path / via)
        accepted_before = bed.ssh.logins(2)
        job_id = _submit(bed, tiny_dataset, workdir, 1, 2, "--via", via)
        _wait(lambda: _job(bed, job_id).get("JobState") in ENDED, f"the --via {via} job")
        log = _log(workdir, job_id)
        assert _job(bed, job_id)["JobState"] == "COMPLETED", log[-3000:]
        assert [r["world_size"] for r in _records(workdir)] == [2, 2]
        finals[via] = final_record(log)["final"]
        logins = bed.ssh.logins(2) - accepted_before
        assert logins > 0 if via == "horovodrun" else logins == 0, (via, log[-3000:])
    assert "2 ranks on node1:1,node2:1" in log  # horovodrun -H over the allocation's nodes
    assert finals["horovodrun"]["loss"] == pytest.approx(finals["srun"]["loss"], rel=1e-5), finals
