"""The update step: accumulation equals one big batch, clipping, label smoothing, non-finite skip, schedules."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from twostream.trainer import dist
from twostream.trainer.engine.schedule import WarmupDecay
from twostream.trainer.engine.step import StepOptions, make_train_step, weighted_cross_entropy

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


@pytest.fixture(scope="module", autouse=True)
def world_of_one():
    dist.init()


def _model():
    keras.utils.set_random_seed(0)
    inputs = {"rgb": keras.Input((6,), name="rgb"), "flow": keras.Input((4,), name="flow")}
    hidden = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([inputs["rgb"], inputs["flow"]]))
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return (
        {
            "rgb": tf.constant(rng.normal(size=(n, 6)), tf.float32),
            "flow": tf.constant(rng.normal(size=(n, 4)), tf.float32),
        },
        tf.constant(rng.integers(0, 3, n), tf.int32),
        tf.ones(n),
    )


def _train(options: StepOptions, steps=3):
    model = _model()
    optimizer = keras.optimizers.SGD(0.5)
    step = make_train_step(model, optimizer, options)
    for s in range(steps):
        step(*_batch(seed=s))
    return [v.numpy() for v in model.trainable_variables]


def test_accumulation_matches_the_full_batch():
    full, accumulated = _train(StepOptions()), _train(StepOptions(accumulate_steps=4))
    for a, b in zip(full, accumulated):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    moved = _train(StepOptions(), steps=1)
    assert any(not np.allclose(a, b) for a, b in zip(full, moved))


class _BatchSizes(keras.layers.Layer):
    """Passes its input through and records the batch size of every call (the step runs eagerly)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def call(self, x):
        self.seen.append(x.shape[0])  # None while Keras builds the model on symbolic inputs
        return x


def test_accumulation_feeds_the_model_micro_batches():
    recorder = _BatchSizes()
    inputs = {"rgb": keras.Input((6,), name="rgb"), "flow": keras.Input((4,), name="flow")}
    joined = recorder(keras.layers.Concatenate()([inputs["rgb"], inputs["flow"]]))
    model = keras.Model(inputs, keras.layers.Dense(3)(joined))
    recorder.seen.clear()
    make_train_step(model, keras.optimizers.SGD(0.1), StepOptions(accumulate_steps=4, eager=True))(*_batch(n=8))
    assert recorder.seen == [2, 2, 2, 2]


def test_accumulation_averages_the_micro_batch_losses():
    """A loss that depends on the whole batch (the squared batch mean) tells k micro-batches from one batch."""
    model = _model()
    inputs, labels, weights = _batch(n=8)
    outputs = model(inputs).numpy()
    expected = np.mean([np.mean(part) ** 2 for part in np.split(outputs, 4)])
    assert not np.isclose(expected, np.mean(outputs) ** 2, rtol=1e-3)  # the two forms differ on this batch

    def squared_batch_mean(labels, outputs, weights):
        return tf.reduce_mean(outputs) ** 2

    step = make_train_step(model, keras.optimizers.SGD(0.0), StepOptions(accumulate_steps=4), loss=squared_batch_mean)
    assert float(step(inputs, labels, weights)) == pytest.approx(expected, rel=1e-5)


def test_clipping_bounds_the_update():
    model = _model()
    before = [v.numpy() for v in model.trainable_variables]
    make_train_step(model, keras.optimizers.SGD(1.0), StepOptions(clip_grad_norm=1e-3))(*_batch())
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(model.trainable_variables, before)))
    assert 0 < change <= 1e-3 + 1e-7


def test_label_smoothing_values():
    """Smoothing s over C classes: targets (1 - s) on the label plus s / C on every class, padding left out."""
    logits, labels, weights = tf.constant([[10.0, -10.0]]), tf.constant([0]), tf.ones(1)
    # targets (0.9, 0.1); -0.9 log p0 - 0.1 log p1 = 0.1 x 20 + log(1 + e^-20)
    assert float(weighted_cross_entropy(labels, logits, weights, 0.2)) == pytest.approx(2.0 + np.log1p(np.exp(-20.0)))
    assert float(weighted_cross_entropy(labels, logits, weights)) == pytest.approx(0.0, abs=1e-6)  # 2e-9
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [9.0, 9.0, 9.0]], np.float32)
    labels, weights, smoothing = np.array([1, 0, 2]), np.array([1.0, 1.0, 0.0], np.float32), 0.3
    log_p = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    targets = np.eye(3)[labels] * (1 - smoothing) + smoothing / 3
    expected = np.sum(-np.sum(targets * log_p, axis=1) * weights) / 2  # the third row is padding
    got = weighted_cross_entropy(tf.constant(labels), tf.constant(logits), tf.constant(weights), smoothing)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_nonfinite_loss_is_skipped_when_configured():
    model = _model()
    before = [v.numpy() for v in model.trainable_variables]
    inputs, labels, weights = _batch()
    inputs = {"rgb": inputs["rgb"] * np.nan, "flow": inputs["flow"]}
    loss = make_train_step(model, keras.optimizers.SGD(0.5), StepOptions(skip_nonfinite=True))(inputs, labels, weights)
    assert not np.isfinite(float(loss))
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_schedules():
    cosine = WarmupDecay(1.0, total_steps=110, warmup_steps=10, kind="cosine")
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(9)) == pytest.approx(1.0)
    assert float(cosine(60)) == pytest.approx(0.5, abs=1e-6) and float(cosine(110)) == pytest.approx(0.0, abs=1e-6)
    step = WarmupDecay(1.0, total_steps=100, kind="step", step_every=30, step_factor=0.1)
    assert [round(float(step(s)), 6) for s in (0, 29, 30, 60)] == [1.0, 1.0, 0.1, 0.01]
    from twostream.trainer.config import ConfigError, load

    with pytest.raises(ConfigError, match="train.schedule must be one of constant, cosine, step"):
        load(overrides=["train.schedule=linear"])  # the config is where a schedule name is checked


def test_a_nonfinite_gradient_under_a_finite_loss_is_caught():
    model = _model()
    before = [v.numpy() for v in model.trainable_variables]

    def finite_loss_nan_gradient(labels, outputs, weights):  # sqrt'(0) x abs'(0) = inf x 0 = NaN
        return tf.reduce_mean(tf.sqrt(tf.abs(outputs - tf.stop_gradient(outputs))))

    step = make_train_step(
        model, keras.optimizers.SGD(0.5), StepOptions(skip_nonfinite=True), loss=finite_loss_nan_gradient
    )
    assert np.isnan(float(step(*_batch())))
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
