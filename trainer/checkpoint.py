"""Checkpoints in the workdir: rank 0 saves and restores, then every rank takes rank 0's state."""
from __future__ import annotations

import logging
import os

import tensorflow as tf

from twostream.trainer import dist

log = logging.getLogger(__name__)


class Checkpoints:
    """Model, optimizer and global step under WORKDIR/checkpoints, managed by tf.train.CheckpointManager."""

    def __init__(self, workdir: str, model, optimizer, keep: int = 3):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.model, self.optimizer = model, optimizer
        self.directory = os.path.join(workdir, "checkpoints")
        tracked = {"model": model, "step": self.step} | ({"optimizer": optimizer} if optimizer is not None else {})
        # Dropout's random state (Keras SeedGenerator) is not reached through the model: save it explicitly, or a
        # resumed run draws other dropout masks than one never stopped.
        tracked["random_states"] = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        checkpoint = tf.train.Checkpoint(**tracked)
        # Only rank 0 touches the files: other ranks may not share the filesystem.
        self.manager = tf.train.CheckpointManager(checkpoint, self.directory, keep) if dist.is_chief() else None

    def restore_or_initialize(self) -> int:
        """Restores the latest checkpoint on rank 0 (if any), then broadcasts rank 0's model, optimizer and
        step to all ranks, so every rank starts from identical state. Returns the global step."""
        self.restore_on_chief()
        optimizer_variables = list(self.optimizer.variables) if self.optimizer is not None else []
        dist.broadcast_variables(list(self.model.variables) + optimizer_variables + [self.step])
        return int(self.step.numpy())

    def restore_on_chief(self) -> int:
        """Rank 0 restores the latest checkpoint (if any), without a collective; returns the step (0 elsewhere).
        Elastic runs use this alone: Horovod's first sync then broadcasts the state."""
        if self.manager is not None and self.manager.latest_checkpoint:
            self.manager.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
            log.info("restored %s (step %d)", self.manager.latest_checkpoint, int(self.step.numpy()))
        return int(self.step.numpy())

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint if self.manager is not None else None

    def save(self, step: int) -> None:
        self.step.assign(step)
        if self.manager is not None:
            self.manager.save(checkpoint_number=step)
