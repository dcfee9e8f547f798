"""The training loop: `train` sets up the video task from a config; `fit` runs any Keras model through the loop."""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from typing import Callable, Iterable

import keras
from tqdm import tqdm

from twostream.data.sharding import local_batch_size
from twostream.models.precision import computes_in_float16
from twostream.models.registry import build_model
from twostream.trainer import config as config_lib
from twostream.trainer import debug as debug_lib
from twostream.trainer import dist
from twostream.trainer import visualize
from twostream.trainer.checkpoint import Checkpoints
from twostream.trainer.evaluate import evaluate
from twostream.trainer.export import export
from twostream.trainer.inputs import Inputs
from twostream.trainer.runlog import RunLog
from twostream.trainer.schedule import WarmupDecay
from twostream.trainer.step import StepOptions, make_eval_step, make_train_step

log = logging.getLogger("twostream")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; raised on every rank at the same step (the loss is allreduced)."""


def make_optimizer(train: config_lib.TrainConfig, learning_rate,
                   loss_scale: bool = False) -> keras.optimizers.Optimizer:
    """train.optimizer; with loss_scale (a model computing in float16) wrapped in a dynamic LossScaleOptimizer,
    whose scale (2^15 to start) halves on a step with Inf/NaN gradients, which it skips, and doubles after
    2000 good steps. The model's variables stay float32 (the master weights) either way."""
    if train.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay)
    elif train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=train.momentum, weight_decay=train.weight_decay)
    else:
        raise config_lib.ConfigError(f"train.optimizer must be 'adamw' or 'sgd', got {train.optimizer!r}")
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else optimizer


def learning_rate_schedule(train: config_lib.TrainConfig, peak_lr: float, steps_per_epoch: int) -> WarmupDecay:
    return WarmupDecay(peak_lr, total_steps=train.epochs * steps_per_epoch,
                       warmup_steps=round(train.warmup_epochs * steps_per_epoch), kind=train.schedule,
                       step_every=train.step_decay_epochs * steps_per_epoch, step_factor=train.step_decay_factor)


def step_options(train: config_lib.TrainConfig, local_batch: int) -> StepOptions:
    if train.on_nonfinite not in ("stop", "skip"):
        raise config_lib.ConfigError(f"train.on_nonfinite must be 'stop' or 'skip', got {train.on_nonfinite!r}")
    if train.accumulate_steps < 1 or local_batch % train.accumulate_steps:
        raise config_lib.ConfigError(f"train.accumulate_steps={train.accumulate_steps} must divide the per-rank "
                                     f"batch ({local_batch} = train.global_batch / processes)")
    return StepOptions(accumulate_steps=train.accumulate_steps, clip_grad_norm=train.clip_grad_norm,
                       label_smoothing=train.label_smoothing, skip_nonfinite=train.on_nonfinite == "skip",
                       fp16_allreduce=train.fp16_allreduce, eager=train.eager)


def setup_logging(chief: bool) -> None:
    """INFO on rank 0, warnings only elsewhere: one readable log per job, not one per rank."""
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if chief else logging.WARNING, force=True)
    logging.getLogger("absl").setLevel(logging.WARNING)   # TensorFlow's per-iterator INFO chatter


