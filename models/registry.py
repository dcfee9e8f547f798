"""The model registry: a plain dict from name to builder; nothing is registered by importing other modules."""
from __future__ import annotations

import functools

from twostream.models.two_stream import ModelSpec, build_two_stream

MODELS = {
    "two_stream_c3d": build_two_stream,
    "rgb_only_c3d": functools.partial(build_two_stream, streams=("rgb",)),
    "flow_only_c3d": functools.partial(build_two_stream, streams=("flow",)),
}


def build_model(spec: ModelSpec, num_classes: int, rgb_shape, flow_shape):
    """Looks `spec.name` up in MODELS and builds it; an unknown name lists the known ones."""
    if spec.name not in MODELS:
        raise ValueError(f"unknown model {spec.name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[spec.name](spec, num_classes, rgb_shape, flow_shape)
