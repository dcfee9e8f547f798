"""The two-stream network: an RGB stream and an optical-flow stream fused into one prediction."""
from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from twostream.models.backbones import c3d_small
from twostream.models.layers import UInt8ToUnit

FUSIONS = ("concat", "late")


@dataclass(frozen=True)
class ModelSpec:
    name: str = "two_stream_c3d"   # a key of twostream.models.registry.MODELS
    width: int = 16                # channels of the first backbone stage
    depth: int = 3                 # backbone stages
    fusion: str = "concat"         # concat: features joined, one head | late: per-stream logits averaged
    dropout: float = 0.0           # before each classifier head


def clip_inputs(rgb_shape, flow_shape):
    return {"rgb": keras.Input(rgb_shape, dtype="uint8", name="rgb"),
            "flow": keras.Input(flow_shape, dtype="uint8", name="flow")}


def _head(features, num_classes: int, dropout: float, name: str):
    if dropout:
        features = layers.Dropout(dropout, name=f"{name}_dropout")(features)
    return layers.Dense(num_classes, name=f"{name}_logits", dtype="float32")(features)


def build_two_stream(spec: ModelSpec, num_classes: int, rgb_shape, flow_shape, streams=("rgb", "flow")):
    """Builds a functional model on inputs {"rgb": uint8, "flow": uint8} returning float32 logits.

    `streams` selects the RGB-only / flow-only ablations; both inputs are always accepted so that every
    variant trains and serves through the same pipeline.
    """
    if spec.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {spec.fusion!r}; choose one of {FUSIONS}")
    inputs = clip_inputs(rgb_shape, flow_shape)
    features = {s: c3d_small(UInt8ToUnit(name=f"{s}_scale")(inputs[s]), spec.width, spec.depth, name=s)
                for s in streams}
    if len(streams) == 1:
        logits = _head(features[streams[0]], num_classes, spec.dropout, streams[0])
    elif spec.fusion == "concat":
        joined = layers.Concatenate(name="fused_features")([features[s] for s in streams])
        logits = _head(joined, num_classes, spec.dropout, "fused")
    else:
        logits = layers.Average(name="fused_logits")(
            [_head(features[s], num_classes, spec.dropout, s) for s in streams])
    return keras.Model(inputs, logits, name=spec.name)
