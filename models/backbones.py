"""Video backbones: clip tensor (B, T, H, W, C) -> feature vector (B, F)."""
from __future__ import annotations

import keras
from keras import layers


def c3d_small(inputs, width: int = 16, depth: int = 3, name: str = "c3d"):
    """A small C3D-like 3D CNN: `depth` stages of 3x3x3 conv + GroupNorm + ReLU, width doubling per stage.

    GroupNorm (not BatchNorm) keeps each clip's forward pass independent of the batch it is in, so a run
    split over N ranks computes exactly what one process computes on the same global batch.
    """
    x = inputs
    for stage in range(depth):
        channels = width * 2 ** stage
        strides = (1, 2, 2) if stage == 0 else (1, 1, 1)   # halve space early: frames are small, motion is local
        x = layers.Conv3D(channels, 3, strides=strides, padding="same", use_bias=False,
                          name=f"{name}_conv{stage}")(x)
        x = layers.GroupNormalization(groups=min(8, channels), name=f"{name}_norm{stage}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{stage}")(x)
        if stage < depth - 1:
            pool = (2, 2, 2) if x.shape[1] >= 4 else (1, 2, 2)   # keep at least 2 time steps
            x = layers.MaxPooling3D(pool, name=f"{name}_pool{stage}")(x)
    return layers.GlobalAveragePooling3D(name=f"{name}_gap")(x)
