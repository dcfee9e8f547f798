"""The task's update and evaluation steps: forward, loss, gradients averaged over ranks, optimizer update."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import keras
import tensorflow as tf

from twostream.trainer import dist


@dataclass(frozen=True)
class StepOptions:
    accumulate_steps: int = 1  # micro-batches per rank whose gradients are summed before one allreduce
    clip_grad_norm: float = 0.0  # clip the averaged gradients to this global norm (0: off)
    label_smoothing: float = 0.0
    skip_nonfinite: bool = False  # skip the update (on every rank) instead of stopping on a NaN/Inf loss
    fp16_allreduce: bool = False  # compress gradients to float16 for the allreduce
    eager: bool = False  # run eagerly (debugging) instead of as a tf.function


def weighted_cross_entropy(labels, logits, weights, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy over the examples with weight 1 (padding has weight 0)."""
    if label_smoothing:
        targets = tf.one_hot(labels, tf.shape(logits)[-1])
        per_example = keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=label_smoothing
        )
    else:
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return tf.reduce_sum(per_example * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def _split(tree, parts: int):
    """Splits every tensor of a (nested) batch into `parts` equal micro-batches along axis 0."""
    flat = [tf.split(t, parts) for t in tf.nest.flatten(tree)]
    return [tf.nest.pack_sequence_as(tree, [f[i] for f in flat]) for i in range(parts)]


def make_train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, options: StepOptions = StepOptions(), loss=None
):
    """Returns step(inputs, labels, weights=None) -> loss averaged over all ranks (the same value on every rank).

    `loss(labels, outputs, weights)` is the mean loss over the examples of weight 1 (default: softmax
    cross-entropy on logits with options.label_smoothing); weights=None weighs every example 1.

    The loss travels in the same fused allreduce as the gradients, so every rank sees the same loss and
    a non-finite one stops (or skips) on all ranks together, at no cost of an extra collective. The step
    returns NaN also when the loss is finite but an averaged gradient is not (checked on the averaged
    gradients, which are identical on every rank, so the ranks still agree).
    With accumulate_steps = k the local batch is processed as k micro-batches (k x less activation
    memory) whose gradients are averaged locally before the one allreduce of the step.
    Loss scaling (mixed float16): each micro-loss is multiplied by optimizer.scale_loss before the gradients
    (float16's small range would flush them to zero otherwise); they are allreduced still scaled, so every
    rank holds the same scaled gradients and its keras.optimizers.LossScaleOptimizer makes the same
    decision (unscale and apply, or skip the step and halve the scale on Inf/NaN). Any other optimizer's
    scale_loss returns the loss unchanged.
    """
    variables = model.trainable_variables
    k = options.accumulate_steps
    loss_scaling = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)  # it skips Inf/NaN steps itself
    if loss is None:
        loss = functools.partial(weighted_cross_entropy, label_smoothing=options.label_smoothing)

    def local_gradients(inputs, labels, weights):
        gradients, total = [tf.zeros_like(v) for v in variables], 0.0
        for micro in _split((inputs, labels, weights), k) if k > 1 else [(inputs, labels, weights)]:
            with tf.GradientTape() as tape:
                logits = model(micro[0], training=True)
                micro_loss = tf.cast(loss(micro[1], logits, micro[2]), tf.float32) / k
                scaled_loss = optimizer.scale_loss(micro_loss)  # x the loss scale; apply_gradients divides
            gradients = [g + m for g, m in zip(gradients, tape.gradient(scaled_loss, variables))]
            total += micro_loss
        return gradients, total

    def apply(gradients):
        if options.clip_grad_norm:  # the gradients are still scaled: scale the bound with them
            bound = options.clip_grad_norm * optimizer.scale_loss(tf.constant(1.0))
            gradients, _ = tf.clip_by_global_norm(gradients, bound)
        optimizer.apply_gradients(zip(gradients, variables))

    def step(inputs, labels, weights=None):
        if weights is None:
            weights = tf.ones(tf.shape(labels)[:1], tf.float32)
        gradients, mean_loss = local_gradients(inputs, labels, weights)
        *gradients, mean_loss = dist.average(gradients + [mean_loss], fp16_compression=options.fp16_allreduce)
        if not loss_scaling:  # a NaN can hide in the gradients alone (e.g. oneDNN's fused Dense+ReLU on a NaN input)
            mean_loss = tf.where(_all_finite(gradients), mean_loss, tf.constant(float("nan")))
        if options.skip_nonfinite:
            tf.cond(
                tf.math.is_finite(mean_loss), lambda: apply(gradients) or tf.constant(True), lambda: tf.constant(False)
            )
        else:
            apply(gradients)
        return mean_loss

    return step if options.eager else tf.function(step)


