"""Config: presets load, overrides are typed, wrong keys and types fail with the accepted alternatives."""

import dataclasses
import os

import pytest

from twostream.trainer import config as config_lib
from twostream.trainer.config import ConfigError


def test_presets_load_and_overrides_apply():
    assert {"demo", "tiny"} <= set(config_lib.preset_names())
    config = config_lib.load(
        "tiny", overrides=["train.epochs=3", "train.lr=1", "data.root=/x", "clip.flow_method=farneback"]
    )
    assert config.train.epochs == 3 and config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.data.root == "/x" and config.clip.flow_method == "farneback"
    assert config.clip.size == 32  # from the preset


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  global_batch: 32\n")
    config = config_lib.load("demo", str(path), ["train.epochs=2"])
    assert (config.train.epochs, config.train.global_batch) == (2, 32)


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epoch=3", "train accepts: .*epochs"),
        ("trian.epochs=3", "unknown config section"),
        ("train.epochs=three", "train.epochs must be int"),
        ("train.eager=1", "train.eager must be bool"),
        ("epochs", "section.key=value"),
    ],
)
def test_bad_overrides_name_the_key_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.load(overrides=[override])


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="demo"):
        config_lib.load("nope")


def test_saved_config_round_trips(tmp_path):
    config = config_lib.load("demo", overrides=["data.root=/videos"])
    config_lib.save(config, str(tmp_path / "config.yaml"))
    assert config_lib.load(path=str(tmp_path / "config.yaml")) == config


@pytest.mark.tensorflow
def test_prepare_fills_the_cache_that_train_reads_by_default_and_clean_removes_it(tiny_dataset, tmp_path, capsys):
    import shutil

    from twostream.data.decode.flow_cache import FlowCache
    from twostream.launch import cli
    from twostream.trainer.video.inputs import cache_settings

    root = str(tmp_path / "videos")
    shutil.copytree(tiny_dataset, root)
    config = config_lib.load("tiny", overrides=[f"data.root={root}"])
    assert config.data.flow_cache_folder() == "" and cache_settings(config).folder == ""  # none yet: flow online
    assert cli.main(["prepare", "--preset", "tiny", "--data", root]) == 0
    folder = os.path.join(root, ".flow_cache")
    assert cache_settings(config).folder == folder  # train's pool reads where prepare wrote
    assert cache_settings(config).max_bytes == 20 << 30  # data.flow_cache_gb, the only default of the bound
    cache = FlowCache(folder, config.data.flow_cache_bytes, config.clip.flow_params())
    videos = [os.path.join(d, f) for d, _, files in os.walk(root) if ".flow_cache" not in d for f in files]
    assert videos and all(cache.get(v) is not None for v in videos)
    capsys.readouterr()
    assert cli.main(["prepare", "--preset", "tiny", "--data", root, "--clean"]) == 0
    assert not os.path.exists(folder) and config.data.flow_cache_folder() == ""
    explicit = config_lib.load("tiny", overrides=[f"data.root={root}", f"data.flow_cache_dir={tmp_path / 'c'}"])
    assert explicit.data.flow_cache_folder() == str(tmp_path / "c")  # named: used (and created) as it is


@pytest.mark.tensorflow
def test_one_default_per_setting():
    """Module defaults that the config also sets are gone: the pool's clips per call and the cache bound."""
    import inspect

    from twostream.data.distributed.actors import CacheSettings, DecoderPool
    from twostream.trainer.engine.schedule import WarmupDecay

    assert inspect.signature(DecoderPool).parameters["clips_per_call"].default is inspect.Parameter.empty
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(CacheSettings))
    assert inspect.signature(WarmupDecay).parameters["kind"].default is inspect.Parameter.empty


def test_reading_a_config_imports_no_heavy_library():
    """`twostream config` and every preflight stay fast: the command line, the config and its checks import no
    TensorFlow, Keras, Ray, Horovod, OpenCV or PyAV (the accepted values live in plain modules:
    data/decode/clip_spec.py, models/spec.py, models/application_table.py)."""
    import subprocess
    import sys

    code = (
        "import sys, twostream.launch.cli, twostream.trainer.config as c; c.load('footage'); c.load('demo'); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'ray', 'horovod', 'cv2', 'av') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.tensorflow
def test_the_plain_constants_match_what_the_registry_builds():
    from twostream.models import applications, backbones, registry, spec
    from twostream.trainer.engine import schedule

    assert spec.model_names() == tuple(sorted(registry.MODELS))
    assert all(
        (registry.MODELS[n].keywords["backbone"], registry.MODELS[n].keywords["streams"])
        == (spec.backbone_of(n), spec.streams_of(n))
        for n in registry.MODELS
    )
    assert set(spec.FROM_SCRATCH) == set(backbones.BACKBONES)
    assert spec.APPLICATIONS is applications.APPLICATIONS and spec.FREEZE_BN is applications.FREEZE_BN
    assert config_lib.SCHEDULES is schedule.SCHEDULES
