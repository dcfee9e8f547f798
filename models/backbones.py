"""Video backbones: float clip (B, T, H, W, C) -> final feature map (B, T', H', W', F), before global pooling.

All use GroupNormalization, not BatchNorm: each clip's forward pass is then independent of the batch it is
in, so a run split over N ranks computes exactly what one process computes on the same global batch.
"""

from __future__ import annotations

from keras import layers

from twostream.models.layers import FoldTime, TemporalShift, UnfoldTime
from twostream.models.precision import pool3d_dtype


def _norm_relu(x, name: str, relu: bool = True):
    x = layers.GroupNormalization(groups=min(8, x.shape[-1]), name=f"{name}_norm")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _time_stride(frames: int) -> int:
    return 2 if frames >= 4 else 1  # halve time only while at least 2 steps remain


# ---------------------------------------------------------------------------------------------- C3D-like
def c3d_small(x, width: int = 16, depth: int = 3, name: str = "c3d"):
    """`depth` stages of 3x3x3 conv + GroupNorm + ReLU, width doubling per stage, max-pooling between."""
    for stage in range(depth):
        strides = (1, 2, 2) if stage == 0 else (1, 1, 1)  # halve space early: frames are small, motion is local
        x = layers.Conv3D(
            width * 2**stage, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv{stage}"
        )(x)
        x = _norm_relu(x, f"{name}_{stage}")
        if stage < depth - 1:
            x = layers.MaxPooling3D((_time_stride(x.shape[1]), 2, 2), name=f"{name}_pool{stage}", dtype=pool3d_dtype())(
                x
            )
    return x


# ---------------------------------------------------------------------------------------------- R(2+1)D
def _conv2plus1d(x, channels: int, strides, name: str):
    """A 3x3x3 conv factorised into 1x3x3 (space) then 3x1x1 (time), with a non-linearity in between.

    The middle width is `channels` rather than Tran et al.'s parameter-matching formula: simpler, and the
    extra ReLU is what the factorisation buys, not the exact parameter count.
    """
    t_stride, s_stride = strides[0], strides[1]
    x = layers.Conv3D(
        channels, (1, 3, 3), strides=(1, s_stride, s_stride), padding="same", use_bias=False, name=f"{name}_space"
    )(x)
    x = _norm_relu(x, f"{name}_mid")
    return layers.Conv3D(
        channels, (3, 1, 1), strides=(t_stride, 1, 1), padding="same", use_bias=False, name=f"{name}_time"
    )(x)


def _residual_block_3d(x, channels: int, strides, name: str):
    shortcut = x
    if strides != (1, 1, 1) or x.shape[-1] != channels:
        shortcut = layers.Conv3D(channels, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _norm_relu(shortcut, f"{name}_proj", relu=False)
    y = _norm_relu(_conv2plus1d(x, channels, strides, f"{name}_a"), f"{name}_a")
    y = _norm_relu(_conv2plus1d(y, channels, (1, 1, 1), f"{name}_b"), f"{name}_b", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def r2plus1d(x, width: int = 16, depth: int = 3, name: str = "r2plus1d"):
    """A (2+1)D stem halving space, then `depth` residual stages; stages after the first halve T, H, W."""
    x = _norm_relu(_conv2plus1d(x, width, (1, 2, 2), f"{name}_stem"), f"{name}_stem")
    for stage in range(depth):
        strides = (1, 1, 1) if stage == 0 else (_time_stride(x.shape[1]), 2, 2)
        x = _residual_block_3d(x, width * 2**stage, strides, f"{name}_block{stage}")
    return x


# ---------------------------------------------------------------------------------------------- TSN-style 2D
def _residual_block_2d(x, channels: int, stride: int, name: str, frames: int = 1, shift: float = 0.0):
    """shift > 0: the residual branch reads the frames temporally shifted (TSM), the shortcut the frame itself."""
    shortcut = x
    if stride != 1 or x.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = _norm_relu(shortcut, f"{name}_proj", relu=False)
    if shift > 0:
        x = TemporalShift(frames, shift, name=f"{name}_shift")(x)
    y = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv_a")(x)
    y = _norm_relu(y, f"{name}_a")
    y = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"{name}_conv_b")(y)
    y = _norm_relu(y, f"{name}_b", relu=False)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def tsn_resnet2d(x, width: int = 16, depth: int = 3, name: str = "tsn", shift: float = 0.0):
    """A 2D ResNet applied to every frame (segment) on its own; the frames' maps come back as (B, T, h, w, F).
    shift > 0: each residual block shifts that share of channels by +-1 frame first (TSM).

    Averaging these maps over time and space (the model's global pooling) before a linear head equals
    averaging per-segment class scores: TSN's segmental consensus.
    """
    frames = x.shape[1]
    x = FoldTime(name=f"{name}_fold")(x)
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name=f"{name}_stem_conv")(x)
    x = _norm_relu(x, f"{name}_stem")
    for stage in range(depth):
        x = _residual_block_2d(x, width * 2**stage, 1 if stage == 0 else 2, f"{name}_block{stage}", frames, shift)
    return UnfoldTime(frames, name=f"{name}_unfold")(x)


BACKBONES = {"c3d": c3d_small, "r2plus1d": r2plus1d, "tsn": tsn_resnet2d}
