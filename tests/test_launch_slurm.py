"""`twostream launch slurm`: the sbatch script and the srun rank mapping. Real jobs on a real two-node SLURM:
tests/test_slurm_hosts.py."""

import os
import shutil
import stat
import sys

import pytest
from conftest import VENV_BIN

from twostream.launch import cli
from twostream.launch.jobs import srun
from twostream.trainer.runtime.preemption import EXIT_CODE

pytestmark = pytest.mark.tensorflow  # imports Horovod's runner (srun): left out of `make check`


def _write(tmp_path, data, *extra):
    script = str(tmp_path / "job.sbatch")
    code = cli.main(
        [
            "launch",
            "slurm",
            "--nodes",
            "2",
            "--gpus-per-node",
            "4",
            "--time",
            "04:00:00",
            "--partition",
            "gpu",
            "--account",
            "proj42",
            "--script",
            script,
            "--no-submit",
            "--preset",
            "tiny",
            "--data",
            data,
            "--workdir",
            str(tmp_path / "run"),
            "--set",
            "train.global_batch=8",
            *extra,
        ]
    )  # 8 ranks: a batch they split
    return code, script


def test_srun_script_starts_ranks_with_srun_asks_for_a_warning_and_requeues(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(os.path.dirname(tiny_dataset))  # a relative --data, made absolute in the script
    code, script = _write(tmp_path, os.path.basename(tiny_dataset), "--set", "train.epochs=3")
    assert code == 0
    text = open(script).read()
    assert text.startswith("#!/bin/bash\n") and os.stat(script).st_mode & stat.S_IXUSR
    for directive in [
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-task=1",
        "--time=04:00:00",
        "--partition=gpu",
        "--account=proj42",
        f"--output={tmp_path / 'run'}/slurm-%j.out",
        "--open-mode=append",
        "--signal=USR1@300",
        "--requeue",
    ]:
        assert f"#SBATCH {directive}\n" in text
    assert "horovodrun" not in text and "ssh" not in text
    twostream = os.path.join(os.path.abspath(VENV_BIN), "twostream")
    assert (
        f"{sys.executable} -m twostream.launch.jobs.srun rendezvous -- {twostream} train --preset tiny "
        f"--set train.global_batch=8 --set train.epochs=3 --data {tiny_dataset} --workdir {tmp_path / 'run'}"
    ) in text
    assert f'if [ "$status" -eq {EXIT_CODE} ]; then' in text and 'scontrol requeue "$SLURM_JOB_ID"' in text


def test_horovodrun_form_stays_available(tiny_dataset, tmp_path):
    code, script = _write(tmp_path, tiny_dataset, "--via", "horovodrun")
    text = open(script).read()
    assert code == 0 and "#SBATCH --gpus-per-node=4\n" in text and "--signal" not in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text and "SLOTS=4" in text
    assert f'exec {os.path.join(os.path.abspath(VENV_BIN), "horovodrun")} -np "$NP" -H "$HOSTS" --gloo' in text


def test_missing_data_folder_fails_before_writing_the_script(tmp_path, capsys):
    code, script = _write(tmp_path, str(tmp_path / "no_such_videos"))
    assert code == 2 and "no_such_videos' does not exist" in capsys.readouterr().err
    assert not os.path.exists(script)


def test_bad_time_and_warning_are_clear_errors(tiny_dataset, tmp_path, capsys):
    assert _write(tmp_path, tiny_dataset, "--time", "4h")[0] == 2
    assert "--time '4h' is not a SLURM time" in capsys.readouterr().err
    assert _write(tmp_path, tiny_dataset, "--time", "5", "--warning-s", "300")[0] == 2
    assert "--warning-s 300 must be more than 0 and less than --time 5 (300 s)" in capsys.readouterr().err


def test_submits_with_sbatch_on_path(tiny_dataset, tmp_path, monkeypatch, capsys):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    sbatch = fake_bin / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/submitted\necho "Submitted batch job 77"\n')
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    script = str(tmp_path / "job.sbatch")
    assert (
        cli.main(
            [
                "launch",
                "slurm",
                "--nodes",
                "1",
                "--gpus-per-node",
                "1",
                "--time",
                "30",
                "--partition",
                "p",
                "--script",
                script,
                "--preset",
                "tiny",
                "--data",
                tiny_dataset,
                "--workdir",
                str(tmp_path / "w"),
            ]
        )
        == 0
    )
    assert f"wrote {script}; submitting" in capsys.readouterr().out
    assert (tmp_path / "submitted").read_text().strip() == script


# ---------------------------------------------------------------------- srun task -> Horovod rank
def _task_env(node: str, procid: int, localid: int) -> dict:
    return {
        "TWOSTREAM_SRUN_HOSTS": "n1:2,n2:2,n3:1",
        "SLURM_NTASKS": "5",
        "SLURM_PROCID": str(procid),
        "SLURM_LOCALID": str(localid),
        "SLURMD_NODENAME": node,
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": "127.0.0.1",
    }


def test_each_srun_task_gets_horovods_rank_local_and_cross_rank():
    env = srun.task_environment(_task_env("n2", 3, 1))
    assert {
        k: env[k]
        for k in [
            "HOROVOD_HOSTNAME",
            "HOROVOD_RANK",
            "HOROVOD_SIZE",
            "HOROVOD_LOCAL_RANK",
            "HOROVOD_LOCAL_SIZE",
            "HOROVOD_CROSS_RANK",
            "HOROVOD_CROSS_SIZE",
        ]
    } == {
        "HOROVOD_HOSTNAME": "n2",
        "HOROVOD_RANK": "3",
        "HOROVOD_SIZE": "5",
        "HOROVOD_LOCAL_RANK": "1",
        "HOROVOD_LOCAL_SIZE": "2",
        "HOROVOD_CROSS_RANK": "1",
        "HOROVOD_CROSS_SIZE": "2",
    }
    last = srun.task_environment(_task_env("n3", 4, 0))
    assert (last["HOROVOD_LOCAL_SIZE"], last["HOROVOD_CROSS_RANK"], last["HOROVOD_CROSS_SIZE"]) == ("1", "2", "3")
    assert env["HOROVOD_GLOO_IFACE"] == "lo"  # the interface towards the rendezvous address


def test_a_task_placed_off_the_block_layout_is_refused():
    with pytest.raises(srun.SrunError, match="--distribution=block"):
        srun.task_environment(_task_env("n1", 3, 1))  # cyclic distribution would put rank 3 on n1


def test_tasks_per_node_and_node_names(tmp_path, monkeypatch):
    assert srun.tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    if not shutil.which("scontrol"):
        pytest.skip("no scontrol (apt-get install slurm-client)")
    # scontrol reads a slurm.conf even to expand names (a site has one; here the daemons may not be running)
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=t\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert srun.node_names("node[1-2],gpu7") == ["node1", "node2", "gpu7"]  # SLURM's own expansion, offline
