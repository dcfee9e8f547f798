"""`twostream train --debug`: tiny sizes, eager and deterministic (two runs give the same losses), shapes logged."""

import json
import os

import pytest
from conftest import run_cli

from twostream.launch import cli


def _args(*argv):
    return cli.build_parser().parse_args(["train", "--workdir", "w", *argv])


def test_debug_applies_tiny_sizes_and_switches_and_set_still_wins():
    from twostream.launch import config_args

    config = config_args.load_config(_args("--preset", "demo", "--data", "d", "--debug", "--set", "train.epochs=2"))
    assert (config.clip.size, config.model.width, config.train.global_batch) == (32, 4, 4)  # the tiny preset
    assert config.train.eager and config.train.debug and config.train.epochs == 2
    plain = config_args.load_config(_args("--preset", "demo", "--data", "d"))
    assert not plain.train.eager and not plain.train.debug and plain.clip.size != 32


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(r["train_loss"], r["val_loss"]) for r in map(json.loads, f) if r["kind"] == "epoch"]


@pytest.mark.timeout(180)
@pytest.mark.tensorflow
def test_debug_runs_are_identical_and_print_the_boundary(tiny_dataset, tmp_path):
    runs = []
    for name in ("a", "b"):
        result = run_cli(
            "train",
            "--debug",
            "--data",
            tiny_dataset,
            "--workdir",
            str(tmp_path / name),
            "--set",
            "data.num_actors=1",
            "--set",
            "data.object_store_mb=128",
            timeout=150,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(_losses(str(tmp_path / name)))
    assert "data -> model boundary" in result.stderr
    assert "inputs/rgb   shape=(4, 4, 32, 32, 3) dtype=uint8" in result.stderr
    assert "inputs/flow  shape=(4, 4, 32, 32, 2) dtype=uint8" in result.stderr
    assert "labels       shape=(4,) dtype=int32" in result.stderr
    assert runs[0] == runs[1] and len(runs[0]) == 1  # deterministic: bit-identical losses


PROBE = """
import json, sys
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

out, argv = sys.argv[1], sys.argv[2:]
seen = []
original = tf.GradientTape.__init__


def probe(self, *args, **kwargs):   # only the update step opens a tape: eager or traced, determinism on or off
    if not seen:
        seen.append({"eager": tf.executing_eagerly(), "deterministic": tf_config.is_op_determinism_enabled()})
    original(self, *args, **kwargs)


tf.GradientTape.__init__ = probe
from twostream.launch.cli import main
code = main(argv)
with open(out, "w") as f:
    json.dump(seen[0] if seen else None, f)
sys.exit(code)
"""


@pytest.mark.timeout(240)
@pytest.mark.tensorflow
def test_debug_steps_are_eager_and_deterministic_and_a_plain_run_is_not(tiny_dataset, tmp_path):
    import subprocess
    import sys

    (tmp_path / "probe.py").write_text(PROBE)
    observed = {}
    for name, switch in (("debug", ["--debug"]), ("plain", ["--preset", "tiny"])):
        argv = [
            "train",
            *switch,
            "--data",
            tiny_dataset,
            "--workdir",
            str(tmp_path / name),
            "--set",
            "data.num_actors=1",
            "--set",
            "data.object_store_mb=128",
        ]
        done = subprocess.run(
            [sys.executable, str(tmp_path / "probe.py"), str(tmp_path / f"{name}.json"), *argv],
            capture_output=True,
            text=True,
            timeout=200,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        observed[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert observed == {
        "debug": {"eager": True, "deterministic": True},
        "plain": {"eager": False, "deterministic": False},
    }
