"""The two-stream video task and `train`, the `twostream train` command's body: config -> inputs, model, loop, export."""
from __future__ import annotations

import logging
import os

import keras

from twostream.models.registry import build_model
from twostream.trainer import config as config_lib
from twostream.trainer import debug as debug_lib
from twostream.trainer import dist, loop, visualize
from twostream.trainer.checkpoint import Checkpoints, check_workdir
from twostream.trainer.evaluate import evaluate
from twostream.trainer.export import export
from twostream.trainer.inputs import Inputs
from twostream.trainer.runlog import setup_logging
from twostream.trainer.step import make_eval_step
from twostream.trainer.task import Task

log = logging.getLogger("twostream")
EXPORT, EXPORT_LAST = "export", "export_last"   # under the workdir: the best model (or the last), and the last


class VideoTask(Task):
    """Clips decoded by this rank's Ray actors (trainer/inputs.py) into config's two-stream model."""

    def __init__(self, config: config_lib.Config):
        self.config = config
        self.inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
        self.steps_per_epoch = self.inputs.steps_per_epoch
        # seeded here, after Ray started (it draws from Python's random, which Keras' initialisers are seeded
        # from), so the first weights are the same whether this process started, joined or already had a Ray
        keras.utils.set_random_seed(config.train.seed)
        self.model = build_model(config.model, len(self.inputs.class_names), config.clip.rgb_shape,
                                 config.clip.flow_shape)
        self.eval_step = make_eval_step(self.model, eager=config.train.eager)
        self.stream = None   # this epoch's EpochStream, whose report says what was read, failed and replaced

    def batches(self, epoch: int, from_step: int):
        self.inputs.reshard(dist.rank(), dist.size())   # the world may have changed (elastic reset)
        dataset, self.stream = self.inputs.train_epoch(epoch, from_step)
        return dataset

    def evaluate(self) -> dict:
        return evaluate(self.eval_step, self.inputs.eval_epoch()[0], self.config.eval.video_aggregate)

    def epoch_fields(self) -> dict:
        return data_report(self.stream.report, self.inputs.pool.restarts)

    def images(self, batch) -> dict:
        return visualize.clip_images(batch)

    def describe(self, batch) -> str:
        return debug_lib.describe_batch(batch, self.model)

    def close(self) -> None:
        self.inputs.close()


def data_report(report, restarts: int = 0) -> dict:
    """The epoch's data counts summed over ranks (a collective: every rank calls it); `restarts`: this
    rank's decode actors restarted by Ray so far."""
    reports, restarted = zip(*dist.gather_objects((report, restarts)))
    failed = [f for r in reports for f in r.failed]
    return {"clips_read": sum(r.clips_read for r in reports), "clips_failed": len(failed),
            "clips_replaced": sum(r.replaced for r in reports), "failed": failed, "restarts": sum(restarted),
            "videos_without_box": len(set().union(*(r.without_box for r in reports)))}


def train(config: config_lib.Config, workdir: str) -> tuple[dict, keras.Model]:
    """Trains config's model on config's video data, checkpointing to and resuming from `workdir`; rank 0
    exports the best model to WORKDIR/export and the last to WORKDIR/export_last.

    Returns (final validation metrics, trained model at its last step); the metrics are the same dict on every
    rank, with "best" naming the selected epoch. Raises preemption.Preempted when stopped by a signal."""
    dist.init()                                 # (marked: Horovod) a world of one, or of N under horovodrun
    setup_logging(dist.is_chief())         # rank 0 alone logs, checkpoints and exports
    if config.train.debug:
        debug_lib.enable_determinism()
    check_workdir(workdir, collective=not config.train.elastic)   # before Ray starts
    if dist.is_chief():
        config_lib.save(config, os.path.join(workdir, "config.yaml"))
    task = VideoTask(config)
    try:
        log.info("%d train / %d validation clips, %d classes %s; global batch %d over %d ranks, %d steps per epoch",
                 len(task.inputs.train_records), len(task.inputs.val_records), len(task.inputs.class_names),
                 list(task.inputs.class_names), config.train.global_batch, dist.size(), task.steps_per_epoch)
        metrics = loop.run(task, config.train, workdir)
    finally:
        task.close()
    if dist.is_chief():                         # elastic: rank 0 may now be another process
        export_best_and_last(task.model, workdir, config, list(task.inputs.class_names))
    return metrics, task.model


def export_best_and_last(model: keras.Model, workdir: str, config: config_lib.Config, class_names: list[str]) -> None:
    """WORKDIR/export_last: the model as it is; WORKDIR/export: the best checkpoint's weights (the last when
    there is no best). The model's own weights are left as they were."""
    export(model, os.path.join(workdir, EXPORT_LAST), config.clip, class_names)
    checkpoints = Checkpoints(workdir, model, optimizer=None)
    if checkpoints.latest_best is None:
        export(model, os.path.join(workdir, EXPORT), config.clip, class_names)
    else:
        last = [v.numpy() for v in model.variables]
        checkpoints.restore_on_chief(best=True)
        export(model, os.path.join(workdir, EXPORT), config.clip, class_names)
        for variable, value in zip(model.variables, last):
            variable.assign(value)
    log.info("exported SavedModels: %s (best) and %s (last)", os.path.join(workdir, EXPORT),
             os.path.join(workdir, EXPORT_LAST))
