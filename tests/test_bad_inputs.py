"""Bad inputs a new user gives before anything starts (config files, --set values, manifests, box files): one table.

Each row: the files to write (paths relative to a fresh folder, text content; "VIDEO" writes an empty video file,
enough for checks that only look for the file), the command line ({tmp} is that folder), the exit status and
the words the output must hold. Every row also asserts that no traceback is printed and that a refusal is one
line. Rows run the real CLI in process; INSTALLED rows also run through the installed `twostream` command.
Adding a case is adding a row.
"""

from __future__ import annotations

import os

import pytest
from conftest import run_cli

from twostream.launch import cli

VIDEO = object()  # a file's content: an empty .mp4 (the manifest checks only that it exists)


def _csv(*rows: str) -> dict:
    """A CSV dataset: manifest.csv with these `path,label` rows and an empty video file for each path."""
    return {
        "d/manifest.csv": "path,label\n" + "".join(f"{row}\n" for row in rows),
        **{f"d/{row.split(',')[0]}": VIDEO for row in rows},
    }


def _balanced(n: int = 3) -> list[str]:
    return [f"r{i}.mp4,real" for i in range(n)] + [f"f{i}.mp4,fake" for i in range(n)]


TRAIN = ["train", "--preset", "tiny", "--data", "{tmp}/d", "--workdir", "{tmp}/w"]
CONFIG = ["config", "--config", "{tmp}/c.yaml"]
# (id, files, argv, exit status, words the output holds)
CASES = [
    # ---- YAML config files
    ("yaml-syntax", {"c.yaml": "train:\n  epochs: [1\n"}, CONFIG, 2, ["c.yaml:3:1", "not valid YAML"]),
    ("yaml-tab", {"c.yaml": "train:\n\tepochs: 1\n"}, CONFIG, 2, ["c.yaml:2:1", "not tabs"]),
    ("yaml-list", {"c.yaml": "- train\n- eval\n"}, CONFIG, 2, ["c.yaml", "must be a mapping of sections", "list"]),
    ("yaml-section-scalar", {"c.yaml": "train: 3\n"}, CONFIG, 2, ["config section 'train' must be a mapping"]),
    (
        "yaml-duplicate-key",
        {"c.yaml": "train:\n  epochs: 1\n  epochs: 2\n"},
        CONFIG,
        2,
        ["c.yaml:3:3", "'epochs' is given twice", "line 2"],
    ),
    (
        "yaml-duplicate-section",
        {"c.yaml": "train:\n  epochs: 1\neval:\n  views: 2\ntrain:\n  lr: 0.1\n"},
        CONFIG,
        2,
        ["c.yaml:5:1", "'train' is given twice"],
    ),
    ("yaml-lr-1e-4", {"c.yaml": "train:\n  lr: 1e-4\n"}, CONFIG, 0, ["lr: 0.0001"]),
    ("set-lr-1e-4", {}, ["config", "--set", "train.lr=1e-4"], 0, ["lr: 0.0001"]),
    ("set-lr-3E-5", {}, ["config", "--set", "train.lr=3E-5"], 0, ["lr: 3.0e-05"]),
    ("set-value-syntax", {}, ["config", "--set", "train.lr=[1"], 2, ["--set train.lr:1:3", "not valid YAML"]),
    ("config-missing", {}, CONFIG, 2, ["config file", "not found"]),
    # ---- sizes against memory
    (
        "clip-size-huge",
        {},
        ["config", "--set", "clip.size=100000"],
        2,
        ["clip.size=100000", "GiB", "memory", "lower clip.size"],
    ),
    ("short-side-huge", {}, ["config", "--set", "clip.short_side=90000"], 2, ["clip.short_side=90000", "GiB"]),
    (
        "clips-per-call-huge",
        {},
        ["config", "--set", "data.clips_per_call=1000000000"],
        2,
        ["data.clips_per_call=1000000000", "one actor call", "GiB"],
    ),
    (
        "global-batch-huge",
        {},
        ["config", "--set", "train.global_batch=100000000"],
        2,
        ["train.global_batch=100000000", "float32", "GiB"],
    ),
    # ---- settings without effect together, and errors naming the right key
    (
        "squash-short-side",
        {},
        ["config", "--set", "clip.resize=squash", "--set", "clip.short_side=80"],
        2,
        ["clip.short_side has no effect with clip.resize=squash"],
    ),
    (
        "squash-spatial-crops",
        {},
        ["config", "--set", "clip.resize=squash", "--set", "eval.spatial_crops=3"],
        2,
        ["eval.spatial_crops has no effect with clip.resize=squash"],
    ),
    (
        "c3d-one-frame",
        {},
        ["config", "--set", "clip.num_frames=1", "--set", "model.name=two_stream_c3d"],
        0,
        ["num_frames: 1"],
    ),
    (
        "tsn-flow-stack",
        {},
        ["config", "--set", "clip.num_frames=3", "--set", "model.name=two_stream_tsn"],
        2,
        ["model.flow_stack=2 must divide clip.num_frames=3"],
    ),
    (
        "select-metric",
        _csv(*_balanced()),
        TRAIN + ["--set", "train.select_metric=val_acc"],
        2,
        ["train.select_metric='val_acc'", "val_accuracy", "val_video_roc_auc"],
    ),
    # ---- manifests
    ("dfdc-list", {"d/metadata.json": '[{"a.mp4": "REAL"}]'}, TRAIN, 2, ["metadata.json", "must be a JSON object"]),
    (
        "dfdc-bad-json",
        {"d/metadata.json": '{"a.mp4": {"label": "REAL"},}'},
        TRAIN,
        2,
        ["metadata.json:1:29", "not valid JSON"],
    ),
    (
        "dfdc-one-class",
        {
            "d/metadata.json": '{"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "REAL"}}',
            "d/a.mp4": VIDEO,
            "d/b.mp4": VIDEO,
        },
        TRAIN,
        2,
        ["class 'FAKE' has no videos"],
    ),
    (
        "csv-label-typo",
        _csv(*_balanced(), "x.mp4,fkae"),
        TRAIN,
        2,
        ["class 'fkae' has 1 video(s)", "manifest.csv:8", "data.min_class_videos=2", "fake, real"],
    ),
    ("csv-label-case", _csv(*_balanced(), "x.mp4,Real"), TRAIN, 2, ["class 'Real'", "a typo of 'real'?"]),
    (
        "csv-two-labels",
        _csv(*_balanced(), "r0.mp4,fake"),
        TRAIN,
        2,
        ["'r0.mp4' is listed with different labels", "line 2 ('real')", "line 8 ('fake')"],
    ),
    (
        "csv-repeat-refused",
        _csv(*_balanced(), "r0.mp4,real"),
        TRAIN + ["--set", "data.merge_duplicates=false"],
        2,
        ["'r0.mp4' is listed 2 times", "data.merge_duplicates=true"],
    ),
    (
        "csv-label-not-in-classes",
        _csv(*_balanced(), "x.mp4,fkae", "y.mp4,fkae"),
        TRAIN + ["--set", "data.classes=real,fake"],
        2,
        ["label 'fkae' of 2 video(s) (x.mp4, y.mp4)", "not one of data.classes (real, fake)"],
    ),
    (
        "classes-without-videos",
        _csv(*_balanced()),
        TRAIN + ["--set", "data.classes=real,fake,other"],
        2,
        ["class 'other' of data.classes has no videos"],
    ),
    (
        "csv-missing-file",
        {
            **_csv(*_balanced()),
            "d/manifest.csv": "path,label\n" + "".join(f"{row}\n" for row in _balanced() + ["gone.mp4,real"]),
        },
        TRAIN,
        2,
        ["missing file", "gone.mp4"],
    ),
    ("folder-one-class", {"d/real/a.mp4": VIDEO, "d/real/b.mp4": VIDEO}, TRAIN, 2, ["1 class sub-folder"]),
    # ---- region boxes
    (
        "boxes-bad-json",
        {**_csv(*_balanced()), "b.json": '{"r0": [[0, 1, 2, 3, 4]],'},
        ["prepare", "--preset", "tiny", "--data", "{tmp}/d", "--set", "data.boxes={tmp}/b.json"],
        2,
        ["b.json:1:26", "not valid JSON"],
    ),
    (
        "boxes-not-object",
        {**_csv(*_balanced()), "b.json": "[1, 2]"},
        ["prepare", "--preset", "tiny", "--data", "{tmp}/d", "--set", "data.boxes={tmp}/b.json"],
        2,
        ["b.json", "must be an object"],
    ),
]
INSTALLED = {"yaml-syntax", "yaml-lr-1e-4", "csv-label-typo", "clip-size-huge"}  # also through the installed command


