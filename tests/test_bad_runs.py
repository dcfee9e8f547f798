"""Bad runs through the real `twostream` command, one table: damaged checkpoints, a resume with another model,
no checkpoint, unreadable clips, a full disk, Ctrl-C at several moments. Each row: how the workdir (or data) is
damaged or when the signal comes, the exit status, the words expected, and never a traceback.

Every row starts from a copy of one shared workdir (two epochs of the tiny preset: ckpt-5 and ckpt-10).
Faults that need a moment inside the run (a full disk, Ctrl-C) come from FAULTS, a wrapper that runs the
command's own `main` after patching one function to fill the disk or to send the process a real SIGINT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import copy_workdir, run_cli

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

CHECKPOINTS = "checkpoints"
FAULTS = r'''
import os, signal, sys
mode, argv = sys.argv[1], sys.argv[2:]

def sigint_after(module, name):
    """Wraps module.name (dotted: an attribute of an attribute): the process sends itself a real SIGINT once the
    original has run, or, for a "before:" mode, right before it runs."""
    import importlib
    *path, last = name.split(".")
    owner = importlib.import_module(module)
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, last)
    def wrapped(*args, **kwargs):
        if before:
            os.kill(os.getpid(), signal.SIGINT)
        result = original(*args, **kwargs)
        if not before:
            os.kill(os.getpid(), signal.SIGINT)
        return result
    setattr(owner, last, wrapped)

if mode == "disk-full":   # the disk fills up right before the epoch-2 checkpoint: TensorFlow's own write fails
    import tensorflow as tf
    save = tf.train.CheckpointManager.save
    def filling_save(self, *args, **kwargs):
        if kwargs.get("checkpoint_number") == 10:
            with open(os.environ["FILLER"], "wb") as filler:
                try:
                    while True:
                        filler.write(b"\0" * (1 << 20)); filler.flush()
                except OSError:
                    pass
        return save(self, *args, **kwargs)
    tf.train.CheckpointManager.save = filling_save
elif mode != "none":
    before, (module, name) = mode.startswith("before:"), mode.split(":")[-2:]
    sigint_after(module, name)

from twostream.launch.cli import main

sys.exit(main(argv))
'''


@dataclass
class Case:
    name: str
    command: list[str]  # after `twostream`; WORK is the row's workdir, DATA the data folder
    exit_code: int
    words: list[str]  # all in stderr + stdout
    damage: Callable = lambda work, data: None  # prepares the row's workdir copy (and data copy)
    fault: str = "none"  # FAULTS mode
    check: Callable = lambda work: None  # more assertions on the workdir afterwards
    absent: list[str] = field(default_factory=list)  # words that must not appear


def _cut(work, name, size=100):
    with open(os.path.join(work, CHECKPOINTS, name), "r+b") as f:
        f.truncate(size)


def _remove(work, name):
    os.remove(os.path.join(work, CHECKPOINTS, name))


def _latest(work):
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(work, CHECKPOINTS))


def _whole(work, name):
    from twostream.trainer.engine.checkpoint import damage

    return damage(os.path.join(work, CHECKPOINTS, name)) == ""


def _records(work, kind="epoch"):
    with open(os.path.join(work, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def _unchanged(work):
    """config.yaml and the checkpoints as the copy had them: a refused resume changed nothing."""
    with open(os.path.join(work, "config.yaml")) as f:
        assert "width: 4" in f.read()
    assert sorted(os.listdir(os.path.join(work, CHECKPOINTS))) == [
        "checkpoint",
        "ckpt-10.data-00000-of-00001",
        "ckpt-10.index",
        "ckpt-5.data-00000-of-00001",
        "ckpt-5.index",
    ]


def _unreadable(work, data, side: int = 1, count: int = 1) -> list[str]:
    """Replaces the first `count` videos of one side of the split (0 training, 1 validation) in the data copy
    with bytes no decoder reads; returns their names."""
    with open(os.path.join(work, "config.yaml")) as f:
        root = next(line.split(":", 1)[1].strip() for line in f if line.strip().startswith("root:"))
    from twostream.data.manifest import load_manifest, split_by_video

    names = [os.path.relpath(r.path, root) for r in split_by_video(load_manifest(root, ""), 0.2)[side].records]
    for name in names[:count]:
        with open(os.path.join(data, name), "wb") as f:
            f.write(b"this is not a video\n" * 150)  # random bytes were now and then probed as a stream-less format
    return names[:count]


def _val_failures_recorded(work):
    (last,) = _records(work)[-1:]
    assert last["epoch"] == 3 and last["val_clips_failed"] >= 1
    assert all("FFmpeg cannot open it" in f for f in last["val_failed"])


def _eval_failures_reported(work):
    with open(os.path.join(work, "eval.json")) as f:
        report = json.load(f)
    assert report["clips_failed"] >= 1 and len(report["failed"]) == report["clips_failed"]


def _checkpoint_written_whole(work):
    assert _latest(work).endswith("ckpt-10") and _whole(work, "ckpt-10")


def _resumable(work):
    assert _latest(work).endswith("ckpt-10") and _whole(work, "ckpt-10")
    assert "ckpt-15" not in os.listdir(os.path.join(work, CHECKPOINTS))


TRAIN = ["train", "--preset", "tiny", "--workdir", "WORK", "--set", "train.epochs=3", "--set", "eval.views=2"]
EVALUATE = ["evaluate", "--workdir", "WORK", "--checkpoint", "latest"]
CASES = [
    Case(
        "truncated latest data file: train resumes from the one before",
        TRAIN,
        0,
        ["skipped damaged checkpoint", "ckpt-5 (step 5)", '"final"'],
        damage=lambda w, d: _cut(w, "ckpt-10.data-00000-of-00001"),
    ),
    Case(
        "deleted latest data file: evaluate uses the one before",
        EVALUATE,
        0,
        ["skipped damaged checkpoint", '"step": 5'],
        damage=lambda w, d: _remove(w, "ckpt-10.data-00000-of-00001"),
    ),
    Case(
        "deleted latest index: evaluate uses the one before",
        EVALUATE,
        0,
        ["skipped damaged checkpoint", '"step": 5'],
        damage=lambda w, d: _remove(w, "ckpt-10.index"),
    ),
    Case(
        "every checkpoint damaged: refused, naming the folder",
        EVALUATE,
        2,
        ["every checkpoint in", "is damaged", "new --workdir"],
        damage=lambda w, d: (_cut(w, "ckpt-10.data-00000-of-00001"), _cut(w, "ckpt-5.data-00000-of-00001")),
    ),
    Case(
        "resume with another width: refused before anything changes",
        TRAIN + ["--set", "model.width=8"],
        2,
        ["model.width 4 there, 8 here", "two_stream_c3d", "new --workdir"],
        check=_unchanged,
        absent=["decode actors"],
    ),
    Case(
        "resume with another model: both named",
        TRAIN + ["--set", "model.name=rgb_only_c3d"],
        2,
        ["holds checkpoints of model two_stream_c3d", "this run's rgb_only_c3d"],
        check=_unchanged,
    ),
    Case(
        "evaluate without a checkpoint: refused before Ray starts",
        EVALUATE,
        2,
        ["has no checkpoint yet; train first"],
        absent=["decode actors"],
        damage=lambda w, d: [shutil.rmtree(os.path.join(w, sub)) for sub in (CHECKPOINTS, "best")],
    ),
    Case(
        "an unreadable validation video: counted and named in the epoch record",
        TRAIN + ["--data", "DATA", "--set", "data.max_failed_fraction=0.5"],
        0,
        ['"final"'],
        damage=_unreadable,
        check=_val_failures_recorded,
    ),
    Case(
        "an unreadable validation video: counted and named in eval.json",
        EVALUATE + ["--data", "DATA", "--set", "data.max_failed_fraction=0.5"],
        0,
        ['"clips_failed": '],
        damage=_unreadable,
        check=_eval_failures_reported,
    ),
    Case(
        "too many unreadable validation clips: the DataError in one message",
        EVALUATE + ["--data", "DATA"],
        1,
        ["clips failed to load", "data.max_failed_fraction", "FFmpeg cannot open"],
        damage=_unreadable,
    ),
    Case(
        "too many unreadable training clips: the DataError in one message",
        TRAIN + ["--data", "DATA"],
        1,
        ["clips failed to load", "data.max_failed_fraction", "FFmpeg cannot open"],
        damage=lambda w, d: _unreadable(w, d, side=0, count=3),
    ),
    Case(
        "Ctrl-C during start-up, before the first step",
        TRAIN,
        130,
        ["interrupted (Ctrl-C)", "ckpt-10"],
        fault="twostream.trainer.video.inputs:start_ray",
        check=_resumable,
    ),
    Case(
        "Ctrl-C mid-epoch",
        TRAIN,
        130,
        ["interrupted (Ctrl-C)", "ckpt-10"],
        fault="twostream.trainer.engine.runlog:EpochProgress.advance",
        check=_resumable,
    ),
    Case(
        "Ctrl-C during validation",
        TRAIN,
        130,
        ["interrupted (Ctrl-C)", "ckpt-10"],
        fault="before:twostream.trainer.video.evaluate:local_scores",
        check=_resumable,
    ),
]


def _run(case: Case, source: str, data: str, tmp_path) -> subprocess.CompletedProcess:
    work = copy_workdir(source, str(tmp_path / "work"))
    rows = shutil.copytree(data, str(tmp_path / "data"))
    case.damage(work, rows)
    command = [a.replace("WORK", work).replace("DATA", rows) for a in case.command]
    if case.fault == "none":
        return run_cli(*command), work
    script = tmp_path / "faults.py"
    script.write_text(FAULTS)
    return subprocess.run(
        [sys.executable, str(script), case.fault, *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FILLER": str(tmp_path / "filler")},
    ), work


@pytest.fixture(scope="module")
def two_checkpoints(trained, tmp_path_factory) -> str:
    """The session's trained workdir resumed for a second epoch: checkpoints/ckpt-5 and ckpt-10."""
    work = copy_workdir(trained.workdir, str(tmp_path_factory.mktemp("two") / "run"))
    done = run_cli(
        "train",
        "--preset",
        "tiny",
        "--workdir",
        work,
        "--set",
        "train.epochs=2",
        "--set",
        "eval.views=2",
        "--data",
        _data_of(work),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def _data_of(work: str) -> str:
    with open(os.path.join(work, "config.yaml")) as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.strip().startswith("root:"))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_run(case, two_checkpoints, tiny_dataset, tmp_path):
    if case.command[0] == "train" and "--data" not in case.command:
        case = Case(**{**case.__dict__, "command": case.command + ["--data", tiny_dataset]})
    done, work = _run(case, two_checkpoints, tiny_dataset, tmp_path)
    output = done.stderr + done.stdout
    assert done.returncode == case.exit_code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for words in case.words:
        assert words in output, (words, output[-3000:])
    for words in case.absent:
        assert words not in output, (words, output[-3000:])
    case.check(work)


