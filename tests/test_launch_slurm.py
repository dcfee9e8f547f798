"""`twostream launch slurm`: the sbatch script, the srun rank mapping, and real jobs on a one-node SLURM started
here by scripts/slurm_local.sh (skipped, with the reason, where its daemons cannot start)."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

import pytest
from conftest import REPO, VENV_BIN

from twostream.launch import cli
from twostream.launch.jobs import srun
from twostream.trainer.runtime.preemption import EXIT_CODE

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

SLURM_LOCAL = os.path.join(REPO, "scripts", "slurm_local.sh")
EPOCHS, STEPS_PER_EPOCH = 4, 5  # of the jobs below: tiny preset on the test's 22 training clips, global batch 4
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def _write(tmp_path, data, *extra):
    script = str(tmp_path / "job.sbatch")
    code = cli.main(
        [
            "launch",
            "slurm",
            "--nodes",
            "2",
            "--gpus-per-node",
            "4",
            "--time",
            "04:00:00",
            "--partition",
            "gpu",
            "--account",
            "proj42",
            "--script",
            script,
            "--no-submit",
            "--preset",
            "tiny",
            "--data",
            data,
            "--workdir",
            str(tmp_path / "run"),
            "--set",
            "train.global_batch=8",
            *extra,
        ]
    )  # 8 ranks: a batch they split
    return code, script


def test_srun_script_starts_ranks_with_srun_asks_for_a_warning_and_requeues(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(tiny_dataset))  # a relative --data, made absolute in the script
    code, script = _write(tmp_path, os.path.basename(tiny_dataset), "--set", "train.epochs=3")
    assert code == 0
    text = open(script).read()
    assert text.startswith("#!/bin/bash\n") and os.stat(script).st_mode & stat.S_IXUSR
    for directive in [
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-task=1",
        "--time=04:00:00",
        "--partition=gpu",
        "--account=proj42",
        f"--output={tmp_path / 'run'}/slurm-%j.out",
        "--open-mode=append",
        "--signal=USR1@300",
        "--requeue",
    ]:
        assert f"#SBATCH {directive}\n" in text
    assert "horovodrun" not in text and "ssh" not in text
    twostream = os.path.join(os.path.abspath(VENV_BIN), "twostream")
    assert (
        f"{sys.executable} -m twostream.launch.jobs.srun rendezvous -- {twostream} train --preset tiny "
        f"--set train.global_batch=8 --set train.epochs=3 --data {tiny_dataset} --workdir {tmp_path / 'run'}"
    ) in text
    assert f'if [ "$status" -eq {EXIT_CODE} ]; then' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text


def test_horovodrun_form_stays_available(tiny_dataset, tmp_path):
    code, script = _write(tmp_path, tiny_dataset, "--via", "horovodrun")
    text = open(script).read()
    assert code == 0 and "#SBATCH --gpus-per-node=4\n" in text and "--signal" not in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text and "SLOTS=4" in text
    assert f'exec {os.path.join(os.path.abspath(VENV_BIN), "horovodrun")} -np "$NP" -H "$HOSTS" --gloo' in text


def test_missing_data_folder_fails_before_writing_the_script(tmp_path, capsys):
    code, script = _write(tmp_path, str(tmp_path / "no_such_videos"))
    assert code == 2 and "no_such_videos' does not exist" in capsys.readouterr().err
    assert not os.path.exists(script)


def test_bad_time_and_warning_are_clear_errors(tiny_dataset, tmp_path, capsys):
    assert _write(tmp_path, tiny_dataset, "--time", "4h")[0] == 2
    assert "--time '4h' is not a SLURM time" in capsys.readouterr().err
    assert _write(tmp_path, tiny_dataset, "--time", "5", "--warning-s", "300")[0] == 2
    assert "--warning-s 300 must be more than 0 and less than --time 5 (300 s)" in capsys.readouterr().err


def test_submits_with_sbatch_on_path(tiny_dataset, tmp_path, monkeypatch, capsys):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    sbatch = fake_bin / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/submitted\necho "Submitted batch job 77"\n')
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    script = str(tmp_path / "job.sbatch")
    assert (
        cli.main(
            [
                "launch",
                "slurm",
                "--nodes",
                "1",
                "--gpus-per-node",
                "1",
                "--time",
                "30",
                "--partition",
                "p",
                "--script",
                script,
                "--preset",
                "tiny",
                "--data",
                tiny_dataset,
                "--workdir",
                str(tmp_path / "w"),
            ]
        )
        == 0
    )
    assert f"wrote {script}; submitting" in capsys.readouterr().out
    assert (tmp_path / "submitted").read_text().strip() == script


# ---------------------------------------------------------------------- srun task -> Horovod rank
def _task_env(node: str, procid: int, localid: int) -> dict:
    return {
        "TWOSTREAM_SRUN_HOSTS": "n1:2,n2:2,n3:1",
        "SLURM_NTASKS": "5",
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": str(localid),
        "SLURMD_NODENAME": node,
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": "127.0.0.1",
    }


def test_each_srun_task_gets_horovods_rank_local_and_cross_rank():
    env = srun.task_environment(_task_env("n2", 3, 1))
    assert {
        k: env[k]
        for k in [
            "HOROVOD_HOSTNAME",
            "HOROVOD_RANK",
            "HOROVOD_SIZE",
            "HOROVOD_LOCAL_RANK",
            "HOROVOD_LOCAL_SIZE",
            "HOROVOD_CROSS_RANK",
            "HOROVOD_CROSS_SIZE",
        ]
    } == {
        "HOROVOD_HOSTNAME": "n2",
        "HOROVOD_RANK": "3",
        "HOROVOD_SIZE": "5",
        "HOROVOD_LOCAL_RANK": "1",
        "HOROVOD_LOCAL_SIZE": "2",
        "HOROVOD_CROSS_RANK": "1",
        "HOROVOD_CROSS_SIZE": "2",
    }
    last = srun.task_environment(_task_env("n3", 4, 0))
    assert (last["HOROVOD_LOCAL_SIZE"], last["HOROVOD_CROSS_RANK"], last["HOROVOD_CROSS_SIZE"]) == ("1", "2", "3")
    assert env["HOROVOD_GLOO_IFACE"] == "lo"  # the interface towards the rendezvous address


def test_a_task_placed_off_the_block_layout_is_refused():
    with pytest.raises(srun.SrunError, match="--distribution=block"):
        srun.task_environment(_task_env("n1", 3, 1))  # cyclic distribution would put rank 3 on n1


def test_tasks_per_node_and_node_names(tmp_path, monkeypatch):
    assert srun.tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    if not shutil.which("scontrol"):
        pytest.skip("no scontrol (apt-get install slurm-client)")
    # scontrol reads a slurm.conf even to expand names (a site has one; here the daemons may not be running)
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=t\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert srun.node_names("node[1-2],gpu7") == ["node1", "node2", "gpu7"]  # SLURM's own expansion, offline


# ---------------------------------------------------------------------- real jobs on a one-node SLURM
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM's daemons on this machine for this module; the env that reaches them (SLURM_CONF)."""
    if not os.path.exists("/usr/sbin/slurmctld") and os.geteuid() != 0:
        pytest.skip("SLURM is not installed and this is not root: apt-get install slurm-wlm munge")
    folder = str(tmp_path_factory.mktemp("slurm"))
    env = {**os.environ, "TWOSTREAM_SLURM_DIR": folder}
    started = subprocess.run([SLURM_LOCAL, "start"], capture_output=True, text=True, env=env, timeout=300)
    try:
        if started.returncode != 0:
            pytest.skip(f"SLURM daemons did not start: {started.stderr.strip()[-500:]}")
        yield {**env, "SLURM_CONF": os.path.join(folder, "slurm.conf")}
    finally:
        subprocess.run([SLURM_LOCAL, "stop"], env=env, timeout=60)


