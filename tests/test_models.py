"""Every registered model at a tiny size: output shape, a non-zero gradient for every variable, no NaN."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from twostream.models.registry import MODELS, build_model
from twostream.models.two_stream import ModelSpec

RGB, FLOW = (4, 32, 32, 3), (4, 32, 32, 2)


def _batch(n=2):
    rng = np.random.default_rng(0)
    return {"rgb": tf.constant(rng.integers(0, 256, (n, *RGB), dtype=np.uint8)),
            "flow": tf.constant(rng.integers(0, 256, (n, *FLOW), dtype=np.uint8))}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_forward_and_every_variable_gets_a_gradient(name, fusion):
    model = build_model(ModelSpec(name=name, width=4, depth=2, fusion=fusion), 3, RGB, FLOW)
    with tf.GradientTape() as tape:
        logits = model(_batch(), training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(tf.constant([0, 2]), logits, from_logits=True))
    assert logits.shape == (2, 3) and logits.dtype == tf.float32
    gradients = tape.gradient(loss, model.trainable_variables)
    for variable, gradient in zip(model.trainable_variables, gradients):
        assert gradient is not None, variable.path
        assert np.all(np.isfinite(gradient)), variable.path
        assert np.any(gradient.numpy() != 0), variable.path


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="two_stream_c3d"):
        build_model(ModelSpec(name="resnet9000"), 2, RGB, FLOW)
