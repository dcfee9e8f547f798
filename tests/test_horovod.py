"""Two real ranks (horovodrun -np 2, Gloo, CPU) against one process over the same global batches."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, VENV_BIN

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

HELPER = os.path.join(REPO, "tests", "helpers", "train_and_dump.py")
# SGD keeps the comparison linear in the gradients (Adam would amplify float round-off near zero).
COMMON = [
    "train.epochs=1",
    "train.optimizer=sgd",
    "train.weight_decay=0.0",
    "train.global_batch=4",
    "data.num_actors=1",
    "data.object_store_mb=128",
]
BASE_LR = 0.05


def _weights(prefix, rank):
    with np.load(f"{prefix}_rank{rank}.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """Two ranks train twice in one horovodrun -np 2 at BASE_LR: plainly (w2), then with 2 accumulated
    micro-batches per step (w2acc); one process trains at 2 x BASE_LR (Horovod's linear rule gave the 2-rank
    runs lr x 2; w1) and, to show the comparison has teeth, at BASE_LR (w1u). Each --then of the helper is a
    fresh train() in the same processes, so the job starts Python, TensorFlow, Horovod and Ray once."""
    tmp = tmp_path_factory.mktemp("horovod")
    common = COMMON + [f"data.root={tiny_dataset}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    two = subprocess.run(
        [
            os.path.join(VENV_BIN, "horovodrun"),
            "-np",
            "2",
            "-H",
            "localhost:2",
            "--gloo",
            sys.executable,
            HELPER,
            str(tmp / "two"),
            str(tmp / "w2"),
            *common,
            f"train.lr={BASE_LR}",
            "--then",
            str(tmp / "w2acc"),
            *common,
            f"train.lr={BASE_LR}",
            "train.accumulate_steps=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stdout[-4000:] + two.stderr[-4000:]
    one = subprocess.run(
        [
            sys.executable,
            HELPER,
            str(tmp / "one"),
            str(tmp / "w1"),
            *common,
            f"train.lr={2 * BASE_LR}",
            "--then",
            str(tmp / "w1u"),
            *common,
            f"train.lr={BASE_LR}",
        ],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-4000:]
    return tmp


@pytest.mark.timeout(1200)  # the module's horovodrun and single process start in this test's setup
def test_two_ranks_match_one_process_and_only_rank0_writes(runs):
    rank0, rank1, single = _weights(runs / "w2", 0), _weights(runs / "w2", 1), _weights(runs / "w1", 0)
    for a, b, c in zip(rank0, rank1, single):
        np.testing.assert_array_equal(a, b)  # (a) ranks identical, bit for bit
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)  # (b) = one process on the global batches
    # The comparison has teeth: without the x2 the single process ends elsewhere.
    differs = [not np.allclose(a, u, rtol=1e-4, atol=1e-5) for a, u in zip(rank0, _weights(runs / "w1u", 0))]
    assert sum(differs) > len(differs) // 2
    # (c) only rank 0 wrote: each rank ran in its own folder, as on machines without a shared filesystem.
    rank0_files, rank1_files = _files(runs / "two" / "rank0"), _files(runs / "two" / "rank1")
    assert any(f.startswith("run/checkpoints/") for f in rank0_files)
    assert "run/export/saved_model.pb" in rank0_files and "run/metrics.jsonl" in rank0_files
    assert rank1_files == [], rank1_files


@pytest.mark.timeout(1200)
def test_two_ranks_with_accumulation_match_one_process(runs):
    """2 ranks x 2 accumulated micro-batches of 1 clip = 1 process on the whole global batch of 4 at once."""
    rank0, rank1, single = _weights(runs / "w2acc", 0), _weights(runs / "w2acc", 1), _weights(runs / "w1", 0)
    for a, b, c in zip(rank0, rank1, single):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    # That was a run of its own, with accumulation on, in its own workdir (the helper's second run).
    assert "accumulate_steps: 2" in (runs / "two" / "rank0" / "run2" / "config.yaml").read_text()