def _write(folder, files: dict) -> None:
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"" if content is VIDEO else content.encode())


def _check(code: int, out: str, err: str, expected_code: int, words: list[str]) -> None:
    assert "Traceback" not in out + err, err
    assert code == expected_code, err
    for word in words:
        assert word in (err if expected_code else out), f"{word!r} not in {err if expected_code else out!r}"
    if expected_code:  # one line naming the command; a dataset's further problems each on an indented line below
        first, *more = err.splitlines()
        assert first.startswith("twostream ") and all(line.startswith("  ") for line in more), err


@pytest.mark.parametrize("name,files,argv,code,words", CASES, ids=[case[0] for case in CASES])
def test_a_bad_input_ends_in_one_line_naming_it(tmp_path, capsys, name, files, argv, code, words):
    _write(tmp_path, files)
    returned = cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    _check(returned, captured.out, captured.err, code, words)
    assert not (tmp_path / "w").exists()  # nothing written before the refusal


@pytest.mark.parametrize(
    "name,files,argv,code,words",
    [c for c in CASES if c[0] in INSTALLED],
    ids=sorted(INSTALLED, key=[c[0] for c in CASES].index),
)
def test_the_installed_command_answers_the_same(tmp_path, name, files, argv, code, words):
    _write(tmp_path, files)
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv], cwd=str(tmp_path), timeout=120)
    _check(result.returncode, result.stdout, result.stderr, code, words)


