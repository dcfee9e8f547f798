"""Shared fixtures: small real video datasets written by the tests, and one local Ray for the session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """32 two-class synthetic clips (MJPG/AVI), 10 frames of 32x32: enough for a few tiny-preset steps."""
    from twostream.data.make.synthetic import SynthSpec, synthesize

    root = str(tmp_path_factory.mktemp("tiny_dataset"))
    synthesize(root, SynthSpec(num_videos=32, frames=10, size=32, patch=12, seed=1))
    return root


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory) -> subprocess.CompletedProcess:
    """`twostream train` for one epoch of the tiny preset with 2 views per validation video, once for the session
    (test_train, test_evaluate_predict); its workdir is `trained.workdir`. Tests that write to it use a copy
    (copy_workdir)."""
    workdir = str(tmp_path_factory.mktemp("trained") / "run")
    done = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        workdir,
        "--set",
        "train.epochs=1",
        "--set",
        "eval.views=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    done.workdir = workdir
    return done


def copy_workdir(workdir: str, to: str) -> str:
    """A copy of `workdir` at `to` (checkpoints name their files relative to their folder, so the copy resumes)."""
    shutil.copytree(workdir, to)
    return to


@pytest.fixture(scope="session")
def ray_session():
    """One private local Ray for all in-process tests (starting Ray costs seconds)."""
    import ray

    from twostream.trainer.runtime.ray_node import start_ray

    start_ray(None, num_cpus=2, object_store_mb=256)
    yield ray
    ray.shutdown()


def pytest_ignore_collect(collection_path, config):
    """Under `make check` (TWOSTREAM_CHECK=1, TensorFlow stood in for) a module marked `tensorflow` as a whole is not
    even imported: importing it would import TensorFlow."""
    if os.environ.get("TWOSTREAM_CHECK") != "1" or collection_path.suffix != ".py":
        return None
    return MODULE_MARK in collection_path.read_text() or None


MODULE_MARK = "pytestmark = pytest.mark.tensorflow"

# The modules that take longest (a minute or more of real multi-process jobs, `--durations` of `make test`), run
# first: pytest-xdist hands each worker whole modules in collection order (`make test` turns off its reordering by
# test count), and a long one handed out last leaves the other worker idle while it runs.
LONGEST_FIRST = (
    "test_horovod_hosts.py",
    "test_slurm_hosts.py",
    "faults/test_preemption.py",
    "faults/test_killed_rank.py",
    "test_horovod.py",
    "test_ray_hosts.py",
    "test_stream.py",
    "test_evaluate_predict.py",
    "test_train.py",
    "test_resume.py",
    "test_bad_runs.py",
    "test_launch_debug.py",
)


@pytest.hookimpl(tryfirst=True)  # before pytest-random-order's shuffle (`make test-random`)
def pytest_collection_modifyitems(session, config, items):
    """The LONGEST_FIRST modules first, in that order; the rest as collected (a stable sort: the same on every
    worker, as xdist requires). `make test-random` shuffles after this."""

    def rank(item) -> int:
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def run_cli(*args: str, cwd: str | None = None, timeout: float = 300, env: dict | None = None):
    """Runs the installed `twostream` command; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [os.path.join(VENV_BIN, "twostream"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