def train(config: config_lib.Config, workdir: str) -> tuple[dict, keras.Model]:
    """Trains config's model on config's video data, checkpointing to and resuming from `workdir`.

    Returns (final validation metrics, trained model); the metrics are the same dict on every rank."""
    # ------------------------------------------------------------------ distribution (marked: Horovod)
    dist.init()
    chief = dist.is_chief()                     # rank 0 alone logs, checkpoints and exports
    setup_logging(chief)
    keras.utils.set_random_seed(config.train.seed)
    if config.train.debug:
        debug_lib.enable_determinism()
    check_workdir(workdir, collective=not config.train.elastic)   # elastic: fit checks it again on every start
    if chief:
        config_lib.save(config, os.path.join(workdir, "config.yaml"))

    # ------------------------------------------------------------------ input pipeline
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    log.info("%d train / %d validation clips, %d classes %s; %d ranks x %d clips per step, %d steps per epoch",
             len(inputs.train_records), len(inputs.val_records), len(inputs.class_names), list(inputs.class_names),
             dist.size(), inputs.local_batch, inputs.steps_per_epoch)

    # ------------------------------------------------------------------ model
    model = build_model(config.model, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
    eval_step = make_eval_step(model, eager=config.train.eager)

    streams = []   # this epoch's EpochStream, whose report says what was read, failed and replaced

    def train_batches(epoch: int, from_step: int):
        inputs.reshard(dist.rank(), dist.size())   # the world may have changed (elastic reset)
        dataset, stream = inputs.train_epoch(epoch, from_step)
        streams.append(stream)
        return dataset

    # ------------------------------------------------------------------ the loop, then export
    metrics = fit(model, config.train, workdir, train_batches, inputs.steps_per_epoch,
                  evaluate=lambda: evaluate(eval_step, inputs.eval_epoch()[0], config.train.video_aggregate),
                  epoch_report=lambda: data_report(streams[-1].report, inputs.pool.restarts),
                  describe_batch=(lambda batch: debug_lib.describe_batch(batch, model)) if config.train.debug else None,
                  images=visualize.clip_images)
    if dist.is_chief():                         # elastic: rank 0 may now be another process
        export(model, os.path.join(workdir, "export"), config.clip, list(inputs.class_names))
        log.info("exported SavedModel to %s", os.path.join(workdir, "export"))
    inputs.close()
    return metrics, model


def data_report(report, restarts: int = 0) -> dict:
    """The epoch's data counts summed over ranks (a collective: every rank calls it); `restarts`: this
    rank's decode actors restarted by Ray so far."""
    reports, restarted = zip(*dist.gather_objects((report, restarts)))
    failed = [f for r in reports for f in r.failed]
    return {"clips_read": sum(r.clips_read for r in reports), "clips_failed": len(failed),
            "clips_replaced": sum(r.replaced for r in reports), "failed": failed, "restarts": sum(restarted)}


def check_workdir(workdir: str, min_free_mb: int = 100, collective: bool = True) -> None:
    """Fails on every rank, before any training, when rank 0 cannot write to `workdir` or it is nearly full
    (collective=False: fails on rank 0 alone, without a collective)."""
    problem = ""
    if dist.is_chief():
        try:
            os.makedirs(workdir, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
                pass
            free_mb = shutil.disk_usage(workdir).free // (1 << 20)
            if free_mb < min_free_mb:
                problem = f"only {free_mb} MiB free there (checkpoints need at least {min_free_mb} MiB)"
        except OSError as error:
            problem = f"it is not writable ({error.strerror or error})"
    fine = dist.all_agree(not problem) if collective else not problem
    if not fine:
        raise config_lib.ConfigError(f"workdir {workdir!r}: {problem or 'rank 0 cannot write it'}; "
                                     "choose another --workdir or free space")


def fit(model: keras.Model, train: config_lib.TrainConfig, workdir: str, batches: Callable[[int, int], Iterable],
        steps_per_epoch: int, *, loss: Callable | None = None, evaluate: Callable[[], dict] | None = None,
        epoch_report: Callable[[], dict] | None = None, describe_batch: Callable | None = None,
        images: Callable | None = None) -> dict:
    """The loop for any Keras model: `train`'s optimizer, schedule, checkpoints, resume, logging and NaN guard.

    batches(epoch, from_step) gives one epoch's (inputs, labels[, weights]) batches of this rank, starting
    at step `from_step` of the epoch (used when resuming mid-epoch); every rank must yield exactly
    `steps_per_epoch` batches. With train.elastic it is called again after every reset and must shard by
    the current dist.rank() / dist.size(). loss(labels, outputs, weights) -> mean loss (default:
    cross-entropy on logits). evaluate() -> held-out metrics, exact over ranks; epoch_report() -> extra
    fields for the epoch record. images(batch) -> {name: uint8 (N, H, W, 3)} for TensorBoard, from each epoch's
    first batch. Returns the last evaluation (the same dict on every rank).
    """
    # ------------------------------------------------------------------ distribution (marked: Horovod)
    dist.init()

    # ------------------------------------------------------------------ optimizer (lr x world size: set per run)
    schedule = learning_rate_schedule(train, train.lr, steps_per_epoch)
    optimizer = make_optimizer(train, schedule, loss_scale=computes_in_float16(model))   # float16 compute: scaling
    optimizer.build(model.trainable_variables)  # create slots now, so they can be restored and broadcast

    def run(state) -> dict:
        """Trains from state.step to the end; in elastic mode run again, whole, after every reset."""
        chief = dist.is_chief()                      # after an elastic reset rank 0 may be another process
        check_workdir(workdir)
        local_batch = local_batch_size(train.global_batch, dist.size())
        schedule.peak = train.lr * (dist.size() if train.scale_lr_with_world else 1)   # Horovod: scale by world
        # Traced anew for this world: a step traced at size 1 holds no allreduce.
        train_step = make_train_step(model, optimizer, step_options(train, local_batch), loss=loss)
        checkpoints = Checkpoints(workdir, model, optimizer, keep=train.keep_checkpoints)
        runlog = RunLog(workdir, enabled=chief)
        try:
            return train_epochs(state, train_step, checkpoints, runlog, chief)
        finally:
            runlog.close()

    def train_epochs(state, train_step, checkpoints: Checkpoints, runlog: RunLog, chief: bool) -> dict:
        metrics = {}
        while state.step < train.epochs * steps_per_epoch:
            epoch = state.step // steps_per_epoch
            first = state.step - epoch * steps_per_epoch       # > 0 when resuming mid-epoch
            progress = tqdm(total=steps_per_epoch, initial=first, disable=not chief,
                            desc=f"epoch {epoch + 1}/{train.epochs}", unit="step", dynamic_ncols=True)
            epoch_start, waited, ran = time.perf_counter(), 0.0, 0
            examples = iter(batches(epoch, first))
            while True:
                wait_start = time.perf_counter()
                batch = next(examples, None)
                waited += time.perf_counter() - wait_start
                if batch is None:
                    break
                if describe_batch is not None and not ran:
                    log.info(describe_batch(batch))
                if images is not None and not ran and chief:
                    runlog.images(state.step, images(batch))
                loss_value = float(train_step(*batch))
                if not math.isfinite(loss_value) and train.on_nonfinite == "skip":
                    log.warning("loss is %s at step %d: update skipped on every rank", loss_value, state.step + 1)
                elif not math.isfinite(loss_value):   # same value on every rank: all stop together, no hang
                    raise NonFiniteLossError(f"loss is {loss_value} at step {state.step + 1} (epoch {epoch + 1}) (a "
                                             "non-finite gradient counts as a NaN loss); lower train.lr or check "
                                             "the data. The last good checkpoint is kept.")
                state.step += 1
                if math.isfinite(loss_value):          # plain numbers: a commit keeps a copy of them
                    state.loss_sum, state.finite_steps = state.loss_sum + loss_value, state.finite_steps + 1
                else:
                    state.skipped_steps += 1
                ran += 1
                elapsed = time.perf_counter() - epoch_start
                progress.set_postfix(loss=f"{loss_value:.4f}", ex_s=f"{ran * train.global_batch / elapsed:.1f}",
                                     data_wait=f"{waited / elapsed:.0%}")
                progress.update()
                runlog.scalars(state.step, {"train/loss": loss_value, "train/lr": float(optimizer.learning_rate)})
                if train.checkpoint_every and state.step % train.checkpoint_every == 0:
                    checkpoints.save(state.step)
                if state.step % train.elastic_commit_every == 0 and state.step % steps_per_epoch:
                    state.commit()   # elastic: a point to roll back to and to take host changes (epoch end: below)
            progress.close()
            if state.step != (epoch + 1) * steps_per_epoch:
                raise RuntimeError(f"epoch {epoch + 1} gave {ran} batches, expected {steps_per_epoch - first}: "
                                   "every rank must yield exactly steps_per_epoch batches")
            checkpoints.save(state.step)
            metrics = end_of_epoch(state, epoch, ran, time.perf_counter() - epoch_start, waited, runlog)
            for name, start in EPOCH_LOSS_START.items():
                setattr(state, name, start)
            state.commit()
        if not metrics and evaluate is not None:   # resumed after the last epoch: nothing trained, still report
            metrics = evaluate()
        runlog.record("final", step=state.step, total_steps=train.epochs * steps_per_epoch,
                      **{f"val_{k}": v for k, v in metrics.items()})
        return metrics

    def end_of_epoch(state, epoch: int, ran: int, elapsed: float, waited: float, runlog: RunLog) -> dict:
        """Evaluates, then rank 0 appends the epoch's record to metrics.jsonl (and TensorBoard)."""
        metrics = evaluate() if evaluate is not None else {}
        summary = {"epoch": epoch + 1, "step": state.step, "steps": steps_per_epoch, "world_size": dist.size(),
                   "resets": state.resets,
                   "train_loss": state.loss_sum / state.finite_steps if state.finite_steps else None,
                   "skipped_steps": state.skipped_steps,
                   **{f"val_{name}": value for name, value in metrics.items()},
                   "clips_per_s": round(ran * train.global_batch / elapsed, 2),
                   "data_wait_share": round(waited / elapsed, 4),
                   **(epoch_report() if epoch_report is not None else {})}
        runlog.record("epoch", **summary)
        runlog.scalars(state.step, {f"val/{name}": value for name, value in metrics.items() if _is_number(value)}
                       | {"train/clips_per_s": summary["clips_per_s"],
                          "train/data_wait_share": summary["data_wait_share"]})
        log.info("epoch %d/%d: %s", epoch + 1, train.epochs,
                 ", ".join(f"{k} {_short(v)}" for k, v in summary.items() if k not in ("epoch", "failed")))
        return metrics

    # ------------------------------------------------------------------ resume, then run (elastic or not)
    if not train.elastic:
        check_workdir(workdir)   # before the restore: a CheckpointManager reads the workdir as it is built
        step = Checkpoints(workdir, model, optimizer).restore_or_initialize()   # + broadcast (marked: Horovod)
        return run(LocalState(step=step, resets=0, **EPOCH_LOSS_START))
    # Elastic: rank 0 restores alone; elastic.run's first sync broadcasts weights and step to every rank
    # (a collective here would deadlock a rank that joins later, while the others are inside sync).
    state = dist.KerasState(list(model.variables) + list(optimizer.variables),
                            step=Checkpoints(workdir, model, optimizer).restore_on_chief(), resets=0,
                            **EPOCH_LOSS_START)
    state.register_reset_callbacks([lambda: count_reset(state)])
    return dist.run_elastic(run, state)


EPOCH_LOSS_START = {"loss_sum": 0.0, "finite_steps": 0, "skipped_steps": 0}   # the epoch's running loss totals


class LocalState:
    """What a non-elastic run keeps of dist.KerasState: the same attributes, and nothing to commit."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)

    def commit(self) -> None:
        pass


def count_reset(state) -> None:
    """Elastic reset callback (every surviving rank, before the sync): count it in the committed state."""
    state.resets += 1
    state.save_attributes()
    log.warning("elastic reset %d: continuing from step %d with the ranks that are left or added",
                state.resets, state.step)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
