"""The loop in process, with a dummy task (a small Keras regressor on fixed numbers; a world of one): resume
mid-epoch, the NaN guard (stop and skip), accumulation, checkpoint cadence, the epoch record a stop cannot lose,
preemption, best-model selection and the host reads every train.log_every steps."""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from twostream.trainer import dist
from twostream.trainer.config import ConfigError, TrainConfig
from twostream.trainer.engine.checkpoint import Checkpoints
from twostream.trainer.engine.loop import NonFiniteLossError, fit
from twostream.trainer.engine.runlog import RunLog
from twostream.trainer.engine.step import StepTotals
from twostream.trainer.runtime.preemption import Preempted

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

STEPS, BATCH = 5, 4  # steps per epoch, global batch (= the local batch: a world of one)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(STEPS * BATCH, 3)).astype("float32")
Y = (X @ np.array([1.0, -2.0, 0.5], "float32")).astype("float32")


class Stop(Exception):
    """Stands in for a killed job: raised from the data source before a scheduled step."""


def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])


def squared_error(labels, outputs, weights):
    return tf.reduce_sum(tf.square(outputs[:, 0] - labels) * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


class Source:
    """batches(epoch, from_step) over X, Y in a fixed per-epoch order; records the global steps it served and
    runs `events` {global step: action} before serving that step (action: "stop", "nan" or "sigterm")."""

    def __init__(self, events: dict | None = None):
        self.events, self.served = dict(events or {}), []

    def __call__(self, epoch: int, from_step: int):
        order = np.random.default_rng([0, epoch]).permutation(len(X))
        for step in range(from_step, STEPS):
            global_step = epoch * STEPS + step + 1
            event = self.events.pop(global_step, None)
            if event == "stop":
                raise Stop(global_step)
            if event == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            ids = order[step * BATCH : (step + 1) * BATCH]
            labels = Y[ids].copy()
            if event == "nan":
                labels[0] = np.nan
            self.served.append(global_step)
            yield tf.constant(X[ids]), tf.constant(labels)


def train(workdir, source=None, evaluate=None, net=None, **settings):
    settings = {
        "global_batch": BATCH,
        "epochs": 2,
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 0.0,
        "keep_checkpoints": 20,
        "select_metric": "",
        **settings,
    }
    net = net or model()
    metrics = fit(
        net, TrainConfig(**settings), str(workdir), source or Source(), STEPS, loss=squared_error, evaluate=evaluate
    )
    return metrics, [w.numpy() for w in net.weights]


def records(workdir, kind="epoch"):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


def saved_steps(workdir, folder="checkpoints"):
    state = tf.train.get_checkpoint_state(os.path.join(workdir, folder))
    return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths] if state else []


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


def setup_module():
    dist.init()


# ---------------------------------------------------------------------- resume and cadence
def test_stopped_mid_epoch_and_resumed_equals_unstopped(tmp_path):
    _, unstopped = train(tmp_path / "a", checkpoint_every=2)
    source = Source({7: "stop"})
    with pytest.raises(Stop):
        train(tmp_path / "b", source, checkpoint_every=2)
    assert saved_steps(tmp_path / "b")[-1] == 6
    resumed = Source()
    _, weights = train(tmp_path / "b", resumed, checkpoint_every=2)
    assert resumed.served == [7, 8, 9, 10]  # from the checkpoint of step 6, mid-epoch 2
    assert_same(unstopped, weights)
    # The epoch's running loss came back with the checkpoint: epoch 2's record matches the unstopped run's.
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    assert [r["epoch"] for r in b] == [1, 2]
    assert b[1]["train_loss"] == pytest.approx(a[1]["train_loss"], rel=1e-6)


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_checkpoint_cadence(tmp_path, steps_per_call):
    """Every checkpoint_every steps and at every epoch end; several steps per call stop at each action."""
    _, weights = train(tmp_path, checkpoint_every=3, epochs=3, steps_per_call=steps_per_call)
    assert saved_steps(tmp_path) == [3, 5, 6, 9, 10, 12, 15]
    if steps_per_call > 1:
        _, one_per_call = train(tmp_path / "one", checkpoint_every=3, epochs=3)
        assert_same(one_per_call, weights)


def test_accumulation_matches_whole_batches_and_must_divide_the_batch(tmp_path):
    _, whole = train(tmp_path / "a")
    _, accumulated = train(tmp_path / "b", accumulate_steps=2)
    assert_same(whole, accumulated)  # the mean over 2 equal halves is the mean over the batch
    with pytest.raises(ConfigError, match=r"train.accumulate_steps=3 must divide the per-rank batch \(4"):
        train(tmp_path / "c", accumulate_steps=3)


def test_host_reads_the_totals_every_log_every_steps(tmp_path, monkeypatch):
    reads = []
    original = StepTotals.read_and_reset

    def counted(totals):
        values = original(totals)
        reads.append(values["finite"] + values["nonfinite"])
        return values

    monkeypatch.setattr(StepTotals, "read_and_reset", counted)
    train(tmp_path, log_every=2)
    assert reads == [2, 2, 1, 1, 2, 2]  # at global steps 2, 4, 5 (epoch end), 6, 8, 10 (epoch end)


