"""The two-stream video task and `train`, the `twostream train` command's body: config -> inputs, model, loop,
export."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import keras

from twostream.data.distributed.pipeline import DataError
from twostream.models.precision import BFLOAT16_ON_CPU, bfloat16_on_onednn_cpu
from twostream.models.registry import build_model
from twostream.trainer import config as config_lib
from twostream.trainer import dist
from twostream.trainer.engine import debug as debug_lib
from twostream.trainer.engine import loop
from twostream.trainer.engine.checkpoint import LATEST, Checkpoints, check_workdir
from twostream.trainer.engine.errors import RunError
from twostream.trainer.engine.runlog import setup_logging
from twostream.trainer.engine.step import make_eval_step
from twostream.trainer.engine.task import Task
from twostream.trainer.runtime.preemption import Interrupted, catch_interrupts, raise_if_interrupted
from twostream.trainer.video import visualize
from twostream.trainer.video.evaluate import evaluate
from twostream.trainer.video.export import export
from twostream.trainer.video.inputs import EpochData, Inputs

log = logging.getLogger("twostream")
EXPORT, EXPORT_LAST = "export", "export_last"  # under the workdir: the best model (or the last), and the last
CONFIG_FILE = "config.yaml"  # the resolved config, written once the run has restored and can start
# the settings that give a checkpoint its variables and shapes: a resume must keep them
SHAPE_SETTINGS = {"model": ("name", "width", "depth", "fusion"), "clip": ("rgb_shape", "flow_shape")}


class VideoTask(Task):
    """Clips decoded by this rank's Ray actors (trainer/video/inputs.py) into config's two-stream model."""

    def __init__(self, config: config_lib.Config):
        self.config = config
        self.inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
        self.inputs.look_ahead = True  # each epoch is followed by its validation, and that by the next epoch
        self.steps_per_epoch = self.inputs.steps_per_epoch
        # seeded here, after Ray started (it draws from Python's random, which Keras' initialisers are seeded
        # from), so the first weights are the same whether this process started, joined or already had a Ray
        keras.utils.set_random_seed(config.train.seed)
        self.model = build_model(
            config.model, len(self.inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape
        )
        if bfloat16_on_onednn_cpu(config.model.precision) and dist.is_chief():
            log.warning(BFLOAT16_ON_CPU)
        self.eval_step = make_eval_step(self.model, eager=config.train.eager)
        self.val_stream = None  # the last evaluation's EpochStream: its failures go in the epoch record
        self.workdir = ""  # where begin() writes config.yaml; "" for none

    def begin(self, step: int) -> None:
        """The checkpoint is restored and fits: the run can start, so rank 0 writes the resolved config now."""
        if self.workdir and dist.is_chief():
            config_lib.save(self.config, os.path.join(self.workdir, CONFIG_FILE))

    def batches(self, epoch: int, from_step: int) -> EpochData:
        self.inputs.reshard(dist.rank(), dist.size())  # the world may have changed (elastic reset)
        dataset, _ = self.inputs.train_epoch(epoch, from_step)
        return dataset  # it carries the epoch's report, which the loop hands back to epoch_fields

    def evaluate(self) -> dict:
        dataset, self.val_stream = self.inputs.eval_epoch()
        return evaluate(self.eval_step, dataset, self.config.eval.video_aggregate)

    def epoch_fields(self, batches: Iterable) -> dict:
        assert isinstance(batches, EpochData), "the loop hands back what this task's batches() returned"
        fields = data_report(batches.report, self.inputs.pool.restarts)
        if self.val_stream is not None:  # validation's unreadable clips (scored as none: weight 0)
            val_failed = [f for r in dist.gather_objects(self.val_stream.report) for f in r.failed]
            fields |= {"val_clips_failed": len(val_failed), "val_failed": val_failed}
        return fields

    def advise(self, record: dict) -> list[str]:
        advice = slow_data_advice(
            record,
            self.config.train.global_batch,
            len(self.inputs.pool.actors),
            bool(self.config.data.flow_cache_folder()),
        )
        return [advice] if advice else []

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
    return {
        "clips_read": sum(r.clips_read for r in reports),
        "clips_failed": len(failed),
        "clips_replaced": sum(r.replaced for r in reports),
        "failed": failed,
        "restarts": sum(restarted),
        "videos_without_box": len(set().union(*(r.without_box for r in reports))),
        "videos_read_sequentially": len(set().union(*(r.sequential for r in reports))),
        "decoded_mb_from_other_nodes": round(sum(r.pool.remote_bytes for r in reports) / 1e6, 3),
        "calls_without_slot": sum(r.pool.calls_without_slot for r in reports),
        **mean_timings([r.timings() for r in reports]),
    }


def mean_timings(per_rank: list[dict]) -> dict:
    """The ranks' data-path timings (EpochReport.timings): rates summed over ranks, the least of the minima, the
    rest (shares) averaged."""
    merged = {}
    for key in per_rank[0]:
        values = [timings[key] for timings in per_rank if timings[key] is not None]
        merged[key] = (
            None
            if not values
            else min(values)
            if key.endswith("_min")
            else round(sum(values), 2)
            if key.endswith("_per_s")
            else round(sum(values) / len(values), 4)
        )
    return merged


WAIT_TO_ADVISE = 0.10  # a first epoch whose steps waited for data this share of the time gets a warning


def slow_data_advice(record: dict, global_batch: int, actors: int, flow_cached: bool) -> str:
    """Why the steps of the epoch of `record` waited for data, and what to change; "" when they hardly waited.
    Compares the clips per second the decode actors make when busy (decode_clips_per_s) with what the steps take
    (global_batch / step_ms)."""
    capacity, step_ms, waited = record.get("decode_clips_per_s"), record.get("step_ms"), record["data_wait_share"]
    if waited < WAIT_TO_ADVISE or not capacity or not step_ms:
        return ""
    wanted = global_batch * 1000 / step_ms
    said = (
        f"epoch {record['epoch']}: the steps waited for data {waited:.0%} of the time; the decode actors make "
        f"{capacity:.0f} clips/s when busy, the steps take {wanted:.0f}"
    )
    if capacity >= wanted:
        return (
            f"{said}, so the wait is in the hand-off, not the decoding: see driver_share and "
            "calls_in_flight_min in metrics.jsonl (docs/data-performance.md)"
        )
    fixes = [f"raise data.num_actors ({actors} per rank now, each needs a core of its own)"]
    if not flow_cached:
        fixes.append("precompute the flow (twostream prepare; docs/data.md#flow-cache)")
    return f"{said}: " + " or ".join(fixes) + ", or train on smaller clips"


def train(config: config_lib.Config, workdir: str) -> tuple[dict, keras.Model]:
    """Trains config's model on config's video data, checkpointing to and resuming from `workdir`; rank 0
    exports the best model to WORKDIR/export and the last to WORKDIR/export_last.

    Returns (final validation metrics, trained model at its last step); the metrics are the same dict on every
    rank, with "best" naming the selected epoch. Raises preemption.Preempted when stopped by a signal."""
    dist.init()  # (marked: Horovod) a world of one, or of N under horovodrun
    setup_logging(dist.is_chief())  # rank 0 alone logs, checkpoints and exports
    if config.train.debug:
        debug_lib.enable_determinism()
    check_workdir(workdir, collective=not config.train.elastic)  # before Ray starts
    check_resume(config, workdir, collective=not config.train.elastic)  # before anything in the workdir changes
    catch_interrupts()
    task = None
    try:
        task = VideoTask(config)
        task.workdir = workdir
        raise_if_interrupted()
        log.info(
            "%d train / %d validation clips, %d classes %s; global batch %d over %d ranks, %d steps per epoch",
            len(task.inputs.train_records),
            len(task.inputs.val_records),
            len(task.inputs.class_names),
            list(task.inputs.class_names),
            config.train.global_batch,
            dist.size(),
            task.steps_per_epoch,
        )
        metrics = loop.run(task, config.train, workdir)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(workdir)) from None
    except DataError as error:  # raised in the data pipeline; its message names the files
        raise RunError(str(error)) from None
    finally:
        if task is not None:
            task.close()
    if dist.is_chief():  # elastic: rank 0 may now be another process
        export_best_and_last(task.model, workdir, config, list(task.inputs.class_names))
    return metrics, task.model


def check_resume(config: config_lib.Config, workdir: str, collective: bool = True) -> None:
    """A ConfigError on every rank (collective=False: on rank 0 alone) when rank 0 finds that `workdir` holds
    checkpoints of another model or clip shape than `config`'s; nothing in the workdir is touched before."""
    problem = resume_problem(config, workdir) if dist.is_chief() else ""
    if not (dist.all_agree(not problem) if collective else not problem):
        raise config_lib.ConfigError(problem or "rank 0 refused to resume this workdir: see its message")


