"""Checkpoints in the workdir: rank 0 saves and restores, then every rank takes rank 0's state.

WORKDIR/checkpoints holds the latest few (rotated); WORKDIR/best holds the one the loop selected as best
(never rotated away). Each checkpoint stores the model, the optimizer, the global step, dropout's random
state and the loop's own state (a JSON string: the epoch's running totals, the best so far, and the epoch
record written right after an epoch-end save, so that a stop between the two never loses it).

A damaged checkpoint (a data or index file truncated or missing) is skipped with a warning for the newest one
that reads back whole; a checkpoint that reads but does not fit the model (another model, width or classes)
is refused with a ConfigError. A write that fails (a full disk) removes its partial files, keeps the last good
checkpoint and raises CheckpointWriteError naming the folder and the space needed. A Ctrl-C during a write
takes effect after it (preemption.interrupts_deferred).
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from twostream.trainer import dist
from twostream.trainer.config import ConfigError
from twostream.trainer.engine.errors import RunError
from twostream.trainer.runtime.preemption import interrupts_deferred

log = logging.getLogger(__name__)

LATEST, BEST = "checkpoints", "best"  # folders under the workdir


def check_workdir(workdir: str, min_free_mb: int = 100, collective: bool = True) -> None:
    """Fails on every rank, before any training, when rank 0 cannot write to `workdir` or it is nearly full
    (collective=False: fails on rank 0 alone, without a collective)."""
    problem = ""
    if dist.is_chief():
        try:
            os.makedirs(workdir, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
                pass
            free_mb = shutil.disk_usage(workdir).free // (1 << 20)
            if free_mb < min_free_mb:
                problem = f"only {free_mb} MiB free there (checkpoints need at least {min_free_mb} MiB)"
        except OSError as error:
            problem = f"it is not writable ({error.strerror or error})"
    fine = dist.all_agree(not problem) if collective else not problem
    if not fine:
        raise ConfigError(
            f"workdir {workdir!r}: {problem or 'rank 0 cannot write it'}; choose another --workdir or free space"
        )


class CheckpointWriteError(RunError):
    """A checkpoint could not be written (e.g. the disk is full); the last good one is kept."""


def damage(path: str) -> str:
    """Why checkpoint `path` (a prefix, e.g. .../ckpt-10) cannot be read back whole; "" when every tensor reads."""
    try:
        reader = tf.train.load_checkpoint(path)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, IndexError, ValueError, OSError) as error:  # IndexError: a truncated data file
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ""


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 // 10 else f"{count / 2**10:.0f} KiB"


def files_of(path: str) -> list[str]:
    """The files of checkpoint `path` (its index and data shards)."""
    return glob.glob(glob.escape(path) + ".*")


class Checkpoints:
    """Model, optimizer, global step and loop state under WORKDIR/checkpoints and WORKDIR/best."""

    def __init__(self, workdir: str, model, optimizer, keep: int = 3):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.loop_state = tf.Variable("", dtype=tf.string, trainable=False, name="loop_state")  # JSON
        self.model, self.optimizer = model, optimizer
        self.directory = os.path.join(workdir, LATEST)
        tracked = {"model": model, "step": self.step, "loop_state": self.loop_state}
        tracked |= {"optimizer": optimizer} if optimizer is not None else {}
        # Dropout's random state (Keras SeedGenerator) is not reached through the model: save it explicitly, or a
        # resumed run draws other dropout masks than one never stopped.
        tracked["random_states"] = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        checkpoint = tf.train.Checkpoint(**tracked)
        # Only rank 0 touches the files: other ranks may not share the filesystem.
        chief = dist.is_chief()
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, keep) if chief else None
        self.best = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, BEST), 1) if chief else None

    def restore_or_initialize(self, best: bool = False) -> int:
        """Restores the latest checkpoint (best=True: the best one, else the latest) on rank 0, if any, then
        broadcasts rank 0's model, optimizer, step and loop state to all ranks, so every rank starts from
        identical state. Returns the global step."""
        self.restore_on_chief(best)
        optimizer_variables = list(self.optimizer.variables) if self.optimizer is not None else []
        dist.broadcast_variables(list(self.model.variables) + optimizer_variables + [self.step])
        self.loop_state.assign(dist.broadcast_object(self.loop_state.numpy()))
        return int(self.step.numpy())

    def restore_on_chief(self, best: bool = False) -> int:
        """Rank 0 restores the latest (or best) checkpoint, if any, without a collective; returns the step (0
        elsewhere). Damaged checkpoints are skipped for the newest whole one (a warning each); a ConfigError
        when every one is damaged or the checkpoint does not fit the model. Elastic runs use this alone:
        Horovod's first sync then broadcasts the state."""
        manager = self.best if best else self.manager
        if manager is None or not manager.latest_checkpoint:
            return int(self.step.numpy())
        path = self.newest_whole(manager)
        try:
            manager.checkpoint.restore(path).expect_partial()
        except ValueError as error:  # Keras/TF: a variable's shape differs from the saved one
            raise ConfigError(
                f"checkpoint {path} does not fit this model ({str(error).strip().splitlines()[0]}): "
                "it was trained with another model, width, clip size or class count; train with the "
                "settings in the workdir's config.yaml, or pass a new --workdir"
            ) from None
        log.info("restored %s (step %d)", path, int(self.step.numpy()))
        return int(self.step.numpy())

    @staticmethod
    def newest_whole(manager) -> str:
        """The newest of `manager`'s checkpoints that reads back whole, warning about each damaged one skipped."""
        candidates = list(dict.fromkeys([manager.latest_checkpoint, *reversed(manager.checkpoints)]))
        problems: list[str] = []
        for path in candidates:
            if not (problem := damage(path)):
                if problems:  # the steps after it are trained again, and their epochs logged again
                    log.warning(
                        "skipped damaged checkpoint(s) for %s, whose later steps are trained again: %s",
                        path,
                        "; ".join(problems),
                    )
                return path
            problems.append(f"{path}: {problem}")
        raise ConfigError(
            f"every checkpoint in {manager.directory} is damaged ({'; '.join(problems)}); move the "
            "folder away to train from scratch, or pass a new --workdir"
        )

    @staticmethod
    def latest_on_disk(workdir: str) -> str | None:
        """WORKDIR's latest checkpoint as its state file names it (None for none), without building a model or
        reading it (it may be damaged: restoring skips it then)."""
        state = tf.train.get_checkpoint_state(os.path.join(workdir, LATEST))
        return os.path.join(workdir, LATEST, os.path.basename(state.model_checkpoint_path)) if state else None

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint if self.manager is not None else None

    @property
    def latest_best(self) -> str | None:
        return self.best.latest_checkpoint if self.best is not None else None

    @property
    def state(self) -> dict:
        """The loop state saved with the restored checkpoint ({} for none, or a checkpoint from before it)."""
        text = self.loop_state.numpy().decode()
        return json.loads(text) if text else {}

    def save(self, step: int, state: dict | None = None) -> None:
        self.step.assign(step)
        self.loop_state.assign(json.dumps(state or {}))
        self._write(self.manager, step)

    def save_best(self, step: int, state: dict | None = None) -> None:
        """Saves the current model as the best one, replacing the previous best."""
        self.step.assign(step)
        self.loop_state.assign(json.dumps(state or {}))
        self._write(self.best, step)

    def _write(self, manager, step: int) -> None:
        """manager.save at `step` (rank 0); a failed write leaves no partial files and the older checkpoints."""
        if manager is None:
            return
        last = manager.latest_checkpoint
        try:
            with interrupts_deferred():
                manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as error:
            path = os.path.join(manager.directory, f"ckpt-{step}")
            for leftover in files_of(path):
                os.remove(leftover)
            shutil.rmtree(path + "_temp", ignore_errors=True)  # TF writes the shards there first
            raise CheckpointWriteError(self._write_problem(manager.directory, path, last, error)) from None

    def _write_problem(self, directory: str, path: str, last: str | None, error: Exception) -> str:
        """One line: what failed, the space free and needed, what is kept, what to do."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        full = (
            isinstance(error, tf.errors.ResourceExhaustedError)
            or getattr(error, "errno", None) == errno.ENOSPC
            or "No space left" in text
        )
        needed = sum(os.path.getsize(f) for f in files_of(last)) if last else self.variable_bytes()
        free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
        kept = f"the last good checkpoint {last} is kept" if last else "no earlier checkpoint exists"
        return (
            f"checkpoint {path} could not be written: {'the disk is full' if full else text} "
            f"({_size(free)} free in {directory}, a checkpoint needs about {_size(needed)}); "
            f"{kept}; free space (or pass a --workdir on another disk) and run the same command to resume"
        )

    def variable_bytes(self) -> int:
        """Bytes of the model's and optimizer's variables: about a checkpoint's size."""
        variables = list(self.model.variables) + (list(self.optimizer.variables) if self.optimizer is not None else [])
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
