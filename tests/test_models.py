"""Every registered from-scratch model (and every fusion) at a tiny size: shapes, gradients, NaN-free, SavedModel,
precisions. The keras.applications backbones get theirs in tests/test_pretrained.py (minimal sizes: they are big)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from twostream.data.decode.clip_spec import ClipSpec
from twostream.models.cost import flops_per_clip
from twostream.models.layers import StackFrames
from twostream.models.precision import bfloat16_on_onednn_cpu
from twostream.models.registry import FROM_SCRATCH, MODELS, backbone_of, build_model
from twostream.models.two_stream import FUSIONS, ModelSpec
from twostream.trainer.video import export as export_lib

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

CLIP = ClipSpec(num_frames=4, size=32)
RGB, FLOW = CLIP.rgb_shape, CLIP.flow_shape
SMALL = [name for name in sorted(MODELS) if backbone_of(name) in FROM_SCRATCH]
# every single-stream model once, every two-stream model with every fusion
CASES = [(name, fusion) for name in SMALL for fusion in (FUSIONS if name.startswith("two_stream") else ("concat",))]
# exports are the slow part: every model once, and every fusion on the cheapest backbone
EXPORT_CASES = [(name, "concat") for name in SMALL] + [("two_stream_c3d", f) for f in FUSIONS[1:]]


def _spec(name, fusion="concat", **kwargs):
    return ModelSpec(name=name, width=4, depth=2, fusion=fusion, **kwargs)


def _batch(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "rgb": tf.constant(rng.integers(0, 256, (n, *RGB), dtype=np.uint8)),
        "flow": tf.constant(rng.integers(0, 256, (n, *FLOW), dtype=np.uint8)),
    }


def _loss_and_gradients(model, batch):
    with tf.GradientTape() as tape:
        logits = model(batch, training=True)
        labels = tf.constant([0, 2][: logits.shape[0]])
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return logits, loss, tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("name,fusion", CASES)
def test_forward_and_every_variable_gets_a_gradient(name, fusion):
    model = build_model(_spec(name, fusion), 3, RGB, FLOW)
    logits, loss, gradients = _loss_and_gradients(model, _batch())
    assert logits.shape == (2, 3) and logits.dtype == tf.float32
    assert np.isfinite(loss.numpy())
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.all(np.isfinite(gradient)), variable.path
        assert np.any(gradient.numpy() != 0), variable.path


@pytest.mark.parametrize("name,fusion", EXPORT_CASES)
def test_savedmodel_round_trip_gives_identical_outputs(name, fusion, tmp_path):
    model = build_model(_spec(name, fusion), 3, RGB, FLOW)
    batch = _batch(3, seed=1)
    expected = tf.nn.softmax(model(batch, training=False)).numpy()
    export_lib.export(model, str(tmp_path / "export"), CLIP, ["a", "b", "c"])
    loaded = tf.saved_model.load(str(tmp_path / "export"))  # held here: its functions need its variables alive
    served = loaded.serve(rgb=batch["rgb"], flow=batch["flow"])["probabilities"].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", SMALL)
def test_mixed_precision_computes_low_and_returns_float32(name, precision):
    """Convolutions compute in the low dtype, weights and logits stay float32, the loss is finite and every
    gradient exists; finite too, except bfloat16 through oneDNN on a CPU (see the next test)."""
    fusion = "conv" if name.startswith("two_stream") else "concat"  # conv fusion has the most low-precision layers
    keras.utils.set_random_seed(0)
    model = build_model(_spec(name, fusion, precision=precision), 3, RGB, FLOW)
    assert keras.config.dtype_policy().name == "float32"  # the policy was scoped to the build
    convs = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv3D))]
    assert {layer.compute_dtype for layer in convs} == {precision.removeprefix("mixed_")}
    assert all(v.dtype == "float32" for v in model.weights)  # float32 master weights
    logits, loss, gradients = _loss_and_gradients(model, _batch())
    assert logits.dtype == tf.float32 and np.isfinite(loss.numpy()) and all(g is not None for g in gradients)
    if not bfloat16_on_onednn_cpu(precision):
        assert all(np.all(np.isfinite(g)) for g in gradients)


BFLOAT16_GRADIENTS = """
import sys, numpy as np, keras
sys.path.insert(0, sys.argv[1])
from test_models import SMALL, _batch, _loss_and_gradients, _spec, RGB, FLOW
from twostream.models.registry import build_model
for name in SMALL:
    keras.utils.set_random_seed(0)
    model = build_model(_spec(name, "conv" if name.startswith("two_stream") else "concat",
                              precision="mixed_bfloat16"), 3, RGB, FLOW)
    for _ in range(3):   # oneDNN's kernel gave NaN in about one call in three at these sizes
        gradients = _loss_and_gradients(model, _batch())[2]
        print(name, sum(not np.all(np.isfinite(g)) for g in gradients))
