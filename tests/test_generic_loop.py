"""The loop is generic: examples/diabetes.py trains a Keras regressor through `fit`, beats the mean, and resumes."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


def _run(workdir, epochs):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "diabetes.py"), "--workdir", workdir, "--epochs", str(epochs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["held_out"]


def test_diabetes_regressor_trains_and_resumes(tmp_path):
    workdir = str(tmp_path / "diabetes")
    first = _run(workdir, 30)
    assert first["examples"] == 89
    assert first["mae"] < 0.85 * first["baseline_mae"]  # learnt something: 15% better than the mean
    second = _run(workdir, 35)  # the same workdir: resumes after epoch 30
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [json.loads(line)["epoch"] for line in f if '"kind": "epoch"' in line]
    assert epochs == list(range(1, 36))
    assert second["mae"] < 0.85 * second["baseline_mae"]
