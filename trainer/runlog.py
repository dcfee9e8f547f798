"""Rank 0's run records: metrics.jsonl (one JSON object per line), TensorBoard scalars and sample images."""
from __future__ import annotations

import json
import os
import time

import tensorflow as tf


class RunLog:
    """Writes under WORKDIR when `enabled` (rank 0); on every other rank each call does nothing."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        if enabled:
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            self._tensorboard = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self._tensorboard.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def images(self, step: int, images: dict, max_outputs: int = 3) -> None:
        """Writes each uint8 (N, H, W, 3) array of `images` {name: array} as TensorBoard images (the first
        max_outputs of each)."""
        if not self.enabled:
            return
        with self._tensorboard.as_default(step=step):
            for name, value in images.items():
                tf.summary.image(name, value, max_outputs=max_outputs)

    def record(self, kind: str, **fields) -> None:
        """Appends {"kind": ..., "time": unix seconds, **fields} to metrics.jsonl."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()
