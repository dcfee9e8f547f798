"""Preemption: SIGTERM on one rank stops every rank after the same step with a checkpoint and exit status 75
(preemption.EXIT_CODE); the job started again resumes from that step and ends with every epoch recorded once."""
import json
import os
import signal
import subprocess
import time

import pytest
from conftest import VENV_BIN
from jobs import STEPS, batches_by_process, horovodrun, records, tail

from twostream.trainer.preemption import EXIT_CODE

TWO_RANKS = ["-np", "2", "-H", "localhost:2"]


@pytest.mark.timeout(300)
def test_sigterm_on_one_rank_stops_both_at_the_same_step_and_the_rerun_resumes_there(tmp_path):
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    # Rank 1 alone is signalled before step 11; the ranks agree at every host read (train.log_every=2): step 12.
    job = ["--workdir", str(workdir), "--ids-dir", str(ids), "--signal-rank", "1", "--signal-at", "11",
           "--set", "train.log_every=2"]
    first = horovodrun(TWO_RANKS, job)
    assert first.returncode != 0, tail(first)
    assert "sends itself SIGTERM before step 11" in first.stdout
    assert "PREEMPTED rank 0 step 12" in first.stdout and "PREEMPTED rank 1 step 12" in first.stdout, tail(first)
    assert f"exit with status code {EXIT_CODE}" in first.stdout or f"Exit code: {EXIT_CODE}" in first.stdout, tail(
        first
    )
    before = batches_by_process(str(ids))
    assert [rows[-1]["step"] for rows in before.values()] == [12, 12]          # neither rank went further
    assert [(r["step"], r["epoch"]) for r in records(workdir, "preempted")] == [(12, 2)]
    assert os.path.exists(workdir / "checkpoints" / "ckpt-12.index")

    second = horovodrun(TWO_RANKS, job)               # the signal is scheduled once per job: this run is clean
    assert second.returncode == 0, tail(second)
    assert "ckpt-12 (step 12)" in second.stdout
    rerun = [rows for pid, rows in batches_by_process(str(ids)).items() if pid not in before]
    assert [[row["step"] for row in rows] for rows in rerun] == [list(range(13, 3 * STEPS + 1))] * 2
    assert [r["epoch"] for r in records(workdir)] == [1, 2, 3]                # every epoch once
    assert records(workdir, "final")[0]["step"] == 3 * STEPS


@pytest.mark.timeout(400)
def test_train_command_exits_75_on_sigterm_and_resumes(tiny_dataset, tmp_path):
    """The real `twostream train`, signalled from outside once its first epoch is logged."""
    workdir = tmp_path / "run"
    command = [os.path.join(VENV_BIN, "twostream"), "train", "--preset", "tiny", "--data", tiny_dataset,
               "--workdir", str(workdir), "--set", "train.epochs=4", "--set", "train.log_every=1",
               "--set", "data.num_actors=1", "--set", "data.object_store_mb=128"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    while job.poll() is None and not (metrics.exists() and '"kind": "epoch"' in metrics.read_text()):
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=300)
    assert job.returncode == EXIT_CODE, err[-3000:]
    assert "twostream train: preempted: stopped after step" in err and "Traceback" not in err
    (stopped,) = records(str(workdir), "preempted")
    logged = [r["epoch"] for r in records(str(workdir))]

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {stopped['step']})" in resumed.stderr                     # restored where it stopped
    assert [r["epoch"] for r in records(str(workdir))] == list(range(1, 5))  # every epoch once, none lost
    assert logged == list(range(1, len(logged) + 1))
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["final"]["clips"] > 0
