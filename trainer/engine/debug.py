"""Debug-mode helpers for the loop: deterministic TensorFlow ops, and the data->model boundary described."""

from __future__ import annotations

import keras
import tensorflow as tf


def enable_determinism() -> None:
    """Same seed, same result: deterministic kernels (slower; errors on ops that have no deterministic form)."""
    tf.config.experimental.enable_op_determinism()


def describe_batch(batch, model: keras.Model) -> str:
    """One line per tensor crossing from tf.data into the model, then what the model expects and returns."""
    inputs, labels, weights = batch
    lines = ["debug (eager steps, deterministic ops): data -> model boundary, first batch of this rank:"]
    for name, tensor in [
        *(("inputs/" + k, v) for k, v in sorted(inputs.items())),
        ("labels", labels),
        ("weights", weights),
    ]:
        lines.append(f"  {name:12s} shape={tuple(tensor.shape)} dtype={tensor.dtype.name}")
    for spec in model.inputs:
        lines.append(f"  model input  {spec.name:12s} shape={tuple(spec.shape)} dtype={spec.dtype}")
    lines.append(f"  model output shape={tuple(model.outputs[0].shape)} dtype={model.outputs[0].dtype}")
    return "\n".join(lines)
