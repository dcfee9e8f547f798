"""Config: presets load, overrides are typed, wrong keys and types fail with the accepted alternatives."""
import pytest

from twostream.trainer import config as config_lib
from twostream.trainer.config import ConfigError


def test_presets_load_and_overrides_apply():
    assert {"demo", "tiny"} <= set(config_lib.preset_names())
    config = config_lib.load("tiny", overrides=["train.epochs=3", "train.lr=1", "data.root=/x", "clip.flow_method=farneback"])
    assert config.train.epochs == 3 and config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.data.root == "/x" and config.clip.flow_method == "farneback"
    assert config.clip.size == 32   # from the preset


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  global_batch: 32\n")
    config = config_lib.load("demo", str(path), ["train.epochs=2"])
    assert (config.train.epochs, config.train.global_batch) == (2, 32)


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", "train accepts: .*epochs"),
    ("trian.epochs=3", "unknown config section"),
    ("train.epochs=three", "train.epochs must be int"),
    ("train.eager=1", "train.eager must be bool"),
    ("epochs", "section.key=value"),
])
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
