"""The two-stream network: an RGB stream and an optical-flow stream on one backbone kind, fused into one prediction."""

from __future__ import annotations

import keras
from keras import layers

from twostream.models.applications import APPLICATIONS, application_features
from twostream.models.backbones import BACKBONES, tsn_resnet2d
from twostream.models.layers import Blend, MaxConsensus, StackFrames, UInt8ToUnit
from twostream.models.precision import pool3d_dtype
from twostream.models.spec import CONSENSUS, FUSIONS, PRECISIONS, ModelSpec  # noqa: F401 (re-exported)


def clip_inputs(rgb_shape, flow_shape):
    return {
        "rgb": keras.Input(rgb_shape, dtype="uint8", name="rgb"),
        "flow": keras.Input(flow_shape, dtype="uint8", name="flow"),
    }


def stream_features(clip, stream: str, backbone: str, spec: ModelSpec):
    """uint8 clip -> this stream's final feature map (B, T', H', W', F)."""
    if backbone in APPLICATIONS:
        return application_features(clip, stream, backbone, spec)
    x = UInt8ToUnit(name=f"{stream}_scale")(clip)
    if backbone == "tsn" and stream == "flow" and spec.flow_stack > 1:
        x = StackFrames(spec.flow_stack, name="flow_stack")(x)  # TSN's flow input: L fields as 2L channels
    if backbone == "tsn" and stream == "rgb":
        return tsn_resnet2d(x, spec.width, spec.depth, name=stream, shift=spec.temporal_shift)  # only TSN shifts
    return BACKBONES[backbone](x, spec.width, spec.depth, name=stream)


def _pool(feature_map, name: str, consensus: str = "average"):
    """(B, T, H, W, F) -> (B, F). average: over time and space, i.e. TSN's average consensus (averaging the
    frames' features before a linear head averages their scores); max: see MaxConsensus."""
    if consensus == "max":
        return MaxConsensus(name=f"{name}_max")(feature_map)
    return layers.GlobalAveragePooling3D(name=f"{name}_gap")(feature_map)


def _head(features, num_classes: int, dropout: float, name: str):
    if dropout:
        features = layers.Dropout(dropout, name=f"{name}_dropout")(features)
    return layers.Dense(num_classes, name=f"{name}_logits", dtype="float32")(features)  # float32 under mixed precision


def _conv_fusion(rgb_map, flow_map, name: str = "fusion"):
    """Feichtenhofer et al. 2016: stack both streams' last conv maps, 3x3x3 conv back to one stream's width,
    then 3D max pooling. With TSN's stacked flow the RGB map has more time steps: it is average-pooled to match."""
    if rgb_map.shape[1] != flow_map.shape[1]:
        ratio = rgb_map.shape[1] // flow_map.shape[1]
        rgb_map = layers.AveragePooling3D((ratio, 1, 1), name=f"{name}_match_time", dtype=pool3d_dtype())(rgb_map)
    x = layers.Concatenate(name=f"{name}_stack")([rgb_map, flow_map])
    x = layers.Conv3D(rgb_map.shape[-1], 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.GroupNormalization(groups=min(8, x.shape[-1]), name=f"{name}_norm")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    pool = tuple(min(2, size) for size in x.shape[1:4])  # halve each of T, H, W that is at least 2
    return layers.MaxPooling3D(pool, name=f"{name}_pool", dtype=pool3d_dtype())(x)


def fuse(maps: dict, spec: ModelSpec, num_classes: int):
    """Two streams' feature maps -> float32 logits, by spec.fusion."""
    if spec.fusion == "conv":
        fused = _pool(_conv_fusion(maps["rgb"], maps["flow"]), "fusion", spec.consensus)
        return _head(fused, num_classes, spec.dropout, "fused")
    features = {s: _pool(m, s, spec.consensus) for s, m in maps.items()}
    if spec.fusion == "concat":
        joined = layers.Concatenate(name="fused_features")([features["rgb"], features["flow"]])
        return _head(joined, num_classes, spec.dropout, "fused")
    rgb, flow = (_head(features[s], num_classes, spec.dropout, s) for s in ("rgb", "flow"))
    learned = spec.fusion == "late_learned"
    return Blend(spec.late_weight, learned, name="fused_logits", dtype="float32")([rgb, flow])


def build_two_stream(
    spec: ModelSpec, num_classes: int, rgb_shape, flow_shape, *, backbone: str = "c3d", streams=("rgb", "flow")
):
    """Builds a functional model on inputs {"rgb": uint8, "flow": uint8} returning float32 logits.

    `streams` selects the RGB-only / flow-only ablations; both inputs are always accepted so that every
    variant trains and serves through the same pipeline.
    """
    inputs = clip_inputs(rgb_shape, flow_shape)
    maps = {s: stream_features(inputs[s], s, backbone, spec) for s in streams}
    if len(streams) == 1:
        logits = _head(_pool(maps[streams[0]], streams[0], spec.consensus), num_classes, spec.dropout, streams[0])
    else:
        logits = fuse(maps, spec, num_classes)
    return keras.Model(inputs, logits, name=spec.name)