@pytest.mark.timeout(300)
def test_ctrl_c_during_a_checkpoint_write_finishes_it_and_the_rerun_resumes_there(
    two_checkpoints, tiny_dataset, tmp_path
):
    """The SIGINT comes inside the epoch-3 save: the checkpoint is written whole first, then the run stops."""
    case = Case(
        "",
        TRAIN + ["--data", tiny_dataset, "--set", "train.select_metric="],
        130,
        [],
        fault="before:tensorflow:train.CheckpointManager.save",
    )  # no best model: one save per epoch
    done, work = _run(case, two_checkpoints, tiny_dataset, tmp_path)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert _latest(work).endswith("ckpt-15") and _whole(work, "ckpt-15")
    rerun = run_cli(*[a.replace("WORK", work) for a in case.command])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "ckpt-15 (step 15)" in rerun.stderr and "Traceback" not in rerun.stderr
    assert [r["epoch"] for r in _records(work)] == [1, 2, 3]  # every epoch once


@pytest.mark.timeout(300)
def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(two_checkpoints, tiny_dataset, tmp_path):
    """A real tmpfs (root only) that fills up right before the step-10 save: TensorFlow's own write fails."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=110m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        work = copy_workdir(two_checkpoints, str(mount / "work"))
        for name in os.listdir(os.path.join(work, CHECKPOINTS)):  # back to one epoch: the next save is step 10
            if "ckpt-10" in name:
                _remove(work, name)
        with open(os.path.join(work, CHECKPOINTS, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckpt-5"\n')
        shutil.rmtree(os.path.join(work, "best"))
        script = tmp_path / "faults.py"
        script.write_text(FAULTS)
        done = subprocess.run(
            [
                sys.executable,
                str(script),
                "disk-full",
                *TRAIN[:3],
                "--workdir",
                work,
                "--data",
                tiny_dataset,
                "--set",
                "train.epochs=2",
                "--set",
                "eval.views=2",
                "--set",
                "train.select_metric=",
            ],  # no best model: the one save is the latest
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "FILLER": str(mount / "filler")},
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "could not be written: the disk is full" in done.stderr and str(mount) in done.stderr
        assert "a checkpoint needs about" in done.stderr and "ckpt-5 is kept" in done.stderr
        assert _latest(work).endswith("ckpt-5") and _whole(work, "ckpt-5")
        assert not [n for n in os.listdir(os.path.join(work, CHECKPOINTS)) if "ckpt-10" in n]  # no partial files
    finally:
        subprocess.run(["umount", str(mount)], check=True)
