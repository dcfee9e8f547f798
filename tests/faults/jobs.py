"""Shared by the fault tests: run tests/helpers/fault_job.py under horovodrun and read what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import REPO, VENV_BIN

HELPER = os.path.join(REPO, "tests", "helpers", "fault_job.py")
STEPS, GLOBAL_BATCH = 8, 4  # the helper's defaults: 8 steps per epoch of 4 examples


def horovodrun_command(where: list[str], job_args: list[str]) -> tuple[list[str], dict]:
    """(command, env) of horovodrun WHERE --gloo python fault_job.py JOB_ARGS."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return [os.path.join(VENV_BIN, "horovodrun"), *where, "--gloo", sys.executable, HELPER, *job_args], env


def horovodrun(where: list[str], job_args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """horovodrun WHERE --gloo python fault_job.py JOB_ARGS; stdout and stderr together in .stdout."""
    command, env = horovodrun_command(where, job_args)
    return subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env
    )


def discovery(folder, hosts: list[str]) -> tuple[str, str]:
    """(script, hosts file): the script prints the file, so a test or helper grows the job by appending."""
    hosts_file, script = os.path.join(folder, "hosts"), os.path.join(folder, "discover.sh")
    with open(hosts_file, "w") as f:
        f.write("".join(f"{h}\n" for h in hosts))
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\ncat {hosts_file}\n")
    os.chmod(script, 0o755)
    return script, hosts_file


def records(workdir: str, kind: str = "epoch") -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def batches_by_process(ids_dir: str) -> dict[int, list[dict]]:
    """{pid: [{"rank", "size", "epoch", "step", "ids"}, ...]}: what each process trained on, in order."""
    found = {}
    for name in sorted(os.listdir(ids_dir)):
        with open(os.path.join(ids_dir, name)) as f:
            rows = [json.loads(line) for line in f]
        found[rows[0]["pid"]] = rows
    return found


def tail(done: subprocess.CompletedProcess, chars: int = 6000) -> str:
    return done.stdout[-chars:]


def global_batch(epoch: int, step: int) -> list[int]:
    """The ids of global step `step` (1-based, over all epochs), as fault_job.py orders them."""
    order = np.random.default_rng([0, epoch]).permutation(STEPS * GLOBAL_BATCH)
    within = (step - 1) % STEPS
    return sorted(order[within * GLOBAL_BATCH : (within + 1) * GLOBAL_BATCH].tolist())
