"""Model cost per clip: parameter count and FLOPs, counted analytically from the conv and dense layers."""

from __future__ import annotations

import math

import keras
import numpy as np

COUNTED = (
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Dense,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def _macs(layer, output) -> int:
    """Multiply-accumulates of one conv/dense layer producing `output` (every output element, all frames)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # one window per output channel, no channel sum
        return int(np.prod(output.shape)) * math.prod(layer.kernel.shape[:2])
    if isinstance(layer, keras.layers.SeparableConv2D):  # depthwise window, then a 1x1 across its channels
        depthwise = layer.depthwise_kernel.shape  # (kh, kw, in_channels, multiplier)
        positions, middle = int(np.prod(output.shape[:-1])), depthwise[2] * depthwise[3]
        return positions * middle * (depthwise[0] * depthwise[1] + output.shape[-1])
    kernel = layer.kernel.shape  # (*window, in_channels / groups, out_channels) for conv and dense
    return int(np.prod(output.shape)) * math.prod(kernel[:-1])


def _call_output(layer):
    """The output of `layer`'s one call in the enclosing graph (a nested model's .output is its own inner one)."""
    return layer._inbound_nodes[0].output_tensors[0]


def _multiply_adds(model: keras.Model, batch: int) -> int:
    """Multiply-adds of one forward pass on `batch` zero examples, nested models (a stream's backbone) included."""
    counted = [layer for layer in model.layers if isinstance(layer, COUNTED + (keras.Model,))]
    probe = keras.Model(model.inputs, [_call_output(layer) for layer in counted])
    zeros = [np.zeros((batch, *i.shape[1:]), dtype=i.dtype) for i in model.inputs]
    outputs = keras.tree.flatten(probe(zeros, training=False))  # a one-output model returns a bare tensor
    return sum(
        _multiply_adds(layer, out.shape[0]) if isinstance(layer, keras.Model) else _macs(layer, out)
        for layer, out in zip(counted, outputs)
    )


def flops_per_clip(model: keras.Model) -> int:
    """2 x the multiply-accumulates of every Conv2D/3D, depthwise and separable conv and Dense layer, one clip.

    Counted from the real output shapes of one forward pass on a zero clip, so frames folded into the batch
    by 2D encoders are counted too (inside nested backbones as well). Normalisation, activations, pooling and
    additions are left out: they are a few percent of the total for these models (the usual convention, as
    in the C3D and R(2+1)D papers).
    """
    return 2 * _multiply_adds(model, 1)


def parameter_count(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.weights))