def _submit(slurm, dataset: str, workdir: str, *extra: str) -> str:
    result = subprocess.run(
        [
            os.path.join(VENV_BIN, "twostream"),
            "launch",
            "slurm",
            "--nodes",
            "1",
            "--gpus-per-node",
            "0",
            "--procs-per-node",
            "2",
            "--time",
            "10",
            "--warning-s",
            "60",
            "--partition",
            "debug",
            "--preset",
            "tiny",
            "--data",
            dataset,
            "--workdir",
            workdir,
            "--set",
            "data.num_actors=1",
            "--set",
            "data.object_store_mb=128",
            "--set",
            f"train.epochs={EPOCHS}",
            "--set",
            "train.log_every=1",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=slurm,
        timeout=120,
    )
    assert result.returncode == 0 and "Submitted batch job" in result.stdout, result.stdout + result.stderr
    return result.stdout.split()[-1]


def _job(slurm, job_id: str) -> dict:
    """`scontrol show job` as a dict (jobs stay listed MinJobAge=300 s after they end)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, env=slurm).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def _wait(condition, what: str, timeout: float = 240):
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


def _latest_checkpoint_step(workdir: str) -> int:
    """The step of the checkpoint a resume starts from, as the checkpoints' own state file names it."""
    with open(os.path.join(workdir, "checkpoints", "checkpoint")) as f:
        return int(re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', f.read(), re.M).group(1))


def _log(workdir: str, job_id: str) -> str:
    with open(os.path.join(workdir, f"slurm-{job_id}.out")) as f:
        return f.read()


@pytest.mark.timeout(900)
def test_warning_signal_requeues_and_resumes_then_scancel_and_resubmission_record_every_epoch_once(
    slurm, tiny_dataset, tmp_path
):
    """One workdir through both ways a SLURM job stops (one job start-up fewer than a job for each): SLURM's
    warning signal checkpoints and requeues the job, which resumes with two srun ranks; then scancel stops the
    requeued run, and the same command submitted again resumes it to the end, every epoch recorded once."""
    workdir = str(tmp_path / "run")
    job_id = _submit(slurm, tiny_dataset, workdir)
    _wait(
        lambda: _records(workdir) or _job(slurm, job_id).get("JobState") not in ("PENDING", "RUNNING"),
        "the first epoch's record",
    )
    # The warning SLURM sends --warning-s before the time limit, sent now: to the job steps (the ranks) only.
    subprocess.run(["scancel", "--signal=USR1", job_id], env=slurm, check=True)
    _wait(lambda: _job(slurm, job_id).get("Restarts") == "1", "the requeue")  # restarts 10 s later (cred_expire)
    (warned,) = _records(workdir, "preempted")
    assert warned["step"] >= STEPS_PER_EPOCH  # after the first epoch
    # The requeued run: once it has recorded an epoch of its own, scancel (SIGTERM to every step and the batch shell).
    _wait(
        lambda: (
            len(_records(workdir)) > warned["step"] // STEPS_PER_EPOCH or _job(slurm, job_id).get("JobState") in ENDED
        ),
        "the requeued run's first epoch record",
    )
    subprocess.run(["scancel", job_id], env=slurm, check=True)
    _wait(lambda: _job(slurm, job_id).get("JobState") in ENDED, "the cancel")
    job, log = _job(slurm, job_id), _log(workdir, job_id)
    assert job["JobState"] == "CANCELLED" and job["Restarts"] == "1", log[-3000:]  # scancel does not requeue
    assert f"requeueing job {job_id}" in log and "(restart 1): 2 ranks by srun" in log
    assert f"ckpt-{warned['step']} (step {warned['step']})" in log  # the requeued run resumed there
    logged = [r["epoch"] for r in _records(workdir)]
    latest = _latest_checkpoint_step(workdir)
    first, *cancelled = _records(workdir, "preempted")  # the warning's stop, then the cancel's
    assert first == warned and latest >= max(warned["step"], _records(workdir)[-1]["step"])
    if cancelled:  # rank 0 finished a step after the SIGTERM: it checkpointed that step, the run resumes there
        assert [r["step"] for r in cancelled] == [latest]
    # else scancel's SIGTERM stopped the ranks' Ray before any step could end (docs/fault-tolerance.md#preemption)

    again = _submit(slurm, tiny_dataset, workdir)  # the user resubmits the same command
    _wait(lambda: _job(slurm, again).get("JobState") in ENDED, "the resubmission", timeout=420)
    assert _job(slurm, again)["JobState"] == "COMPLETED", _log(workdir, again)[-3000:]
    assert f"ckpt-{latest} (step {latest})" in _log(workdir, again)
    assert logged == list(range(1, len(logged) + 1))
    assert [(r["epoch"], r["world_size"]) for r in _records(workdir)] == [(e, 2) for e in range(1, EPOCHS + 1)]
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