def test_the_table_covers_every_kind_of_input():
    """A guard that the table stays a table: every row has a unique id and at least one expected word."""
    names = [case[0] for case in CASES]
    assert len(names) == len(set(names)) and all(case[4] for case in CASES)
    assert INSTALLED <= set(names)


# ------------------------------------------------------------------ start-up noise
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "Token authentication")


@pytest.mark.tensorflow
def test_no_library_start_up_lines_unless_verbose(tmp_path):
    """A command that loads TensorFlow (predict does before it looks at the model) says only its own line."""
    argv = ["predict", "x.mp4", "--model", str(tmp_path / "none")]
    quiet = run_cli(*argv, cwd=str(tmp_path), timeout=120)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1, quiet.stderr
    assert quiet.stderr.startswith("twostream predict: error: ")
    loud = run_cli("--verbose", *argv, cwd=str(tmp_path), timeout=120)
    assert loud.returncode == 2 and loud.stderr.endswith(quiet.stderr)
    assert any(line in loud.stderr for line in NOISE), loud.stderr  # the filter, not TensorFlow, hid them
    config = run_cli("config", "--preset", "demo", cwd=str(tmp_path), timeout=120)
    assert config.returncode == 0 and config.stderr == "", config.stderr


@pytest.mark.tensorflow
def test_the_select_metric_check_knows_the_fields_a_run_writes(trained):
    """The names train.select_metric is checked against are the val_* numbers of a real run's epoch record."""
    import json

    from twostream.trainer.video.select_check import validation_fields

    with open(os.path.join(trained.workdir, "metrics.jsonl")) as f:
        record = next(r for r in map(json.loads, f) if r["kind"] == "epoch")
    written = {
        k
        for k, v in record.items()
        if k.startswith("val_") and isinstance(v, (int, float, type(None))) and not k.endswith("_failed")
    }
    assert set(validation_fields(2)) == written
