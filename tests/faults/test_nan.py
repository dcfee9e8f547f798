"""A NaN in one rank's batch: the loss is averaged with the gradients, so both ranks stop after the same step
(train.on_nonfinite=stop: at the end of that train.log_every window, a non-zero exit naming the bad step, the last
good checkpoint kept) or both skip that update (=skip)."""

import json
import os

import pytest
from jobs import STEPS, batches_by_process, horovodrun, records, tail

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

TWO_RANKS = ["-np", "2", "-H", "localhost:2"]


@pytest.mark.timeout(180)
def test_nan_on_one_rank_stops_every_rank_at_that_step(tmp_path):
    workdir, ids = tmp_path / "w", tmp_path / "ids"
    ids.mkdir()
    done = horovodrun(
        TWO_RANKS, ["--workdir", str(workdir), "--ids-dir", str(ids), "--nan-rank", "1", "--nan-at", "11"]
    )
    assert done.returncode != 0, tail(done)
    assert "NonFiniteLossError: loss is nan at step 11 (epoch 2)" in done.stdout, tail(done)
    last_steps = [rows[-1]["step"] for rows in batches_by_process(str(ids)).values()]
    # The losses are read every train.log_every (10) steps and at epoch ends: steps 11-16 form one window.
    assert last_steps == [16, 16]  # both ranks stopped at that window's end, none went on
    assert [r["epoch"] for r in records(workdir)] == [1] and records(workdir, "final") == []
    saved = {name.split(".")[0] for name in os.listdir(workdir / "checkpoints") if name.startswith("ckpt-")}
    assert saved == {"ckpt-8"}  # the last good checkpoint, none of the bad window


@pytest.mark.timeout(180)
def test_nan_on_one_rank_is_skipped_by_every_rank_when_configured(tmp_path):
    workdir = tmp_path / "w"
    done = horovodrun(
        TWO_RANKS, ["--workdir", str(workdir), "--nan-rank", "1", "--nan-at", "11", "--set", "train.on_nonfinite=skip"]
    )
    assert done.returncode == 0, tail(done)
    assert [(r["epoch"], r["skipped_steps"]) for r in records(workdir)] == [(1, 0), (2, 1), (3, 0)]
    assert records(workdir, "final")[0]["step"] == 3 * STEPS
    finals = [json.loads(line.split("DONE ", 1)[1]) for line in done.stdout.splitlines() if "DONE {" in line]
    assert len(finals) == 2 and finals[0]["weights"] == finals[1]["weights"]  # the same (finite) model
    assert all(abs(w) < 1e6 for w in finals[0]["weights"])
