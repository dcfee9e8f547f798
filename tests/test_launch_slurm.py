"""`twostream launch slurm`: the sbatch script's content, and its body run here with SLURM's variables faked."""
import json
import os
import stat
import subprocess

import pytest

from conftest import VENV_BIN
from twostream.launch import cli


def _write(tmp_path, *extra):
    script = str(tmp_path / "job.sbatch")
    code = cli.main(["launch", "slurm", "--nodes", "2", "--gpus-per-node", "4", "--time", "04:00:00",
                     "--partition", "gpu", "--account", "proj42", "--script", script, "--no-submit",
                     "--preset", "tiny", "--data", "/shared/videos", "--workdir", str(tmp_path / "run"),
                     "--set", "train.global_batch=8", *extra])   # 8 ranks: a batch they split
    return code, script


def test_script_content(tmp_path, capsys):
    code, script = _write(tmp_path, "--set", "train.epochs=3")
    assert code == 0 and f"wrote {script} (--no-submit)" in capsys.readouterr().out
    text = open(script).read()
    assert text.startswith("#!/bin/bash\n") and os.stat(script).st_mode & stat.S_IXUSR
    for directive in ["--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=04:00:00",
                      "--partition=gpu", "--account=proj42", f"--output={tmp_path / 'run'}/slurm-%j.out"]:
        assert f"#SBATCH {directive}\n" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text and "SLOTS=4" in text
    horovodrun = os.path.join(os.path.abspath(VENV_BIN), "horovodrun")
    assert f'exec {horovodrun} -np "$NP" -H "$HOSTS" --gloo' in text
    assert ("train --preset tiny --set train.global_batch=8 --set train.epochs=3 --data /shared/videos --workdir "
            + str(tmp_path / "run")) in text


def test_submits_with_sbatch_when_there_is_one(tmp_path, monkeypatch, capsys):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    sbatch = fake_bin / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/submitted\necho "Submitted batch job 77"\n')
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    script = str(tmp_path / "job.sbatch")
    assert cli.main(["launch", "slurm", "--nodes", "1", "--gpus-per-node", "1", "--time", "30", "--partition", "p",
                     "--script", script, "--preset", "tiny", "--data", "d", "--workdir", str(tmp_path / "w")]) == 0
    assert f"wrote {script}; submitting" in capsys.readouterr().out
    assert (tmp_path / "submitted").read_text().strip() == script


def test_bad_time_and_counts_are_clear_errors(tmp_path, capsys):
    assert _write(tmp_path, "--time", "4h")[0] == 2
    assert "--time '4h' is not a SLURM time" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_script_body_runs_here_with_fake_slurm(tiny_dataset, tmp_path):
    script, workdir = str(tmp_path / "job.sbatch"), str(tmp_path / "run")
    assert cli.main(["launch", "slurm", "--nodes", "1", "--gpus-per-node", "0", "--procs-per-node", "1",
                     "--time", "10", "--partition", "debug", "--script", script, "--no-submit", "--preset", "tiny",
                     "--data", tiny_dataset, "--workdir", workdir, "--set", "data.num_actors=1",
                     "--set", "data.object_store_mb=128"]) == 0
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    scontrol = fake_bin / "scontrol"   # SLURM's node list expansion, for a one-node allocation on this machine
    scontrol.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && [ "$3" = "node[1]" ] && echo localhost\n')
    scontrol.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node[1]",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "1"}
    result = subprocess.run(["bash", script], capture_output=True, text=True, env=env, timeout=160)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "twostream: 1 ranks on localhost:1 (job 4242)" in result.stdout
    final = json.loads(result.stdout.strip().splitlines()[-1].split("]<stdout>:")[-1])["final"]
    assert final["clips"] > 0
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
