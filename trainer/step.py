"""The task's update and evaluation steps: forward, loss, gradients averaged over ranks, optimizer update."""
from __future__ import annotations

import keras
import tensorflow as tf

from twostream.trainer import dist


def weighted_cross_entropy(labels, logits, weights):
    """Mean softmax cross-entropy over the examples with weight 1 (padding has weight 0)."""
    per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return tf.reduce_sum(per_example * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, *, fp16_allreduce: bool = False,
                    eager: bool = False):
    """Returns step(inputs, labels, weights) -> loss averaged over all ranks (the same value on every rank).

    The loss travels in the same fused allreduce as the gradients, so every rank sees the same loss and
    a non-finite one stops all ranks together, at no cost of an extra collective.
    """
    variables = model.trainable_variables

    def step(inputs, labels, weights):
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            loss = weighted_cross_entropy(labels, logits, weights)
        gradients = tape.gradient(loss, variables)
        *gradients, loss = dist.average(gradients + [loss], fp16_compression=fp16_allreduce)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return step if eager else tf.function(step)


def make_eval_step(model: keras.Model, *, eager: bool = False):
    """Returns step(inputs, labels, weights) -> this rank's (loss sum, correct count, weight sum)."""

    def step(inputs, labels, weights):
        logits = model(inputs, training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32)
        return tf.reduce_sum(per_example * weights), tf.reduce_sum(correct * weights), tf.reduce_sum(weights)

    return step if eager else tf.function(step)
