"""Learning-rate schedules: linear warmup from zero, then constant, cosine or step decay (per optimizer step)."""

from __future__ import annotations

import math

import keras
from keras import ops

from twostream.trainer.config import SCHEDULES  # noqa: F401 (train.schedule's names, kept in the config)


@keras.saving.register_keras_serializable(package="twostream")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """peak * min(1, step / warmup_steps) * decay(step), with decay computed over the post-warmup steps."""

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        *,
        kind: str,
        step_every: int = 1,
        step_factor: float = 0.1,
    ):
        """kind: one of SCHEDULES (train.schedule, checked by the config)."""
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.kind, self.step_every, self.step_factor = kind, max(1, int(step_every)), float(step_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.minimum(1.0, (step + 1.0) / max(1, self.warmup_steps)) if self.warmup_steps else 1.0
        after = ops.maximum(0.0, step - self.warmup_steps)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            decay = 0.5 * (1.0 + ops.cos(math.pi * ops.minimum(1.0, after / span)))
        elif self.kind == "step":
            decay = ops.power(self.step_factor, ops.floor(after / self.step_every))
        else:
            decay = 1.0
        return self.peak * warmup * decay

    def get_config(self) -> dict:
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "kind": self.kind,
            "step_every": self.step_every,
            "step_factor": self.step_factor,
        }
