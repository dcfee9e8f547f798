"""`twostream launch horovod` and launch/jobs/horovodrun.sh: the command built, checked, and -np 2 run for real."""

import json
import os
import subprocess

import pytest
from conftest import REPO, VENV_BIN, run_cli

from twostream.launch import cli
from twostream.launch.jobs.horovod_cmd import LaunchError, build_command, host_slots, hostfile_slots

TRAIN = ["--preset", "tiny", "--data", "D", "--workdir", "W"]


def test_command_defaults_to_localhost_slots_and_uses_the_venv_tools():
    command = build_command(2, None, None, TRAIN)
    assert command[1:6] == ["-np", "2", "-H", "localhost:2", "--gloo"]
    venv_bin = os.path.abspath(VENV_BIN)
    assert command[0] == os.path.join(venv_bin, "horovodrun") and command[6] == os.path.join(venv_bin, "twostream")
    assert command[7:] == ["train", *TRAIN]


def test_hosts_and_hostfile_are_parsed_and_checked_against_np(tmp_path):
    assert host_slots("a:4, b:2,c") == [("a", 4), ("b", 2), ("c", 1)]
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two nodes\nnode1 slots=4\nnode2 slots=4  # spare\n")
    assert hostfile_slots(str(hostfile)) == [("node1", 4), ("node2", 4)]
    assert build_command(8, None, str(hostfile), TRAIN, controller="mpi")[3:6] == ["--hostfile", str(hostfile), "--mpi"]
    with pytest.raises(LaunchError, match="needs 3 slots but the hosts offer 2"):
        build_command(3, "localhost:2", None, TRAIN)
    with pytest.raises(LaunchError, match="either -H or --hostfile"):
        build_command(2, "a:2", str(hostfile), TRAIN)
    with pytest.raises(LaunchError, match="host:slots"):
        host_slots("a:x")
    hostfile.write_text("node1 cpus=4\n")
    with pytest.raises(LaunchError, match="hostname slots=4"):
        hostfile_slots(str(hostfile))


def test_bad_input_is_one_clear_line_not_a_traceback(capsys):
    result = run_cli("launch", "horovod", "-np", "4", "-H", "localhost:2", *TRAIN, "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "twostream launch horovod: error: -np 4 needs 4 slots but the hosts offer 2" in result.stderr
    assert cli.main(["launch", "horovod", "-np", "2", "--preset", "tiny", "--workdir", "W", "--dry-run"]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert cli.main(["launch", "horovod", "-np", "2", *TRAIN, "--set", "train.nope=1", "--dry-run"]) == 2
    assert "unknown key(s) ['train.nope']" in capsys.readouterr().err


def _script(*args, **env):
    return subprocess.run(
        [os.path.join(REPO, "launch", "jobs", "horovodrun.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DRY_RUN": "1", "NP": "2", **env},
    )


def test_shell_script_builds_the_same_command_after_the_same_checks():
    script = _script(*TRAIN)
    assert script.returncode == 0, script.stderr
    assert script.stdout.split() == build_command(2, None, None, TRAIN)
    both = _script(*TRAIN, HOSTFILE="h", HOSTS="a:2")
    assert both.returncode == 2 and "not both" in both.stderr
    bad_key = _script(*TRAIN, "--set", "train.nope=1")  # printed the command and exited 0 before
    assert bad_key.returncode == 2 and bad_key.stdout == "" and "unknown key(s) ['train.nope']" in bad_key.stderr
    uneven = _script(*TRAIN, NP="3")  # the tiny preset's global batch of 4 over 3 ranks
    assert uneven.returncode == 2 and "Traceback" not in uneven.stderr
    assert "train.global_batch=4 does not split evenly over 3 ranks" in uneven.stderr


def test_np_that_does_not_split_the_batch_is_refused_before_launch(capsys):
    assert cli.main(["launch", "horovod", "-np", "3", *TRAIN, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no horovodrun command printed, nothing started
    assert captured.err == (
        "twostream launch horovod: error: train.global_batch=4 does not split evenly over 3 "
        "ranks; choose a multiple of 3, e.g. 6, or a number of ranks that divides 4\n"
    )
    assert cli.main(["launch", "horovod", "-np", "2", *TRAIN, "--set", "train.accumulate_steps=4", "--dry-run"]) == 2
    assert "must divide the per-rank batch (2 = train.global_batch 4 / 2 ranks)" in capsys.readouterr().err


def test_elastic_and_stall_flags_run_through_the_cli(capsys, tmp_path):
    script = tmp_path / "discover.sh"
    script.write_text("#!/bin/sh\necho localhost:2\n")
    script.chmod(0o755)
    elastic = [
        "launch",
        "horovod",
        "-np",
        "2",
        "--elastic",
        "--min-np",
        "1",
        "--host-discovery-script",
        str(script),
        "--network-interface",
        "lo",
        "--stall-shutdown-s",
        "60",
        *TRAIN,
        "--dry-run",
    ]
    assert cli.main([*elastic, "--max-np", "2"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[1:12] == [
        "-np",
        "2",
        "--min-np",
        "1",
        "--max-np",
        "2",
        "--host-discovery-script",
        str(script),
        "--network-interface",
        "lo",
        "--gloo",
    ]
    assert printed[12:16] == ["--stall-check-warning-time-seconds", "30", "--stall-check-shutdown-time-seconds", "60"]
    assert printed[-2:] == ["--set", "train.elastic=true"]
    assert cli.main([*elastic, "--max-np", "4"]) == 2  # the batch of 4 does not split over 3 ranks
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "twostream launch horovod: error: train.global_batch=4 does not split evenly over 3 ranks (the job may run "
        "with 1 to 4); choose a multiple of 12, e.g. 12\n"
    )


@pytest.mark.timeout(300)
@pytest.mark.tensorflow
def test_np2_runs_for_real(tiny_dataset, tmp_path):
    workdir = str(tmp_path / "np2")
    result = run_cli(
        "launch",
        "horovod",
        "-np",
        "2",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        workdir,
        "--set",
        "data.num_actors=1",
        "--set",
        "data.object_store_mb=128",
        timeout=270,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.splitlines()[0].split()[1:5] == ["-np", "2", "-H", "localhost:2"]
    finals = [line for line in result.stdout.splitlines() if '{"final":' in line]
    assert len(finals) == 1, finals  # rank 0 alone prints the result
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    assert [r["world_size"] for r in epochs] == [2]
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
