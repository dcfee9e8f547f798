"""An unwritable or full workdir is a clear ConfigError before the first step, not a crash an hour in."""

import subprocess

import keras
import pytest
from conftest import run_cli

from twostream.trainer.config import ConfigError, TrainConfig
from twostream.trainer.engine.loop import fit

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


def _fit(workdir: str) -> None:
    """fit() whose data source fails the test if training ever starts."""

    def batches(epoch, from_step):
        raise AssertionError("training started despite a bad workdir")

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    fit(model, TrainConfig(global_batch=2, epochs=1), workdir, batches, 1)


@pytest.mark.timeout(120)
def test_unwritable_workdir_is_refused_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a path under a file cannot be created, even by root
    with pytest.raises(
        ConfigError,
        match=r"workdir .*a-file/run.*: it is not writable \(Not a directory\); "
        r"choose another --workdir",
    ):
        _fit(str(blocker / "run"))


@pytest.mark.timeout(120)
def test_train_command_names_the_unwritable_workdir_without_a_traceback(tmp_path, tiny_dataset):
    (tmp_path / "a-file").write_text("")
    done = run_cli("train", "--preset", "tiny", "--data", tiny_dataset, "--workdir", str(tmp_path / "a-file" / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "it is not writable (Not a directory)" in done.stderr


@pytest.mark.timeout(120)
def test_full_workdir_is_refused_before_training(tmp_path):
    """A real 1 MiB tmpfs (below the 100 MiB that check_workdir asks for); skipped where mounting needs root."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(ConfigError, match=r"only 1 MiB free there \(checkpoints need at least 100 MiB\)"):
            _fit(str(mount / "run"))
        assert not (mount / "run" / "checkpoints").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