# ---------------------------------------------------------------------- the NaN guard
def test_nan_stops_within_the_window_naming_its_step_and_keeps_the_last_good_checkpoint(tmp_path):
    source = Source({7: "nan"})
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 7 \(epoch 2\)"):
        train(tmp_path, source, log_every=4, checkpoint_every=4)
    assert source.served[-1] == 8  # the window (steps 5-8) ran to its end, not beyond
    assert saved_steps(tmp_path) == [4, 5]  # not 8: the window's read comes before its checkpoint
    restored = model()
    assert Checkpoints(str(tmp_path), restored, None).restore_or_initialize() == 5
    assert all(np.all(np.isfinite(w.numpy())) for w in restored.weights)
    assert [r["epoch"] for r in records(tmp_path)] == [1] and records(tmp_path, "final") == []


def test_nan_is_skipped_when_configured(tmp_path):
    _, weights = train(tmp_path, Source({7: "nan"}), on_nonfinite="skip", log_every=3)
    assert [(r["epoch"], r["skipped_steps"]) for r in records(tmp_path)] == [(1, 0), (2, 1)]
    assert all(np.all(np.isfinite(w)) for w in weights)


# ---------------------------------------------------------------------- records, preemption, best model
def test_epoch_record_lost_between_checkpoint_and_log_line_is_written_on_resume(tmp_path, monkeypatch):
    original = RunLog.epoch

    def killed_before_logging(runlog, record, metrics):
        if record["epoch"] == 1:
            raise Stop("after the checkpoint, before the record")
        original(runlog, record, metrics)

    monkeypatch.setattr(RunLog, "epoch", killed_before_logging)
    with pytest.raises(Stop):
        train(tmp_path, evaluate=lambda: {"loss": 1.0})
    assert saved_steps(tmp_path) == [5] and records(tmp_path) == []
    monkeypatch.setattr(RunLog, "epoch", original)
    resumed = Source()
    train(tmp_path, resumed, evaluate=lambda: {"loss": 1.0})
    assert resumed.served == [6, 7, 8, 9, 10]
    assert [(r["epoch"], r["step"], r["val_loss"]) for r in records(tmp_path)] == [(1, 5, 1.0), (2, 10, 1.0)]
    train(tmp_path)  # nothing left to train: no record written twice
    assert [r["epoch"] for r in records(tmp_path)] == [1, 2]


def test_sigterm_checkpoints_the_next_step_stops_at_the_agreed_one_and_the_rerun_continues(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    source = Source({7: "sigterm"})
    with pytest.raises(Preempted) as stopped:
        train(tmp_path, source, epochs=3, log_every=2)
    assert source.served[-1] == 8  # stopped at the first host read after the signal
    assert (stopped.value.step, stopped.value.epoch) == (7, 2)  # rank 0 checkpointed the step after the signal
    assert signal.getsignal(signal.SIGTERM) is previous  # the loop's handler is removed again
    assert saved_steps(tmp_path)[-1] == 7  # not 8: that one stays the latest
    assert [(r["step"], r["epoch"]) for r in records(tmp_path, "preempted")] == [(7, 2)]
    resumed = Source()
    train(tmp_path, resumed, epochs=3, log_every=2)
    assert resumed.served == list(range(8, 16))
    assert [r["epoch"] for r in records(tmp_path)] == [1, 2, 3]


def test_best_epoch_is_kept_and_reported(tmp_path):
    scores = iter([0.5, 0.3, 0.4, 0.9, 0.7, 0.8])
    metrics, _ = train(
        tmp_path, evaluate=lambda: {"loss": next(scores)}, epochs=3, select_metric="val_loss", keep_checkpoints=1
    )
    assert metrics["best"] == {"epoch": 2, "metric": "val_loss", "value": 0.3}
    assert saved_steps(tmp_path, "best") == [10] and saved_steps(tmp_path) == [15]  # the best is not rotated away
    assert records(tmp_path, "final")[0]["best"]["epoch"] == 2
    metrics, _ = train(
        tmp_path / "max", evaluate=lambda: {"accuracy": next(scores)}, epochs=3, select_metric="val_accuracy"
    )
    assert metrics["best"]["epoch"] == 1  # 0.9, then 0.7 and 0.8: highest wins
    with pytest.raises(ConfigError, match=r"train.select_metric='val_auc' is not in the epoch record; .*val_loss"):
        train(tmp_path / "bad", evaluate=lambda: {"loss": 1.0}, select_metric="val_auc")


@pytest.mark.parametrize("steps, given", [(STEPS - 1, "4"), (STEPS + 1, "more than 5")])
def test_a_source_with_the_wrong_number_of_batches_is_an_error(tmp_path, steps, given):
    def batches(epoch, from_step):
        return ((tf.constant(X[:BATCH]), tf.constant(Y[:BATCH])) for _ in range(from_step, steps))

    with pytest.raises(RuntimeError, match=f"epoch 1 gave {given} batches, expected 5: every rank must yield"):
        fit(
            model(),
            TrainConfig(global_batch=BATCH, epochs=1, select_metric=""),
            str(tmp_path),
            batches,
            STEPS,
            loss=squared_error,
        )
