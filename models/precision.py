"""Precision: a scoped Keras dtype policy (layers built inside compute in float16/bfloat16), and where a low
precision needs care (float16 loss scaling, bfloat16 gradients on a CPU)."""

from __future__ import annotations

import contextlib
import os

import keras
import tensorflow as tf


@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets Keras' global dtype policy to `name` while building, then puts the previous one back.

    Layers take the policy in force when they are created; variables stay float32 under the mixed policies,
    so checkpoints are interchangeable between precisions.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def pool3d_dtype():
    """dtype for 3D pooling layers: float32 under mixed_float16, else the policy in force (None).

    TensorFlow has no float16 CPU kernel for MaxPool3D/AvgPool3D; computing these cheap layers in float32
    keeps a float16 model trainable on CPU and its export servable on CPU, even if trained on a GPU.
    """
    return "float32" if keras.config.dtype_policy().compute_dtype == "float16" else None


def computes_in_float16(layer) -> bool:
    """True when `layer` (a model) or any layer inside it computes in float16, whose narrow range needs
    loss scaling to keep small gradients from flushing to zero (bfloat16 has float32's range: it does not)."""
    return layer.compute_dtype == "float16" or any(computes_in_float16(inner) for inner in getattr(layer, "layers", []))


# TensorFlow 2.21's oneDNN kernel for the bfloat16 3D-convolution filter gradient returns NaN/Inf now and then on
# this kind of CPU (avx512_bf16), for the same weights and clips (tests/test_models.py); TensorFlow's own kernel
# does not. A NaN gradient stops the run, so a CPU run is told before it starts.
BFLOAT16_ON_CPU = (
    "model.precision=mixed_bfloat16 without a GPU: TensorFlow's oneDNN bfloat16 gradient of 3D "
    "convolutions is intermittently NaN on CPUs, which stops the run; train in float32 on a CPU, or "
    "set TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own kernels)"
)


def bfloat16_on_onednn_cpu(precision: str) -> bool:
    """True when `precision` would train bfloat16 3D convolutions through oneDNN's CPU kernels (no GPU, oneDNN on)."""
    return (
        precision == "mixed_bfloat16"
        and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
        and not tf.config.list_physical_devices("GPU")
    )
