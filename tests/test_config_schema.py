"""Generated from the config schema: every field given a wrong value ends the command with one line naming the key.

The cases come from the dataclasses themselves (every field of every section, with the accepted values and
bounds its metadata declares), so a field added later is tested without editing this file. Most cases run
the real CLI in process (`twostream config --set ...`); a few go through `train` and the launchers, and a
handful through the installed command in a subprocess.
"""

import dataclasses
import os
import subprocess

import pytest
from conftest import REPO, run_cli

from twostream.launch import cli
from twostream.trainer import config as config_lib
from twostream.trainer.config import Config

# Free-form strings (paths, addresses, a metric name): no list of accepted values to check them against.
FREE_TEXT = {
    "data.root",
    "data.manifest",
    "data.ray_address",
    "data.flow_cache_dir",
    "model.weights",
    "model.pretrained",
    "train.select_metric",
    "data.boxes",
    "data.classes",
}  # data.classes: names checked against the dataset
LISTS = {"clip.scale_jitter"}  # [] or [min, max]: ClipSpec.problem checks it (tests/test_transforms.py)


def schema_fields():
    """(key, field, default) for every field of every section."""
    defaults = Config()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(getattr(defaults, section.name)):
            yield f"{section.name}.{field.name}", field, getattr(getattr(defaults, section.name), field.name)


def wrong_values(field, default) -> list:
    """One value just outside each declared rule: a name not accepted, or a number past each bound."""
    declared = config_lib.rules(field)
    if "one_of" in declared:
        return ["no_such_" + field.name]
    step = 1 if isinstance(default, int) else 0.5
    return [
        value
        for value in [
            declared["min"] - step if "min" in declared else None,
            declared["max"] + step if "max" in declared else None,
            declared.get("above"),
            declared.get("below"),
        ]
        if value is not None
    ]


BAD_VALUES = [(key, value) for key, field, default in schema_fields() for value in wrong_values(field, default)]
ALL_KEYS = [key for key, _, _ in schema_fields()]


def _fails_with_one_line(capsys, argv: list[str], command: str, key: str) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"twostream {command}: error: {key}"), err
    return err


def test_every_number_is_bounded_and_every_name_enumerated():
    """A field added without its accepted values fails here: the generated cases below would miss it."""
    unchecked = [
        key
        for key, field, default in schema_fields()
        if not isinstance(default, bool) and not config_lib.rules(field) and key not in FREE_TEXT | LISTS
    ]
    assert not unchecked, f"declare accepted values (one_of) or bounds (min/max/above/below) for {unchecked}"
    assert len(BAD_VALUES) > 40


def test_defaults_and_every_shipped_preset_pass_their_own_checks():
    for preset in [None] + config_lib.preset_names():
        config_lib.load(preset)  # raises ConfigError if a shipped value breaks a rule


