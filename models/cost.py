"""Model cost per clip: parameter count and FLOPs, counted analytically from the conv and dense layers."""
from __future__ import annotations

import math

import keras
import numpy as np

COUNTED = (keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)


def _macs(layer, output) -> int:
    """Multiply-accumulates of one conv/dense layer producing `output` (every output element, all frames)."""
    kernel = layer.kernel.shape           # (*window, in_channels / groups, out_channels) for conv and dense
    return int(np.prod(output.shape)) * math.prod(kernel[:-1])


def flops_per_clip(model: keras.Model) -> int:
    """2 x the multiply-accumulates of every Conv2D, Conv3D and Dense layer for one clip.

    Counted from the real output shapes of one forward pass on a zero clip, so frames folded into the batch
    by 2D encoders are counted too. Normalisation, activations, pooling and additions are left out: they
    are a few percent of the total for these models (the usual convention, as in the C3D and R(2+1)D papers).
    """
    counted = [layer for layer in model.layers if isinstance(layer, COUNTED)]
    probe = keras.Model(model.inputs, [layer.output for layer in counted])
    zeros = {i.name: np.zeros((1, *i.shape[1:]), dtype=i.dtype) for i in model.inputs}
    outputs = probe(zeros, training=False)
    return 2 * sum(_macs(layer, out) for layer, out in zip(counted, outputs))


def parameter_count(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.weights))
