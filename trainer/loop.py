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
import numpy as np
from tqdm import tqdm

from twostream.models.registry import build_model
from twostream.trainer import config as config_lib
from twostream.trainer import debug as debug_lib
from twostream.trainer import dist
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


def make_optimizer(train: config_lib.TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=train.momentum, weight_decay=train.weight_decay)
    raise config_lib.ConfigError(f"train.optimizer must be 'adamw' or 'sgd', got {train.optimizer!r}")


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
    check_workdir(workdir)
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
        dataset, stream = inputs.train_epoch(epoch, from_step)
        streams.append(stream)
        return dataset

    # ------------------------------------------------------------------ the loop, then export
    metrics = fit(model, config.train, workdir, train_batches, inputs.steps_per_epoch,
                  evaluate=lambda: evaluate(eval_step, inputs.eval_epoch()[0], config.train.video_aggregate),
                  epoch_report=lambda: data_report(streams[-1].report),
                  describe_batch=(lambda batch: debug_lib.describe_batch(batch, model)) if config.train.debug else None)
    if chief:
        export(model, os.path.join(workdir, "export"), config.clip, list(inputs.class_names))
        log.info("exported SavedModel to %s", os.path.join(workdir, "export"))
    inputs.close()
    return metrics, model


def data_report(report) -> dict:
    """The epoch's data counts summed over ranks (a collective: every rank calls it)."""
    reports = dist.gather_objects(report)
    failed = [f for r in reports for f in r.failed]
    return {"clips_read": sum(r.clips_read for r in reports), "clips_failed": len(failed),
            "clips_replaced": sum(r.replaced for r in reports), "failed": failed}


def check_workdir(workdir: str, min_free_mb: int = 100) -> None:
    """Fails on every rank, before any training, when rank 0 cannot write to `workdir` or it is nearly full."""
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
    if not dist.all_agree(not problem):
        raise config_lib.ConfigError(f"workdir {workdir!r}: {problem or 'rank 0 cannot write it'}; "
                                     "choose another --workdir or free space")


def fit(model: keras.Model, train: config_lib.TrainConfig, workdir: str, batches: Callable[[int, int], Iterable],
        steps_per_epoch: int, *, loss: Callable | None = None, evaluate: Callable[[], dict] | None = None,
        epoch_report: Callable[[], dict] | None = None, describe_batch: Callable | None = None) -> dict:
    """The loop for any Keras model: `train`'s optimizer, schedule, checkpoints, resume, logging and NaN guard.

    batches(epoch, from_step) gives one epoch's (inputs, labels[, weights]) batches of this rank, starting
    at step `from_step` of the epoch (used when resuming mid-epoch); every rank must yield exactly
    `steps_per_epoch` batches. loss(labels, outputs, weights) -> mean loss (default: cross-entropy on
    logits). evaluate() -> held-out metrics, exact over ranks; epoch_report() -> extra fields for the epoch
    record. Returns the last evaluation (the same dict on every rank).
    """
    # ------------------------------------------------------------------ distribution (marked: Horovod)
    dist.init()
    chief = dist.is_chief()
    check_workdir(workdir)
    runlog = RunLog(workdir, enabled=chief)
    local_batch = train.global_batch // dist.size()

    # ------------------------------------------------------------------ optimizer and update step
    peak_lr = train.lr * (dist.size() if train.scale_lr_with_world else 1)   # Horovod: scale by world size
    optimizer = make_optimizer(train, learning_rate_schedule(train, peak_lr, steps_per_epoch))
    optimizer.build(model.trainable_variables)  # create slots now, so they can be restored and broadcast
    train_step = make_train_step(model, optimizer, step_options(train, local_batch), loss=loss)

    # ------------------------------------------------------------------ checkpoint: resume, then broadcast
    checkpoints = Checkpoints(workdir, model, optimizer, keep=train.keep_checkpoints)
    step = checkpoints.restore_or_initialize()  # every rank now holds rank 0's weights (marked: Horovod)
    metrics = {}

    # ------------------------------------------------------------------ training loop
    for epoch in range(step // steps_per_epoch, train.epochs):
        first = step - epoch * steps_per_epoch       # > 0 when resuming mid-epoch
        progress = tqdm(total=steps_per_epoch, initial=first, disable=not chief,
                        desc=f"epoch {epoch + 1}/{train.epochs}", unit="step", dynamic_ncols=True)
        epoch_start, waited, losses = time.perf_counter(), 0.0, []
        examples = iter(batches(epoch, first))
        while True:
            wait_start = time.perf_counter()
            batch = next(examples, None)
            waited += time.perf_counter() - wait_start
            if batch is None:
                break
            if describe_batch is not None and not losses:
                log.info(describe_batch(batch))
            loss_value = float(train_step(*batch))
            if not math.isfinite(loss_value) and train.on_nonfinite == "skip":
                log.warning("loss is %s at step %d: update skipped on every rank", loss_value, step + 1)
            elif not math.isfinite(loss_value):   # same value on every rank: all stop together, no hang
                raise NonFiniteLossError(f"loss is {loss_value} at step {step + 1} (epoch {epoch + 1}); lower "
                                         "train.lr or check the data. The last good checkpoint is kept.")
            step += 1
            losses.append(loss_value)
            elapsed = time.perf_counter() - epoch_start
            progress.set_postfix(loss=f"{loss_value:.4f}", ex_s=f"{len(losses) * train.global_batch / elapsed:.1f}",
                                 data_wait=f"{waited / elapsed:.0%}")
            progress.update()
            runlog.scalars(step, {"train/loss": loss_value, "train/lr": float(optimizer.learning_rate)})
            if train.checkpoint_every and step % train.checkpoint_every == 0:
                checkpoints.save(step)
        progress.close()
        if len(losses) != steps_per_epoch - first:
            raise RuntimeError(f"epoch {epoch + 1} gave {len(losses)} batches, expected {steps_per_epoch - first}: "
                               "every rank must yield exactly steps_per_epoch batches")
        checkpoints.save(step)

        # -------------------------------------------------------------- end of epoch: evaluate and report
        elapsed = time.perf_counter() - epoch_start
        metrics = evaluate() if evaluate is not None else {}
        finite = [x for x in losses if math.isfinite(x)]
        summary = {"epoch": epoch + 1, "step": step, "world_size": dist.size(),
                   "train_loss": float(np.mean(finite)) if finite else None, "skipped_steps": len(losses) - len(finite),
                   **{f"val_{name}": value for name, value in metrics.items()},
                   "clips_per_s": round(len(losses) * train.global_batch / elapsed, 2),
                   "data_wait_share": round(waited / elapsed, 4),
                   **(epoch_report() if epoch_report is not None else {})}
        runlog.record("epoch", **summary)
        runlog.scalars(step, {f"val/{name}": value for name, value in metrics.items() if _is_number(value)}
                       | {"train/clips_per_s": summary["clips_per_s"],
                          "train/data_wait_share": summary["data_wait_share"]})
        log.info("epoch %d/%d: %s", epoch + 1, train.epochs,
                 ", ".join(f"{k} {_short(v)}" for k, v in summary.items() if k not in ("epoch", "failed")))

    # ------------------------------------------------------------------ final record
    if not metrics and evaluate is not None:   # resumed after the last epoch: nothing trained, still report
        metrics = evaluate()
    runlog.record("final", step=step, total_steps=train.epochs * steps_per_epoch,
                  **{f"val_{k}": v for k, v in metrics.items()})
    runlog.close()
    return metrics


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
