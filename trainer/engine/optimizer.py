"""The optimizer, its learning-rate schedule and the step options, as train (the config's loop settings) asks."""

from __future__ import annotations

import keras

from twostream.trainer import config as config_lib
from twostream.trainer.engine.schedule import WarmupDecay
from twostream.trainer.engine.step import StepOptions


def make_optimizer(
    train: config_lib.TrainConfig, learning_rate, loss_scale: bool = False
) -> keras.optimizers.Optimizer:
    """train.optimizer (the config accepts adamw | sgd); with loss_scale (a model computing in float16) wrapped in a
    dynamic LossScaleOptimizer, whose scale (2^15 to start) halves on a step with Inf/NaN gradients, which it
    skips, and doubles after 2000 good steps. The model's variables stay float32 (the master weights)."""
    if train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=train.momentum, weight_decay=train.weight_decay)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def learning_rate_schedule(train: config_lib.TrainConfig, peak_lr: float, steps_per_epoch: int) -> WarmupDecay:
    return WarmupDecay(
        peak_lr,
        total_steps=train.epochs * steps_per_epoch,
        warmup_steps=round(train.warmup_epochs * steps_per_epoch),
        kind=train.schedule,
        step_every=train.step_decay_epochs * steps_per_epoch,
        step_factor=train.step_decay_factor,
    )


def step_options(train: config_lib.TrainConfig) -> StepOptions:
    return StepOptions(
        accumulate_steps=train.accumulate_steps,
        clip_grad_norm=train.clip_grad_norm,
        label_smoothing=train.label_smoothing,
        skip_nonfinite=train.on_nonfinite == "skip",
        fp16_allreduce=train.fp16_allreduce,
        eager=train.eager,
    )