def resume_problem(config: config_lib.Config, workdir: str) -> str:
    """Why `workdir`'s checkpoints cannot be resumed with `config` (from its config.yaml), or ""."""
    saved_path = os.path.join(workdir, CONFIG_FILE)
    if not (os.path.isfile(saved_path) and os.path.isfile(os.path.join(workdir, LATEST, "checkpoint"))):
        return ""
    try:
        saved = config_lib.load(path=saved_path)
    except config_lib.ConfigError as error:  # another version's config: restoring still checks the shapes
        log.warning("%s cannot be compared with this run (%s)", saved_path, error)
        return ""
    settings = [(section, key) for section, keys in SHAPE_SETTINGS.items() for key in keys]
    differ = [
        f"{s}.{k} {_shown(saved, s, k)} there, {_shown(config, s, k)} here"
        for s, k in settings
        if _shown(saved, s, k) != _shown(config, s, k)
    ]
    if not differ:
        return ""
    return (
        f"workdir {workdir!r} holds checkpoints of model {describe_model(saved)}, not of this run's "
        f"{describe_model(config)} ({'; '.join(differ)}): resume with the settings in its {CONFIG_FILE}, or pass a "
        "new --workdir to train the other model"
    )


def describe_model(config: config_lib.Config) -> str:
    model = config.model
    return (
        f"{model.name} (width {model.width}, depth {model.depth}, fusion {model.fusion}, rgb clip "
        f"{'x'.join(map(str, config.clip.rgb_shape))})"
    )


