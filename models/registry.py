"""The model registry: a plain dict from name to builder; nothing is registered by importing other modules."""
from __future__ import annotations

import functools
import os

from twostream.models.applications import APPLICATIONS
from twostream.models.precision import dtype_policy
from twostream.models.pretrained import WeightsFileError, load_pretrained, weights_path
from twostream.models.two_stream import ModelSpec, build_two_stream

STREAMS = {"two_stream": ("rgb", "flow"), "rgb_only": ("rgb",), "flow_only": ("flow",)}
FROM_SCRATCH = ("c3d", "r2plus1d", "tsn")   # models/backbones.py; APPLICATIONS: keras.applications, per frame

# name -> builder(spec, num_classes, rgb_shape, flow_shape). two_stream_* fuse by spec.fusion; the
# rgb_only_* / flow_only_* ablations ignore it. Backbones: c3d (3D CNN), r2plus1d ((2+1)D ResNet),
# tsn (2D ResNet per frame, averaged over time; the flow stream stacks spec.flow_stack fields as channels);
# resnet50, efficientnetb0, xception, mobilenetv3small/large: keras.applications per frame, like tsn
# (ImageNet weights with model.pretrained; width and depth do not apply).
MODELS = {f"{kind}_{backbone}": functools.partial(build_two_stream, backbone=backbone, streams=streams)
          for backbone in FROM_SCRATCH + tuple(APPLICATIONS) for kind, streams in STREAMS.items()}


def backbone_of(name: str) -> str:
    return MODELS[name].keywords["backbone"]


def streams_of(name: str) -> tuple[str, ...]:
    return MODELS[name].keywords["streams"]


def spec_problem(spec: ModelSpec, frame_size: int) -> str | None:
    """What is wrong with spec's model options together (the config raises it as a ConfigError), or None."""
    backbone, streams = backbone_of(spec.name), streams_of(spec.name)
    applications = ", ".join(APPLICATIONS)
    if (spec.pretrained or spec.freeze_bn != "none") and backbone not in APPLICATIONS:
        key = "model.pretrained" if spec.pretrained else "model.freeze_bn"
        return (f"{key} applies to the keras.applications backbones ({applications}); model.name={spec.name} "
                f"is trained from scratch")
    if spec.freeze_bn != "none" and not spec.pretrained:
        return (f"model.freeze_bn={spec.freeze_bn} keeps BatchNorm on its stored statistics, which are only "
                f"meaningful with model.pretrained (randomly initialised ones are mean 0, variance 1)")
    if spec.temporal_shift and (backbone not in ("tsn", *APPLICATIONS) or "rgb" not in streams):
        return (f"model.temporal_shift shifts channels between frames in the RGB stream of a 2D backbone (tsn, "
                f"{applications}); model.name={spec.name} has none")
    if backbone in APPLICATIONS and frame_size < APPLICATIONS[backbone].min_size:
        return (f"{backbone} takes frames of at least {APPLICATIONS[backbone].min_size} pixels; clip.size="
                f"{frame_size}")
    return None


def build_model(spec: ModelSpec, num_classes: int, rgb_shape, flow_shape):
    """Builds `spec.name` under spec.precision's dtype policy, then loads ImageNet weights (spec.pretrained) into
    its keras.applications backbones, then spec.weights (a whole model's) if one is given."""
    if spec.name not in MODELS:
        raise ValueError(f"unknown model {spec.name!r}; known models: {', '.join(sorted(MODELS))}")
    if spec.weights and not os.path.isfile(spec.weights):
        raise WeightsFileError(f"model.weights: no file at {spec.weights!r} (a Keras *.weights.h5 file saved "
                               f"from the same model name and size; leave empty to train from scratch)")
    if spec.pretrained and backbone_of(spec.name) in APPLICATIONS:
        weights_path(backbone_of(spec.name), spec.pretrained)   # a missing file is named before building
    with dtype_policy(spec.precision):
        model = MODELS[spec.name](spec, num_classes, rgb_shape, flow_shape)
    if spec.pretrained:
        load_pretrained(model, spec.pretrained)
    if spec.weights:
        model.load_weights(spec.weights)
    return model
