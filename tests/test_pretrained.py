"""keras.applications backbones: every one trains at its minimal size (generated from the table), ImageNet weights
load through model.pretrained (Keras' cache, a folder, a file) with TSN's cross-modality init, the temporal shift,
frozen BatchNorm, input normalisation, the max consensus, and the config's checks.

These networks are big for a CPU: every test uses 2 frames, batch 1 and the smallest frame size a network takes.
The ImageNet files themselves are never needed: a network with random weights, saved the way Keras saves it,
stands in for them (the loading rules are the same)."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from twostream.models.applications import APPLICATIONS, plain_network
from twostream.models.cost import flops_per_clip
from twostream.models.layers import FLOW_RANGE, ImageNetInput, MaxConsensus, TemporalShift
from twostream.models.pretrained import WeightsFileError, cross_modality, weighted_layers
from twostream.models.registry import build_model
from twostream.models.two_stream import ModelSpec
from twostream.trainer.config import ConfigError, load

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

FRAMES = 2
# blocks whose first conv gets the temporal shift, as the architectures are published
BLOCKS = {"resnet50": 16, "efficientnetb0": 16, "xception": 12, "mobilenetv3small": 11, "mobilenetv3large": 15}


def _shapes(backbone, frames=FRAMES):
    size = APPLICATIONS[backbone].min_size
    return (frames, size, size, 3), (frames, size, size, 2)


def _build(name, frames=FRAMES, **options):
    rgb, flow = _shapes(name.split("_")[-1], frames)
    return build_model(ModelSpec(name=name, flow_stack=options.pop("flow_stack", 1), **options), 3, rgb, flow)


def _clip(model, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: tf.constant(rng.integers(0, 256, (batch, *i.shape[1:]), dtype=np.uint8)) for i in model.inputs}


def _shift_layers(network):
    return [layer for layer in network.layers if isinstance(layer, TemporalShift)]


@pytest.mark.parametrize("backbone", sorted(APPLICATIONS))
def test_every_backbone_trains_in_both_streams_and_every_variable_gets_a_gradient(backbone):
    keras.utils.set_random_seed(0)  # unseeded, the weights depended on earlier tests: a zero gradient in some orders
    model = _build(f"two_stream_{backbone}", temporal_shift=0.125)
    assert len(_shift_layers(model.get_layer(f"rgb_{backbone}"))) == BLOCKS[backbone]  # one per block
    assert not _shift_layers(model.get_layer(f"flow_{backbone}"))  # RGB stream only
    with tf.GradientTape() as tape:
        logits = model(_clip(model), training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(tf.constant([2]), logits, from_logits=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert logits.shape == (1, 3) and logits.dtype == tf.float32 and np.isfinite(loss.numpy())
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.all(np.isfinite(gradient)) and np.any(gradient.numpy() != 0), variable.path


def _save_as_imagenet_file(backbone, path, legacy=False):
    """A random network saved as Keras saves ImageNet weights: *.weights.h5, or the legacy *.h5 Keras downloads."""
    network = plain_network(backbone, (APPLICATIONS[backbone].min_size,) * 2 + (3,), f"source_{backbone}")
    if legacy:
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, network)
    else:
        network.save_weights(path)
    return [[np.asarray(v) for v in layer.weights] for layer in weighted_layers(network)]


def _assert_loaded(source, backbone_model, flow_channels=None):
    """Every weight equals the source's, in topological order; a flow stream's first kernel is exactly the mean
    over the RGB input channels, replicated over the flow channels."""
    loaded = [[np.asarray(v) for v in layer.weights] for layer in weighted_layers(backbone_model)]
    assert len(loaded) == len(source)
    for index, (expected, got) in enumerate(zip(source, loaded)):
        for i, (want, have) in enumerate(zip(expected, got)):
            if flow_channels and index == 0 and i == 0:
                assert have.shape == (*want.shape[:2], flow_channels, want.shape[3])
                mean = (want[:, :, 0] + want[:, :, 1] + want[:, :, 2]) / 3
                for channel in range(flow_channels):
                    np.testing.assert_allclose(have[:, :, channel], mean, rtol=1e-6, atol=1e-7)
                np.testing.assert_array_equal(have, cross_modality(want, flow_channels))
            else:
                np.testing.assert_array_equal(have, want)


def test_weights_saved_from_one_network_load_into_both_streams(tmp_path):
    """A *.weights.h5 file (model.pretrained=FILE) into RGB (temporal shift inserted) and stacked flow (4 channels)."""
    path = str(tmp_path / "mobilenet.weights.h5")
    source = _save_as_imagenet_file("mobilenetv3small", path)
    model = _build("two_stream_mobilenetv3small", frames=4, flow_stack=2, temporal_shift=0.125, pretrained=path)
    _assert_loaded(source, model.get_layer("rgb_mobilenetv3small"))
    _assert_loaded(source, model.get_layer("flow_mobilenetv3small"), flow_channels=4)


def test_keras_cache_file_loads_by_topology_into_a_rewired_network(tmp_path, monkeypatch):
    """model.pretrained=imagenet reads Keras' own file name from $KERAS_HOME/models, in Keras' legacy format;
    EfficientNet's in-graph preprocessing (whose statistics the file holds) is left out of the backbone."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    source = _save_as_imagenet_file("efficientnetb0", str(tmp_path / "models" / "efficientnetb0_notop.h5"), legacy=True)
    model = _build("flow_only_efficientnetb0", pretrained="imagenet")
    network = model.get_layer("flow_efficientnetb0")
    assert not [
        layer for layer in network.layers if isinstance(layer, (keras.layers.Normalization, keras.layers.Rescaling))
    ]
    _assert_loaded(source, network, flow_channels=2)


