"""ImageNet weights for the keras.applications backbones: finding Keras' file, loading it into each stream, and
TSN's cross-modality initialisation of the flow stream. Nothing is downloaded: a missing file is named."""

from __future__ import annotations

import os

import keras
import numpy as np

from twostream.models.applications import APPLICATIONS, IN_GRAPH_PREPROCESSING, plain_network
from twostream.models.spec import WeightsFileError  # defined without Keras: the command line catches it

IMAGENET = "imagenet"  # model.pretrained's value for Keras' own cache


def keras_cache() -> str:
    """Keras' cache of application weights: $KERAS_HOME/models, else ~/.keras/models (as keras.utils.get_file)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def weights_path(name: str, pretrained: str) -> str:
    """The ImageNet weights file for backbone `name`: model.pretrained=imagenet -> Keras' cache; a folder ->
    Keras' file name in it; a file -> that file (a Keras *.weights.h5, or the *.h5 Keras downloads)."""
    app = APPLICATIONS[name]
    folder = keras_cache() if pretrained == IMAGENET else pretrained
    path = os.path.join(folder, app.weights_file) if os.path.isdir(folder) or pretrained == IMAGENET else pretrained
    if not os.path.isfile(path):
        raise WeightsFileError(
            f"model.pretrained={pretrained}: no ImageNet weights for {name} at {path} (nothing is downloaded while "
            f'training). Get them once where there is network: python -c "import keras; keras.applications.'
            f"{app.build}(include_top=False, weights='imagenet')\" saves {app.weights_file} in {keras_cache()}; "
            f"or download {app.weights_url} and set model.pretrained to that file or its folder"
        )
    return path


def imagenet_network(name: str, path: str) -> keras.Model:
    """The plain RGB network, exactly as keras.applications builds it, with the file's weights loaded the way
    Keras loads them (by topology: *.h5 layer by layer, *.weights.h5 by layer class and order)."""
    network = plain_network(name, (APPLICATIONS[name].min_size,) * 2 + (3,), f"imagenet_{name}")
    network.load_weights(path)
    return network


def weighted_layers(network: keras.Model) -> list:
    """The layers holding weights, in graph order, leaving out in-graph preprocessing (dropped by our backbones)."""
    return [layer for layer in network.layers if layer.weights and not isinstance(layer, IN_GRAPH_PREPROCESSING)]


def cross_modality(kernel: np.ndarray, channels: int) -> np.ndarray:
    """TSN's cross-modality initialisation (Wang et al. 2016, sec. 3.2): the first conv's kernel (kh, kw, 3, out)
    averaged over its RGB input channels and that average replicated over the `channels` flow inputs.

    No other scaling: each flow channel gets the mean of the 3 RGB weights (1/3 of their sum), so a flow
    input of c channels with equal values v gives c/3 times the response of a grey image of value v; with
    TSN's partial BN (model.freeze_bn=partial) the first BatchNorm, left free, re-learns that scale."""
    return np.repeat(kernel.mean(axis=2, keepdims=True), channels, axis=2)


def transfer(source: keras.Model, target: keras.Model) -> None:
    """Every weight of `source` (the ImageNet RGB network) into `target` (a stream's backbone), by topology: the
    i-th layer with weights takes the i-th, of the same class and shapes. A first conv whose input channels
    differ (flow) gets the cross-modality kernel; its bias, if any, is copied."""
    origins, targets = weighted_layers(source), weighted_layers(target)
    if len(origins) != len(targets):
        raise ValueError(
            f"{target.name} has {len(targets)} layers with weights, the ImageNet network "
            f"{len(origins)}: not the same architecture"
        )
    for index, (origin, layer) in enumerate(zip(origins, targets)):
        if type(origin) is not type(layer):
            raise ValueError(
                f"{target.name}: layer {layer.name} ({type(layer).__name__}) does not match "
                f"{origin.name} ({type(origin).__name__}) of the ImageNet network"
            )
        values = [np.asarray(v) for v in origin.weights]
        for i, (value, variable) in enumerate(zip(values, layer.weights, strict=True)):
            if value.shape != tuple(variable.shape):
                if not (index == 0 and i == 0 and value.ndim == 4):
                    raise ValueError(
                        f"{target.name}: weight {variable.path} is {tuple(variable.shape)}, the "
                        f"ImageNet file's is {value.shape}"
                    )
                value = cross_modality(value, variable.shape[2])
            variable.assign(value)


def load_pretrained(model: keras.Model, pretrained: str) -> None:
    """Loads ImageNet weights into every keras.applications backbone of `model` (named `{stream}_{name}`)."""
    networks = {}
    for layer in model.layers:
        stream, _, name = layer.name.partition("_")
        if stream in ("rgb", "flow") and name in APPLICATIONS:
            if name not in networks:  # one file read per backbone kind, shared by both streams
                networks[name] = imagenet_network(name, weights_path(name, pretrained))
            transfer(networks[name], layer)