def _shown(config: config_lib.Config, section: str, key: str) -> str:
    value = getattr(getattr(config, section), key)
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def interrupted_message(workdir: str) -> str:
    """The one line for a Ctrl-C: where the same command resumes from."""
    checkpoint = Checkpoints.latest_on_disk(workdir)
    where = f"its last checkpoint, {checkpoint}" if checkpoint else "scratch (no checkpoint was written yet)"
    return f"interrupted (Ctrl-C); run the same command again to resume {workdir} from {where}"


def export_best_and_last(model: keras.Model, workdir: str, config: config_lib.Config, class_names: list[str]) -> None:
    """WORKDIR/export_last: the model as it is; WORKDIR/export: the best checkpoint's weights (the last when
    there is no best). The model's own weights are left as they were."""
    export(model, os.path.join(workdir, EXPORT_LAST), config.clip, class_names, config.model)
    checkpoints = Checkpoints(workdir, model, optimizer=None)
    if checkpoints.latest_best is None:
        export(model, os.path.join(workdir, EXPORT), config.clip, class_names, config.model)
    else:
        last = [v.numpy() for v in model.variables]
        checkpoints.restore_on_chief(best=True)
        export(model, os.path.join(workdir, EXPORT), config.clip, class_names, config.model)
        for variable, value in zip(model.variables, last):
            variable.assign(value)
    log.info(
        "exported SavedModels: %s (best) and %s (last)",
        os.path.join(workdir, EXPORT),
        os.path.join(workdir, EXPORT_LAST),
    )
