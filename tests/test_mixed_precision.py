"""Loss scaling under mixed_float16: the scale exists, halves on overflow, float32 master weights, checkpointed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from twostream.models.precision import computes_in_float16, dtype_policy
from twostream.trainer import dist
from twostream.trainer.config import TrainConfig
from twostream.trainer.engine.checkpoint import Checkpoints
from twostream.trainer.engine.loop import fit
from twostream.trainer.engine.optimizer import make_optimizer
from twostream.trainer.engine.step import StepOptions, make_train_step

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

SGD = TrainConfig(optimizer="sgd", momentum=0.0, weight_decay=0.0)


@pytest.fixture(scope="module", autouse=True)
def world_of_one():
    dist.init()


def _model(precision: str):
    keras.utils.set_random_seed(0)
    with dtype_policy(precision):
        inputs = keras.Input((6,), name="x")
        hidden = keras.layers.Dense(16, activation="tanh")(inputs)
        return keras.Model(inputs, keras.layers.Dense(3, dtype="float32")(hidden))  # float32 logits


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=(n, 6)), tf.float32), tf.constant(rng.integers(0, 3, n), tf.int32), tf.ones(n)


PLAIN = StepOptions()


def _trained(precision: str, steps=3, options=PLAIN):
    model = _model(precision)
    optimizer = make_optimizer(SGD, 0.5, loss_scale=computes_in_float16(model))
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, options)
    losses = [float(step(*_batch(seed=s))) for s in range(steps)]
    return model, optimizer, losses


def test_float16_model_gets_a_loss_scale_and_trains_like_float32():
    mixed, optimizer, losses = _trained("mixed_float16")
    assert computes_in_float16(mixed) and not computes_in_float16(_model("float32"))
    assert not computes_in_float16(_model("mixed_bfloat16"))  # bfloat16 has float32's range
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(optimizer.dynamic_scale) == 2.0**15  # no overflow: the scale stays
    assert int(optimizer.iterations) == 3 and all(np.isfinite(losses))
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)  # float32 master weights
    # Unscaled before the update: the same steps as float32 up to float16 round-off (scaled, they'd be 32768x).
    full, _, full_losses = _trained("float32")
    assert not isinstance(
        make_optimizer(SGD, 0.5, loss_scale=computes_in_float16(full)), keras.optimizers.LossScaleOptimizer
    )
    for a, b in zip(mixed.trainable_variables, full.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=5e-3)
    np.testing.assert_allclose(losses, full_losses, atol=5e-3)


def test_overflowing_step_is_skipped_and_halves_the_scale():
    model = _model("mixed_float16")
    optimizer = make_optimizer(SGD, 0.5, loss_scale=True)
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, StepOptions(clip_grad_norm=1e-3))
    optimizer.dynamic_scale.assign(2.0**40)  # scaled gradients overflow float16 (max 65504)
    before = [v.numpy() for v in model.trainable_variables]
    assert np.isfinite(float(step(*_batch())))  # the loss itself is fine: only the scaled gradients overflow
    assert float(optimizer.dynamic_scale) == 2.0**39 and int(optimizer.iterations) == 0
    for v, b in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    optimizer.dynamic_scale.assign(2.0**15)
    step(*_batch())  # 2^15 fits: applied, clipped after unscaling
    assert float(optimizer.dynamic_scale) == 2.0**15 and int(optimizer.iterations) == 1
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2) for v, b in zip(model.trainable_variables, before)))
    assert change == pytest.approx(0.5 * 1e-3, rel=1e-2)  # lr x clip norm: the bound holds for unscaled gradients


def test_loss_scale_is_checkpointed_and_restored(tmp_path):
    model, optimizer, _ = _trained("mixed_float16", steps=2)
    optimizer.dynamic_scale.assign(1024.0)
    Checkpoints(str(tmp_path), model, optimizer).save(2)
    weights = [v.numpy() for v in model.trainable_variables]

    restored_model = _model("mixed_float16")
    restored = make_optimizer(SGD, 0.5, loss_scale=True)
    restored.build(restored_model.trainable_variables)
    assert Checkpoints(str(tmp_path), restored_model, restored).restore_or_initialize() == 2
    assert float(restored.dynamic_scale) == 1024.0 and int(restored.iterations) == 2
    for a, b in zip(restored_model.trainable_variables, weights):
        np.testing.assert_array_equal(a.numpy(), b)


def test_fit_wraps_the_optimizer_of_a_float16_model(tmp_path):
    model = _model("mixed_float16")
    x, y, _ = _batch(n=16)

    def batches(epoch, from_step):
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(4).skip(from_step)

    fit(model, TrainConfig(global_batch=4, epochs=1, optimizer="sgd"), str(tmp_path), batches, steps_per_epoch=4)
    saved = dict(tf.train.list_variables(str(tmp_path / "checkpoints")))
    scale = [name for name in saved if "dynamic_scale" in name]
    assert scale, sorted(saved)
    assert tf.train.load_variable(str(tmp_path / "checkpoints"), scale[0]) == 2.0**15
