"""A scoped Keras dtype policy: layers built inside compute in float16/bfloat16, the global policy is restored after."""
from __future__ import annotations

import contextlib

import keras


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
