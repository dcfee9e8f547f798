"""Preemption: SIGTERM on one rank stops every rank after the same step with a checkpoint and exit status 75
(preemption.EXIT_CODE); the job started again resumes from that step and ends with every epoch recorded once."""

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
from conftest import VENV_BIN
from jobs import STEPS, batches_by_process, horovodrun, horovodrun_command, records, tail

from twostream.trainer.runtime.preemption import EXIT_CODE

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

TWO_RANKS = ["-np", "2", "-H", "localhost:2"]


@pytest.mark.timeout(300)
def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_the_rerun_resumes_there(tmp_path):
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    # Rank 1 alone is signalled before step 11; the ranks agree at every host read (train.log_every=2): step 12.
    job = [
        "--workdir",
        str(workdir),
        "--ids-dir",
        str(ids),
        "--signal-rank",
        "1",
        "--signal-at",
        "11",
        "--set",
        "train.log_every=2",
    ]
    first = horovodrun(TWO_RANKS, job)
    assert first.returncode != 0, tail(first)
    assert "sends itself SIGTERM before step 11" in first.stdout
    assert "PREEMPTED rank 0 step 12" in first.stdout and "PREEMPTED rank 1 step 12" in first.stdout, tail(first)
    assert f"exit with status code {EXIT_CODE}" in first.stdout or f"Exit code: {EXIT_CODE}" in first.stdout, tail(
        first
    )
    before = batches_by_process(str(ids))
    assert [rows[-1]["step"] for rows in before.values()] == [12, 12]  # neither rank went further
    assert [(r["step"], r["epoch"]) for r in records(workdir, "preempted")] == [(12, 2)]
    assert os.path.exists(workdir / "checkpoints" / "ckpt-12.index")

    second = horovodrun(TWO_RANKS, job)  # the signal is scheduled once per job: this run is clean
    assert second.returncode == 0, tail(second)
    assert "ckpt-12 (step 12)" in second.stdout
    rerun = [rows for pid, rows in batches_by_process(str(ids)).items() if pid not in before]
    assert [[row["step"] for row in rows] for rows in rerun] == [list(range(13, 3 * STEPS + 1))] * 2
    assert [r["epoch"] for r in records(workdir)] == [1, 2, 3]  # every epoch once
    assert records(workdir, "final")[0]["step"] == 3 * STEPS


@pytest.mark.timeout(300)
def test_rank0_checkpoints_at_its_first_step_after_the_signal_when_the_data_then_stops(tmp_path):
    """SLURM's SIGTERM also stops the ranks' Ray, so no batch may come after the step in flight: the agreed step
    (here the epoch's end, step 16) is never reached. Rank 0 has checkpointed the step after its signal, so the
    killed job's rerun resumes there, not from the epoch before."""
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    job = [
        "--workdir",
        str(workdir),
        "--ids-dir",
        str(ids),
        "--signal-rank",
        "all",
        "--signal-at",
        "11",
        "--starve",
        "--set",
        "train.log_every=8",
    ]
    command, env = horovodrun_command(TWO_RANKS, job)
    with open(tmp_path / "out", "w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 200
        while (tmp_path / "out").read_text().count("gets no batch for step 12") < 2:  # both ranks wait for ever
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "out").read_text()[-4000:]
            time.sleep(0.2)
        assert [(r["step"], r["epoch"]) for r in records(workdir, "preempted")] == [(11, 2)]
        assert os.path.exists(workdir / "checkpoints" / "ckpt-11.index")
    finally:  # the ranks as the scheduler ends them after its grace time; horovodrun then ends
        for pid in map(int, re.findall(r"\(pid (\d+)\) sends itself SIGTERM", (tmp_path / "out").read_text())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            first.wait(timeout=60)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()

    second = horovodrun(TWO_RANKS, job)  # the signal is scheduled once per job: this run is clean
    assert second.returncode == 0, tail(second)
    assert "ckpt-11 (step 11)" in second.stdout
    assert [r["epoch"] for r in records(workdir)] == [1, 2, 3]  # every epoch once
    assert records(workdir, "final")[0]["step"] == 3 * STEPS


@pytest.mark.timeout(400)
def test_train_command_exits_75_on_sigterm_and_resumes(tiny_dataset, tmp_path):
    """The real `twostream train`, signalled from outside once its first epoch is logged."""
    workdir = tmp_path / "run"
    command = [
        os.path.join(VENV_BIN, "twostream"),
        "train",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        str(workdir),
        "--set",
        "train.epochs=4",
        "--set",
        "train.log_every=1",
        "--set",
        "data.num_actors=1",
        "--set",
        "data.object_store_mb=128",
    ]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    while job.poll() is None and not (metrics.exists() and '"kind": "epoch"' in metrics.read_text()):
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=300)
    assert job.returncode == EXIT_CODE, err[-3000:]
    assert "twostream train: preempted: stopped with the checkpoint of step" in err and "Traceback" not in err
    (stopped,) = records(str(workdir), "preempted")
    logged = [r["epoch"] for r in records(str(workdir))]

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {stopped['step']})" in resumed.stderr  # restored where it stopped
    assert [r["epoch"] for r in records(str(workdir))] == list(range(1, 5))  # every epoch once, none lost
    assert logged == list(range(1, len(logged) + 1))
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["final"]["clips"] > 0
