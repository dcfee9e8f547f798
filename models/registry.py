"""The model registry: a plain dict from name to builder; nothing is registered by importing other modules."""
from __future__ import annotations

import functools
import os

from twostream.models.precision import dtype_policy
from twostream.models.two_stream import ModelSpec, build_two_stream

# name -> builder(spec, num_classes, rgb_shape, flow_shape). two_stream_* fuse by spec.fusion; the
# rgb_only_* / flow_only_* ablations ignore it. Backbones: c3d (3D CNN), r2plus1d ((2+1)D ResNet),
# tsn (2D ResNet per frame, averaged over time; the flow stream stacks spec.flow_stack fields as channels).
MODELS = {
    "two_stream_c3d": functools.partial(build_two_stream, backbone="c3d"),
    "rgb_only_c3d": functools.partial(build_two_stream, backbone="c3d", streams=("rgb",)),
    "flow_only_c3d": functools.partial(build_two_stream, backbone="c3d", streams=("flow",)),
    "two_stream_r2plus1d": functools.partial(build_two_stream, backbone="r2plus1d"),
    "rgb_only_r2plus1d": functools.partial(build_two_stream, backbone="r2plus1d", streams=("rgb",)),
    "flow_only_r2plus1d": functools.partial(build_two_stream, backbone="r2plus1d", streams=("flow",)),
    "two_stream_tsn": functools.partial(build_two_stream, backbone="tsn"),
    "rgb_only_tsn": functools.partial(build_two_stream, backbone="tsn", streams=("rgb",)),
    "flow_only_tsn": functools.partial(build_two_stream, backbone="tsn", streams=("flow",)),
}


def build_model(spec: ModelSpec, num_classes: int, rgb_shape, flow_shape):
    """Builds `spec.name` under spec.precision's dtype policy, then loads spec.weights if one is given."""
    if spec.name not in MODELS:
        raise ValueError(f"unknown model {spec.name!r}; known models: {', '.join(sorted(MODELS))}")
    if spec.weights and not os.path.isfile(spec.weights):
        raise FileNotFoundError(f"model.weights: no file at {spec.weights!r} (a Keras *.weights.h5 file saved "
                                f"from the same model name and size; leave empty to train from scratch)")
    with dtype_policy(spec.precision):
        model = MODELS[spec.name](spec, num_classes, rgb_shape, flow_shape)
    if spec.weights:
        model.load_weights(spec.weights)
    return model