def test_a_missing_imagenet_file_is_named_with_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = str(tmp_path / "models" / APPLICATIONS["resnet50"].weights_file)
    with pytest.raises(WeightsFileError) as missing:
        _build("two_stream_resnet50", pretrained="imagenet")  # raised before the network is built
    message = str(missing.value)
    assert expected in message and "keras.applications.ResNet50(include_top=False, weights='imagenet')" in message
    assert APPLICATIONS["resnet50"].weights_url in message
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    with pytest.raises(WeightsFileError, match=str(folder / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")):
        _build("rgb_only_xception", pretrained=str(folder))


def test_frames_interact_only_through_the_temporal_shift():
    """Per-frame networks with an average consensus ignore frame order; with TSM reversed frames score otherwise.
    (Training mode: randomly initialised BatchNorm statistics would all but zero the features; batch statistics
    over a clip's frames do not depend on their order either.)"""
    plain = _build("rgb_only_mobilenetv3small", frames=4)
    shifted = _build("rgb_only_mobilenetv3small", frames=4, temporal_shift=0.25)
    clip = _clip(plain)
    reversed_clip = {k: v[:, ::-1] for k, v in clip.items()}
    for model, order_matters in ((plain, False), (shifted, True)):
        forward, backward = (model(c, training=True).numpy() for c in (clip, reversed_clip))
        change = np.max(np.abs(forward - backward)) / np.max(np.abs(forward))
        assert (change > 1e-3) if order_matters else (change < 1e-5), change


def test_temporal_shift_moves_channels_by_one_frame_within_each_clip():
    frames = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2 * 3, 1, 1, 8)  # 2 clips of 3 frames, 8 channels
    out = TemporalShift(frames=3, share=0.25)(frames).numpy().reshape(2, 3, 8)
    clips = frames.reshape(2, 3, 8)
    np.testing.assert_array_equal(out[:, :2, :2], clips[:, 1:, :2])  # channels 0-1 from the next frame
    np.testing.assert_array_equal(out[:, 2, :2], 0)  # nothing after the clip's last frame
    np.testing.assert_array_equal(out[:, 1:, 2:4], clips[:, :2, 2:4])  # channels 2-3 from the previous frame
    np.testing.assert_array_equal(out[:, 0, 2:4], 0)
    np.testing.assert_array_equal(out[..., 4:], clips[..., 4:])  # the rest stay


def test_frozen_batch_norm():
    """all: BatchNorm on stored statistics in training too, so a clip's logits do not depend on its batch;
    partial: only each stream's first BatchNorm still trains (TSN's partial BN)."""
    frozen = _build("rgb_only_mobilenetv3small", freeze_bn="all")
    norms = [
        layer
        for layer in frozen.get_layer("rgb_mobilenetv3small").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    stored = [np.asarray(layer.moving_mean) for layer in norms]
    batch = _clip(frozen, batch=3, seed=4)
    together = frozen(batch, training=True).numpy()
    alone = frozen({k: v[1:2] for k, v in batch.items()}, training=True).numpy()
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-5)
    for layer, before in zip(norms, stored):
        np.testing.assert_array_equal(np.asarray(layer.moving_mean), before)
    assert not any(layer.trainable_weights for layer in norms)
    partial = _build("two_stream_mobilenetv3small", freeze_bn="partial")
    for stream in ("rgb", "flow"):
        norms = [
            layer
            for layer in partial.get_layer(f"{stream}_mobilenetv3small").layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        assert [layer.trainable for layer in norms] == [True] + [False] * (len(norms) - 1)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_input_normalisation_is_keras_preprocess_input(mode):
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype(np.uint8)
    expected = keras.applications.imagenet_utils.preprocess_input(pixels.astype(np.float32), mode=mode)
    np.testing.assert_allclose(ImageNetInput(mode)(pixels).numpy(), expected, rtol=1e-5, atol=1e-4)
    flow = np.array([0, 255], dtype=np.uint8)  # the clipping bound, either way
    np.testing.assert_allclose(ImageNetInput(mode, flow=True)(flow).numpy(), [-FLOW_RANGE[mode], FLOW_RANGE[mode]])


def test_max_consensus_takes_the_strongest_frame():
    maps = np.zeros((1, 3, 2, 2, 2), np.float32)
    maps[0, 1, 0, 0] = [4.0, -4.0]  # frame 1: mean over its 2x2 positions = (1, -1)
    np.testing.assert_array_equal(MaxConsensus()(maps).numpy(), [[1.0, 0.0]])


def test_depthwise_and_separable_convs_inside_a_nested_backbone_are_counted():
    inner_input = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inner_input)  # 8x8x6 outputs, 9 each
    x = keras.layers.SeparableConv2D(5, 3, strides=2, padding="same")(x)  # 4x4: 6 x (9 + 5) per position
    inner = keras.Model(inner_input, x, name="inner")
    clip = keras.Input((3, 8, 8, 3), name="rgb")
    from twostream.models.layers import FoldTime

    model = keras.Model(clip, inner(FoldTime()(clip)))
    per_frame = 8 * 8 * 6 * 9 + 4 * 4 * 6 * (9 + 5)
    assert flops_per_clip(model) == 2 * 3 * per_frame  # 3 frames folded into the batch


@pytest.mark.parametrize(
    "change,message",
    [
        ("model.pretrained=imagenet", "model.pretrained applies to the keras.applications backbones"),
        ("model.freeze_bn=partial", "model.freeze_bn applies to the keras.applications"),
        ("model.temporal_shift=0.125", "model.temporal_shift shifts channels .* model.name=two_stream_c3d"),
    ],
)
def test_options_of_other_backbones_are_refused_by_the_config(change, message):
    with pytest.raises(ConfigError, match=message):
        load(overrides=["model.name=two_stream_c3d", change])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["model.name=two_stream_resnet50", "model.freeze_bn=all"],
            "freeze_bn=all .* meaningful with model.pretrained",
        ),
        (["model.name=flow_only_tsn", "model.temporal_shift=0.1"], "RGB stream .* model.name=flow_only_tsn"),
        (["model.name=rgb_only_xception", "clip.size=64"], "xception takes frames of at least 71 pixels; clip.size=64"),
    ],
)
def test_inconsistent_backbone_options_are_refused_by_the_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(overrides=overrides)


def test_a_pretrained_configuration_passes_the_config():
    config = load(
        overrides=[
            "model.name=two_stream_xception",
            "clip.size=96",
            "model.pretrained=imagenet",
            "model.freeze_bn=partial",
            "model.temporal_shift=0.125",
            "model.consensus=max",
        ]
    )
    assert config.model.freeze_bn == "partial" and config.model.consensus == "max"
