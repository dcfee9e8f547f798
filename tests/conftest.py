"""Shared fixtures: small real video datasets written by the tests, and one local Ray for the session."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """32 two-class synthetic clips (MJPG/AVI), 10 frames of 32x32: enough for a few tiny-preset steps."""
    from twostream.data.synthetic import SynthSpec, synthesize
    root = str(tmp_path_factory.mktemp("tiny_dataset"))
    synthesize(root, SynthSpec(num_videos=32, frames=10, size=32, patch=12, seed=1))
    return root


@pytest.fixture(scope="session")
def ray_session():
    """One private local Ray for all in-process tests (starting Ray costs seconds)."""
    from twostream.data.ray_node import start_ray
    import ray
    start_ray(None, num_cpus=2, object_store_mb=256)
    yield ray
    ray.shutdown()


def run_cli(*args: str, cwd: str | None = None, timeout: float = 300, env: dict | None = None):
    """Runs the installed `twostream` command; returns the CompletedProcess (text output)."""
    return subprocess.run([os.path.join(VENV_BIN, "twostream"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
