"""keras.applications ImageNet networks as per-frame (TSN) backbones: the table of networks, and building one
for a stream (its input normalisation, frames folded into the batch, the temporal shift, frozen BatchNorm)."""

from __future__ import annotations

import functools
import re
import warnings

import keras
from keras import layers

from twostream.models.application_table import APPLICATIONS, FREEZE_BN, Application  # noqa: F401 (re-exported)
from twostream.models.layers import FoldTime, ImageNetInput, StackFrames, TemporalShift, UnfoldTime

# Preprocessing some constructors build into the graph (EfficientNet's Rescaling + Normalization): dropped,
# because ImageNetInput in front of every backbone does it, for flow too.
IN_GRAPH_PREPROCESSING = (layers.Rescaling, layers.Normalization)


def plain_network(name: str, input_shape, model_name: str | None = None) -> keras.Model:
    """The keras.applications network without its classifier, random weights, on (H, W, C) frames."""
    app = APPLICATIONS[name]
    with warnings.catch_warnings():  # flow has 2 or 2L channels, not the RGB 3 the constructor expects
        warnings.filterwarnings("ignore", message="This model usually expects")
        return app.constructor()(
            include_top=False, weights=None, input_shape=tuple(input_shape), name=model_name or name, **app.options
        )


def shift_points(network: keras.Model, name: str) -> set[str]:
    """The first convolution of every block (in graph order), whose input the temporal shift goes on."""
    first: dict[str, str] = {}  # block -> its first convolution's layer name
    for layer in network.layers:
        match = re.match(APPLICATIONS[name].block, layer.name)
        if match:
            first.setdefault(match.group(1), layer.name)
    return set(first.values())


def _rewire(layer, *args, shifted=(), frames=1, share=0.0, **kwargs):
    """clone_model's call_function: in-graph preprocessing skipped, TSM put before each block's first conv.

    Only that convolution reads the shifted frames: a shortcut from the block's input keeps the current
    frame's features whole (TSM's residual shift)."""
    if isinstance(layer, IN_GRAPH_PREPROCESSING):
        return args[0]
    if layer.name in shifted:
        args = (TemporalShift(frames, share, name=f"{layer.name}_shift")(args[0]), *args[1:])
    return layer(*args, **kwargs)


def stream_network(name: str, input_shape, stream: str, frames: int, shift: float) -> keras.Model:
    """The backbone of one stream as a model of its own, named `{stream}_{name}`, applied to folded frames."""
    network = plain_network(name, input_shape, f"{stream}_{name}")
    rewire = any(isinstance(layer, IN_GRAPH_PREPROCESSING) for layer in network.layers) or shift > 0
    if rewire:
        shifted = shift_points(network, name) if shift > 0 else set()
        call = functools.partial(_rewire, shifted=shifted, frames=frames, share=shift)
        network = keras.models.clone_model(network, call_function=call)
    return network


def freeze_batch_norm(network: keras.Model, which: str) -> None:
    """Frozen BatchNorm (trainable=False): normalises with its stored statistics, in training too, and its
    scale and offset are not trained. partial: all but the first (TSN's partial BN); all: every one."""
    norms = [layer for layer in network.layers if isinstance(layer, layers.BatchNormalization)]
    for layer in norms[1:] if which == "partial" else norms if which == "all" else []:
        layer.trainable = False


def application_features(clip, stream: str, name: str, spec):
    """uint8 clip (B, T, H, W, C) -> the network's last feature map per frame, (B, T', h, w, F).

    Every frame (for flow: every stack of spec.flow_stack fields, TSN's 2L-channel input) goes through the
    2D network on its own, frames folded into the batch; the model's pooling then takes the consensus.
    spec.temporal_shift applies to the RGB stream only: flow already carries the motion.
    """
    app = APPLICATIONS[name]
    x = ImageNetInput(app.preprocessing, flow=stream == "flow", name=f"{stream}_scale")(clip)
    if stream == "flow" and spec.flow_stack > 1:
        x = StackFrames(spec.flow_stack, name="flow_stack")(x)
    frames = x.shape[1]
    shift = spec.temporal_shift if stream == "rgb" else 0.0
    network = stream_network(name, x.shape[2:], stream, frames, shift)
    freeze_batch_norm(network, spec.freeze_bn)
    x = network(FoldTime(name=f"{stream}_fold")(x))
    return UnfoldTime(frames, name=f"{stream}_unfold")(x)
