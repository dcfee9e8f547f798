"""Resume equivalence: a run killed mid-epoch and started again ends with the weights of a run never stopped."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

HELPER = os.path.join(REPO, "tests", "helpers", "train_and_dump.py")
STOPPED = 3  # the helper's exit code after --stop-after-step
# 22 training clips / 4 = 5 steps per epoch; step 6 is mid-epoch 2, a checkpoint (checkpoint_every=2).
# Dropout and random crop/flip make the run depend on every random state a resume has to recover.
OVERRIDES = [
    "train.epochs=2",
    "train.checkpoint_every=2",
    "model.dropout=0.5",
    "clip.flip=true",
    "clip.crop_scale_min=0.7",
    "data.num_actors=1",
    "data.object_store_mb=128",
]


def _run(root, *args):
    return subprocess.run(
        [sys.executable, HELPER, str(root), str(root / "weights"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _weights(root):
    with np.load(root / "weights_rank0.npz") as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def test_stopped_and_resumed_run_ends_with_the_weights_of_an_unstopped_run(tiny_dataset, tmp_path):
    overrides = OVERRIDES + [f"data.root={tiny_dataset}"]
    unstopped = _run(tmp_path / "a", *overrides)
    assert unstopped.returncode == 0, unstopped.stderr[-3000:]

    stopped = _run(tmp_path / "b", "--stop-after-step", "6", *overrides)
    assert stopped.returncode == STOPPED, stopped.stderr[-3000:]
    assert not (tmp_path / "b" / "weights_rank0.npz").exists()
    resumed = _run(tmp_path / "b", *overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ckpt-6 (step 6)" in resumed.stderr  # it resumed mid-epoch, not from scratch

    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
