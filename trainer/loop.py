"""The training loop: one function that reads top to bottom, from Horovod start-up to the exported model."""
from __future__ import annotations

import logging
import math
import os
import time

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
    """Trains config's model on config's data, checkpointing to and resuming from `workdir`.

    Returns (final validation metrics, trained model); the metrics are the same dict on every rank."""
    # ------------------------------------------------------------------ distribution (marked: Horovod)
    dist.init()
    chief = dist.is_chief()                     # rank 0 alone logs, checkpoints and exports
    setup_logging(chief)
    keras.utils.set_random_seed(config.train.seed)
    if config.train.debug:
        debug_lib.enable_determinism()
    if chief:
        os.makedirs(workdir, exist_ok=True)
        config_lib.save(config, os.path.join(workdir, "config.yaml"))
    runlog = RunLog(workdir, enabled=chief)

    # ------------------------------------------------------------------ input pipeline
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    steps_per_epoch = inputs.steps_per_epoch
    log.info("%d train / %d validation clips, %d classes %s; %d ranks x %d clips per step, %d steps per epoch",
             len(inputs.train_records), len(inputs.val_records), len(inputs.class_names), list(inputs.class_names),
             dist.size(), inputs.local_batch, steps_per_epoch)

    # ------------------------------------------------------------------ model and optimizer
    model = build_model(config.model, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
    peak_lr = config.train.lr * (dist.size() if config.train.scale_lr_with_world else 1)  # Horovod: scale by world
    optimizer = make_optimizer(config.train, learning_rate_schedule(config.train, peak_lr, steps_per_epoch))
    optimizer.build(model.trainable_variables)  # create slots now, so they can be restored and broadcast
    train_step = make_train_step(model, optimizer, step_options(config.train, inputs.local_batch))
    eval_step = make_eval_step(model, eager=config.train.eager)

    # ------------------------------------------------------------------ checkpoint: resume, then broadcast
    checkpoints = Checkpoints(workdir, model, optimizer, keep=config.train.keep_checkpoints)
    step = checkpoints.restore_or_initialize()  # every rank now holds rank 0's weights (marked: Horovod)
    total_steps = config.train.epochs * steps_per_epoch
    metrics = {}

    # ------------------------------------------------------------------ training loop
    for epoch in range(step // steps_per_epoch, config.train.epochs):
        dataset, stream = inputs.train_epoch(epoch, from_step=step - epoch * steps_per_epoch)
        progress = tqdm(total=steps_per_epoch, initial=step - epoch * steps_per_epoch, disable=not chief,
                        desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="step", dynamic_ncols=True)
        epoch_start, waited, losses = time.perf_counter(), 0.0, []
        batches = iter(dataset)
        while True:
            wait_start = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - wait_start
            if batch is None:
                break
            if config.train.debug and not losses:
                log.info(debug_lib.describe_batch(batch, model))
            loss = float(train_step(*batch))
            if not math.isfinite(loss) and config.train.on_nonfinite == "skip":
                log.warning("loss is %s at step %d: update skipped on every rank", loss, step + 1)
            elif not math.isfinite(loss):      # same value on every rank: all stop together, no hang
                raise NonFiniteLossError(f"loss is {loss} at step {step + 1} (epoch {epoch + 1}); lower "
                                         "train.lr or check the data. The last good checkpoint is kept.")
            step += 1
            losses.append(loss)
            elapsed = time.perf_counter() - epoch_start
            progress.set_postfix(loss=f"{loss:.4f}", clips_s=f"{len(losses) * config.train.global_batch / elapsed:.1f}",
                                 data_wait=f"{waited / elapsed:.0%}")
            progress.update()
            runlog.scalars(step, {"train/loss": loss, "train/lr": float(optimizer.learning_rate)})
            if config.train.checkpoint_every and step % config.train.checkpoint_every == 0:
                checkpoints.save(step)
        progress.close()
        checkpoints.save(step)

        # -------------------------------------------------------------- end of epoch: evaluate and report
        elapsed = time.perf_counter() - epoch_start
        eval_dataset, _ = inputs.eval_epoch()
        metrics = evaluate(eval_step, eval_dataset)
        reports = dist.gather_objects(stream.report)
        failed = [f for r in reports for f in r.failed]
        summary = {"epoch": epoch + 1, "step": step, "world_size": dist.size(),
                   "train_loss": float(np.mean(finite)) if (finite := [x for x in losses if math.isfinite(x)]) else None,
                   "skipped_steps": len(losses) - len(finite),
                   "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"], "val_clips": metrics["clips"],
                   "clips_per_s": round(len(losses) * config.train.global_batch / elapsed, 2),
                   "data_wait_share": round(waited / elapsed, 4),
                   "clips_read": sum(r.clips_read for r in reports), "clips_failed": len(failed),
                   "clips_replaced": sum(r.replaced for r in reports), "failed": failed}
        runlog.record("epoch", **summary)
        runlog.scalars(step, {"val/loss": metrics["loss"], "val/accuracy": metrics["accuracy"],
                              "train/clips_per_s": summary["clips_per_s"], "train/data_wait_share": summary["data_wait_share"]})
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.3f (%d clips), %.1f clips/s, "
                 "%d clips failed", epoch + 1, config.train.epochs, summary["train_loss"] or float("nan"),
                 metrics["loss"], metrics["accuracy"], metrics["clips"], summary["clips_per_s"], len(failed))

    # ------------------------------------------------------------------ final evaluation and export
    if not metrics:   # resumed after the last epoch: nothing trained, still report and export
        metrics = evaluate(eval_step, inputs.eval_epoch()[0])
    if chief:
        export(model, os.path.join(workdir, "export"), config.clip, list(inputs.class_names))
        log.info("exported SavedModel to %s", os.path.join(workdir, "export"))
    runlog.record("final", step=step, total_steps=total_steps, **{f"val_{k}": v for k, v in metrics.items()})
    runlog.close()
    inputs.close()
    return metrics, model
