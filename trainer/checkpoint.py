"""Checkpoints in the workdir: rank 0 saves and restores, then every rank takes rank 0's state.

WORKDIR/checkpoints holds the latest few (rotated); WORKDIR/best holds the one the loop selected as best
(never rotated away). Each checkpoint stores the model, the optimizer, the global step, dropout's random
state and the loop's own state (a JSON string: the epoch's running totals, the best so far, and the epoch
record written right after an epoch-end save, so that a stop between the two never loses it).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import tensorflow as tf

from twostream.trainer import dist
from twostream.trainer.config import ConfigError

log = logging.getLogger(__name__)

LATEST, BEST = "checkpoints", "best"   # folders under the workdir


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
        raise ConfigError(f"workdir {workdir!r}: {problem or 'rank 0 cannot write it'}; "
                                     "choose another --workdir or free space")


class Checkpoints:
    """Model, optimizer, global step and loop state under WORKDIR/checkpoints and WORKDIR/best."""

    def __init__(self, workdir: str, model, optimizer, keep: int = 3):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.loop_state = tf.Variable("", dtype=tf.string, trainable=False, name="loop_state")   # JSON
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
        elsewhere). Elastic runs use this alone: Horovod's first sync then broadcasts the state."""
        manager = self.best if best else self.manager
        if manager is not None and manager.latest_checkpoint:
            manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
            log.info("restored %s (step %d)", manager.latest_checkpoint, int(self.step.numpy()))
        return int(self.step.numpy())

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
        if self.manager is not None:
            self.manager.save(checkpoint_number=step)

    def save_best(self, step: int, state: dict | None = None) -> None:
        """Saves the current model as the best one, replacing the previous best."""
        self.step.assign(step)
        self.loop_state.assign(json.dumps(state or {}))
        if self.best is not None:
            self.best.save(checkpoint_number=step)