"""


def test_bfloat16_gradients_are_finite_with_tensorflows_own_kernels(tmp_path):
    """bfloat16 training is sound: with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0, read at TensorFlow's import, hence a
    new process) every gradient of every model is finite in repeated steps. With oneDNN on, its CPU kernel for
    the 3D-convolution filter gradient returns NaN now and then for the same weights and batch, which is why
    `twostream train` warns on a CPU (models/precision.py: BFLOAT16_ON_CPU)."""
    script = tmp_path / "bf16.py"
    script.write_text(BFLOAT16_GRADIENTS)
    done = subprocess.run(
        [sys.executable, str(script), os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = [line.split() for line in done.stdout.splitlines()]
    assert len(counts) == 3 * len(SMALL) and all(bad == "0" for _, bad in counts), done.stdout


def test_a_clip_gives_the_same_logits_alone_or_in_a_batch():
    """GroupNorm, not BatchNorm: the distributed-equivalence guarantee depends on it."""
    batch = _batch(3, seed=2)
    for name in ("two_stream_c3d", "two_stream_r2plus1d", "two_stream_tsn"):
        model = build_model(_spec(name, "conv"), 3, RGB, FLOW)
        together = model(batch, training=True).numpy()
        alone = model({k: v[1:2] for k, v in batch.items()}, training=True).numpy()
        np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-5)


def test_weights_file_is_loaded_and_a_missing_one_is_named(tmp_path):
    path = str(tmp_path / "trained.weights.h5")
    trained = build_model(_spec("two_stream_tsn", "late_learned"), 3, RGB, FLOW)
    trained.save_weights(path)
    loaded = build_model(_spec("two_stream_tsn", "late_learned", weights=path), 3, RGB, FLOW)
    batch = _batch()
    np.testing.assert_array_equal(loaded(batch).numpy(), trained(batch).numpy())
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        build_model(_spec("two_stream_c3d", weights=str(tmp_path / "nowhere.weights.h5")), 3, RGB, FLOW)


def test_stacked_flow_keeps_consecutive_fields_together():
    frames = np.arange(4 * 2, dtype=np.float32).reshape(1, 4, 1, 1, 2)  # frame t holds (2t, 2t+1)
    stacked = StackFrames(2)(frames).numpy()
    assert stacked.shape == (1, 2, 1, 1, 4)
    np.testing.assert_array_equal(stacked[0, :, 0, 0], [[0, 1, 2, 3], [4, 5, 6, 7]])


def test_flops_count_matches_a_hand_count():
    model = build_model(ModelSpec(name="rgb_only_c3d", width=4, depth=1), 3, RGB, FLOW)
    conv = 4 * 16 * 16 * 4 * (3 * 3 * 3 * 3)  # output T x H/2 x W/2 x channels, times a 3x3x3x3 window
    dense = 3 * 4  # 3 logits from 4 pooled features
    assert flops_per_clip(model) == 2 * (conv + dense)


@pytest.mark.parametrize(
    "change,message",
    [
        ("name=resnet9000", "model.name must be one of .*two_stream_c3d"),
        ("fusion=sum", "model.fusion must be one of concat"),
        ("precision=float8", "model.precision must be one of float32"),
        ("flow_stack=3", "model.flow_stack=3 must divide clip.num_frames=8"),
    ],
)
def test_bad_specs_are_named(change, message):
    """The config checks a model spec (tests/test_config_schema.py covers every field) before any model is built."""
    from twostream.trainer.config import ConfigError, load

    with pytest.raises(ConfigError, match=message):
        load(overrides=["model.name=two_stream_tsn", f"model.{change}"])
