"""The model registry: a plain dict from name to builder; nothing is registered by importing other modules."""

from __future__ import annotations

import functools
import os

from twostream.models.applications import APPLICATIONS
from twostream.models.precision import dtype_policy
from twostream.models.pretrained import WeightsFileError, load_pretrained, weights_path
from twostream.models.spec import FROM_SCRATCH, MODEL_KINDS, STREAMS, backbone_of, spec_problem, streams_of  # noqa: F401
from twostream.models.two_stream import ModelSpec, build_two_stream

# name -> builder(spec, num_classes, rgb_shape, flow_shape). two_stream_* fuse by spec.fusion; the
# rgb_only_* / flow_only_* ablations ignore it. Backbones: c3d (3D CNN), r2plus1d ((2+1)D ResNet),
# tsn (2D ResNet per frame, averaged over time; the flow stream stacks spec.flow_stack fields as channels);
# resnet50, efficientnetb0, xception, mobilenetv3small/large: keras.applications per frame, like tsn
# (ImageNet weights with model.pretrained; width and depth do not apply).
MODELS = {
    name: functools.partial(build_two_stream, backbone=backbone, streams=streams)
    for name, (backbone, streams) in MODEL_KINDS.items()
}


def build_model(spec: ModelSpec, num_classes: int, rgb_shape, flow_shape):
    """Builds `spec.name` under spec.precision's dtype policy, then loads ImageNet weights (spec.pretrained) into
    its keras.applications backbones, then spec.weights (a whole model's) if one is given."""
    if spec.name not in MODELS:
        raise ValueError(f"unknown model {spec.name!r}; known models: {', '.join(sorted(MODELS))}")
    if spec.weights and not os.path.isfile(spec.weights):
        raise WeightsFileError(
            f"model.weights: no file at {spec.weights!r} (a Keras *.weights.h5 file saved "
            f"from the same model name and size; leave empty to train from scratch)"
        )
    if spec.pretrained and backbone_of(spec.name) in APPLICATIONS:
        weights_path(backbone_of(spec.name), spec.pretrained)  # a missing file is named before building
    with dtype_policy(spec.precision):
        model = MODELS[spec.name](spec, num_classes, rgb_shape, flow_shape)
    if spec.pretrained:
        load_pretrained(model, spec.pretrained)
    if spec.weights:
        model.load_weights(spec.weights)
    return model