@pytest.mark.parametrize("key,value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_a_value_outside_the_schema_is_refused_by_name(capsys, key, value):
    field = next(f for k, f, _ in schema_fields() if k == key)
    err = _fails_with_one_line(capsys, ["config", "--set", f"{key}={value}"], "config", key)
    assert f"must be {config_lib.accepted(config_lib.rules(field))}, got {value!r}" in err


@pytest.mark.parametrize("key", [key for key in ALL_KEYS if key not in LISTS])  # lists: tests/test_transforms.py
def test_a_value_of_the_wrong_type_is_refused_by_name(capsys, key):
    err = _fails_with_one_line(capsys, ["config", "--set", f"{key}=[1, 2]"], "config", key)
    assert "got [1, 2] (list)" in err


def test_a_non_finite_number_is_refused(capsys):
    _fails_with_one_line(capsys, ["config", "--set", "train.lr=.nan"], "config", "train.lr must be a finite number")


def test_keys_that_depend_on_each_other(capsys):
    _fails_with_one_line(
        capsys,
        ["config", "--preset", "tiny", "--set", "model.name=two_stream_tsn", "--set", "model.flow_stack=3"],
        "config",
        "model.flow_stack=3 must divide clip.num_frames=4",
    )
    assert cli.main(["config", "--preset", "tiny", "--set", "model.flow_stack=3"]) == 0  # c3d: no flow stacks
    capsys.readouterr()
    _fails_with_one_line(
        capsys,
        ["config", "--preset", "tiny", "--set", "train.accumulate_steps=3"],
        "config",
        "train.accumulate_steps=3 must divide train.global_batch=4",
    )
    _fails_with_one_line(
        capsys,
        ["config", "--preset", "tiny", "-np", "3"],
        "config",
        "train.global_batch=4 does not split evenly over 3 ranks",
    )
    _fails_with_one_line(
        capsys,
        ["config", "--preset", "tiny", "--set", "train.accumulate_steps=4", "-np", "2"],
        "config",
        "train.accumulate_steps=4 must divide the per-rank batch (2 = train.global_batch 4 / 2 ranks)",
    )


def test_config_prints_the_resolved_config_that_train_would_use(capsys, tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  seed: 7\n")
    argv = ["--preset", "demo", "--config", str(path), "--set", "train.lr=0.01", "--debug"]
    assert cli.main(["config", *argv]) == 0
    printed = config_lib.from_dict(yaml.safe_load(capsys.readouterr().out))
    assert printed == config_lib.load(
        "demo", str(path), cli.config_args.overrides(cli.build_parser().parse_args(["train", "--workdir", "w", *argv]))
    )
    assert (printed.train.seed, printed.train.lr, printed.train.eager, printed.clip.size) == (7, 0.01, True, 32)


# ------------------------------------------------------------------ every command and launcher refuses first
BAD = ["--set", "clip.sampling=foo"]
DATA = ["--data", "D"]


@pytest.fixture
def ray_starts(monkeypatch) -> list:
    """Every ray.init call made while the test runs (a Ray left running by earlier tests does not count)."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def test_train_refuses_before_starting_ray_or_writing_the_workdir(capsys, tmp_path, ray_starts):
    workdir = tmp_path / "run"
    _fails_with_one_line(capsys, ["train", *DATA, "--workdir", str(workdir), *BAD], "train", "clip.sampling")
    assert not workdir.exists() and ray_starts == []


@pytest.mark.parametrize(
    "argv,command",
    [
        (["launch", "horovod", "-np", "2", "--dry-run"], "launch horovod"),
        (
            [
                "launch",
                "slurm",
                "--nodes",
                "2",
                "--gpus-per-node",
                "1",
                "--time",
                "10",
                "--partition",
                "p",
                "--no-submit",
            ],
            "launch slurm",
        ),
        (["launch", "k8s", "--image", "i"], "launch k8s"),
        (["launch", "ray", "--address", "127.0.0.1:1", "--num-workers", "2"], "launch ray"),
    ],
)
def test_every_launcher_refuses_before_it_writes_or_starts_anything(capsys, tmp_path, argv, command, ray_starts):
    workdir = tmp_path / "run"
    out = tmp_path / "job.yaml"
    extra = ["--out", str(out)] if command == "launch k8s" else []
    _fails_with_one_line(capsys, [*argv, *extra, *DATA, "--workdir", str(workdir), *BAD], command, "clip.sampling")
    assert not workdir.exists() and not out.exists() and ray_starts == []


@pytest.mark.parametrize(
    "argv,command",
    [
        (["launch", "horovod", "-np", "3", "--dry-run"], "launch horovod"),
        (
            [
                "launch",
                "slurm",
                "--nodes",
                "3",
                "--gpus-per-node",
                "1",
                "--time",
                "10",
                "--partition",
                "p",
                "--no-submit",
            ],
            "launch slurm",
        ),
        (["launch", "k8s", "--image", "i", "--workers", "3"], "launch k8s"),
        (["launch", "ray", "--address", "127.0.0.1:1", "--num-workers", "3"], "launch ray"),
    ],
)
def test_every_launcher_refuses_a_world_that_does_not_split_the_batch(capsys, tmp_path, argv, command):
    extra = ["--out", str(tmp_path / "job.yaml")] if command == "launch k8s" else []
    _fails_with_one_line(
        capsys,
        [*argv, *extra, "--preset", "tiny", *DATA, "--workdir", str(tmp_path / "w")],
        command,
        "train.global_batch=4 does not split evenly over 3 ranks",
    )


@pytest.mark.parametrize(
    "argv,command",
    [
        (["prepare", *DATA, "--preset", "tiny"], "prepare"),
        (["models", "--preset", "tiny"], "models"),
        (["evaluate", "--workdir", "WORKDIR"], "evaluate"),
        (["predict", "v.mp4", "--workdir", "WORKDIR"], "predict"),
    ],
)
def test_the_other_commands_refuse_a_bad_value_too(capsys, tmp_path, argv, command):
    workdir = tmp_path / "trained"
    workdir.mkdir()
    config_lib.save(config_lib.load("tiny"), str(workdir / "config.yaml"))
    (workdir / "config.yaml").write_text(
        (workdir / "config.yaml").read_text().replace("sampling: dense", "sampling: foo")
    )
    argv = [str(workdir) if a == "WORKDIR" else a for a in argv]
    if command in ("prepare", "models"):
        argv += BAD
    _fails_with_one_line(capsys, argv, command, "clip.sampling")


# ------------------------------------------------------------------ the installed command, as a user runs it
@pytest.mark.parametrize(
    "argv",
    [
        ["config", "--set", "train.schedule=cosin"],
        ["train", "--data", "D", "--workdir", "W", "--set", "train.elastic_commit_every=0"],
        ["launch", "horovod", "-np", "2", "--data", "D", "--workdir", "W", "--dry-run", "--set", "model.fusion=sum"],
    ],
)
def test_the_installed_command_exits_2_with_one_line(tmp_path, argv):
    key = argv[-1].split("=")[0]
    result = run_cli(*argv, cwd=str(tmp_path), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("twostream ") and key in result.stderr
    assert not (tmp_path / "W").exists()


def test_the_shell_launcher_runs_the_same_checks(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "NP": "2"}
    result = subprocess.run(
        [
            os.path.join(REPO, "launch", "jobs", "horovodrun.sh"),
            "--data",
            "D",
            "--workdir",
            "W",
            "--set",
            "train.lr=-1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    assert "train.lr must be greater than 0, got -1.0" in result.stderr


def test_bounds_in_words():
    assert config_lib.accepted({"min": 1}) == "at least 1"
    assert config_lib.accepted({"above": 0, "below": 1}) == "greater than 0 and less than 1"
    assert config_lib.accepted({"one_of": ("a", "b")}) == "one of a, b"
    lr = next(f for f in dataclasses.fields(config_lib.TrainConfig) if f.name == "lr")
    assert wrong_values(lr, 1e-3) == [0]  # the excluded bound itself