def check_accumulation(labels, k: int) -> None:
    """The k micro-batches must split this rank's batch (of these labels) evenly; the loop checks its first batch."""
    batch = len(labels)
    if batch % k:
        from twostream.trainer.config import ConfigError  # here: step.py is used without the config too

        raise ConfigError(
            f"train.accumulate_steps={k} must divide the per-rank batch ({batch} = train.global_batch / processes)"
        )


def _all_finite(tensors) -> tf.Tensor:
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


def make_eval_step(model: keras.Model, *, eager: bool = False):
    """Returns step(inputs, labels) -> per-example (cross-entropy, class probabilities) of this rank's batch;
    trainer/video/evaluate.py drops the padding and gathers them over ranks."""

    def step(inputs, labels):
        logits = tf.cast(model(inputs, training=False), tf.float32)  # float32 also under mixed precision
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return losses, tf.nn.softmax(logits)

    return step if eager else tf.function(step)


class StepTotals:
    """Running totals of the steps since the host last read them, kept on the device (no host sync per step):
    the sum and count of finite losses, the non-finite ones, and the first non-finite one (its position
    in the window and value). Identical on every rank, since every step's loss is averaged over ranks."""

    def __init__(self):
        self.loss_sum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self.finite = tf.Variable(0, trainable=False, dtype=tf.int64)
        self.nonfinite = tf.Variable(0, trainable=False, dtype=tf.int64)
        self.first_nonfinite = tf.Variable(-1, trainable=False, dtype=tf.int64)  # -1: none in this window
        self.first_nonfinite_value = tf.Variable(0.0, trainable=False, dtype=tf.float32)

    def add(self, loss) -> None:
        finite = tf.math.is_finite(loss)
        first = tf.logical_and(self.first_nonfinite < 0, tf.logical_not(finite))
        self.first_nonfinite.assign(tf.where(first, self.finite + self.nonfinite, self.first_nonfinite))
        self.first_nonfinite_value.assign(tf.where(first, loss, self.first_nonfinite_value))
        self.loss_sum.assign_add(tf.where(finite, loss, 0.0))
        self.finite.assign_add(tf.cast(finite, tf.int64))
        self.nonfinite.assign_add(tf.cast(tf.logical_not(finite), tf.int64))

    def read_and_reset(self) -> dict:
        """The window's totals as Python numbers (the host sync), then zeros for the next window."""
        values = {
            "loss_sum": float(self.loss_sum.numpy()),
            "finite": int(self.finite.numpy()),
            "nonfinite": int(self.nonfinite.numpy()),
            "first_nonfinite": int(self.first_nonfinite.numpy()),
            "first_nonfinite_value": float(self.first_nonfinite_value.numpy()),
        }
        for variable, start in (
            (self.loss_sum, 0.0),
            (self.finite, 0),
            (self.nonfinite, 0),
            (self.first_nonfinite, -1),
        ):
            variable.assign(start)
        return values


def make_steps_call(train_step, totals: StepTotals, *, eager: bool = False):
    """Returns run(batches): train_step on each batch of the sequence, in order, in one tf.function call,
    each loss added to `totals` on the device. A new sequence length traces once more."""

    def run(batches):
        for batch in batches:
            totals.add(tf.cast(train_step(*batch), tf.float32))

    return run if eager else tf.function(run)
