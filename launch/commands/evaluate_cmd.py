"""`twostream evaluate`: a workdir's best (or latest) checkpoint on its held-out videos; eval.json, roc.png,
confusion.png.

The workdir's config.yaml says what was trained on and how to evaluate (the `eval` section); --set overrides
it. The checkpoint is WORKDIR/best (the epoch train.select_metric chose) when there is one, else the latest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from twostream.trainer import config as config_lib
from twostream.trainer.engine.errors import RunError
from twostream.trainer.video import charts, metrics

log = logging.getLogger("twostream")

REPORT_FILE, ROC_FILE, CONFUSION_FILE = "eval.json", "roc.png", "confusion.png"  # charts: also in TensorBoard


def evaluate_workdir(workdir: str, overrides: Sequence[str] = (), checkpoint: str = "best") -> dict:
    """Evaluates WORKDIR's `checkpoint` ("best", falling back to the latest when none was selected, or
    "latest"). Rank 0 writes eval.json (the flat metrics, then clip and video sections with confusion
    matrices, then every video's scores), roc.png and confusion.png. Returns the flat metrics, the
    checkpoint's step, which checkpoint it was, and the unreadable validation clips (`clips_failed`, `failed`)."""
    config_path = os.path.join(workdir, "config.yaml")
    if not os.path.isfile(config_path):
        raise config_lib.ConfigError(
            f"{workdir!r} holds no config.yaml: is it the --workdir of a `twostream train` run?"
        )
    config = config_lib.load(path=config_path, overrides=list(overrides))
    # TensorFlow, Horovod and Ray load only now: a bad config or workdir is refused at once
    from twostream.data.distributed.pipeline import DataError
    from twostream.models.registry import build_model
    from twostream.trainer import dist
    from twostream.trainer.engine.checkpoint import Checkpoints
    from twostream.trainer.engine.step import make_eval_step
    from twostream.trainer.video.evaluate import local_scores
    from twostream.trainer.video.inputs import Inputs

    dist.init()
    # before Ray starts: every rank stops, none hangs
    if not dist.all_agree(not dist.is_chief() or Checkpoints.latest_on_disk(workdir) is not None):
        raise config_lib.ConfigError(f"{workdir!r} has no checkpoint yet; train first")
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    try:
        spec = dataclasses.replace(config.model, pretrained="")  # the checkpoint holds every weight: no ImageNet file
        model = build_model(spec, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
        checkpoints = Checkpoints(workdir, model, optimizer=None)
        best = checkpoint == "best" and dist.all_agree(not dist.is_chief() or whole_best(checkpoints))
        step = checkpoints.restore_or_initialize(best=best)
        dataset, stream = inputs.eval_epoch()
        scores = metrics.gather(local_scores(make_eval_step(model, eager=config.train.eager), dataset))
        failed = [f for report in dist.gather_objects(stream.report) for f in report.failed]
    except DataError as error:  # more unreadable validation clips than data.max_failed_fraction allows
        raise RunError(str(error)) from None
    finally:
        inputs.close()
    sections = metrics.report(scores, config.eval.video_aggregate)
    summary = {
        **metrics.flat(sections),
        "step": step,
        "checkpoint": "best" if best else "latest",
        "clips_failed": len(failed),
        "failed": failed,
    }  # unreadable clips: not scored
    if dist.is_chief():
        write_report(
            workdir,
            summary,
            sections,
            scores,
            [r.path for r in inputs.val_records],
            list(inputs.class_names),
            config.eval,
        )
    return summary


def whole_best(checkpoints) -> bool:
    """Whether WORKDIR/best holds a checkpoint that reads back whole (a damaged one: a warning, then the latest)."""
    from twostream.trainer.engine.checkpoint import damage

    if checkpoints.latest_best is None:
        return False
    if problem := damage(checkpoints.latest_best):
        log.warning(
            "the best checkpoint %s is damaged (%s): evaluating the latest instead", checkpoints.latest_best, problem
        )
        return False
    return True


def write_report(
    workdir: str,
    summary: dict,
    sections: dict,
    scores: metrics.Scores,
    paths: list[str],
    class_names: list[str],
    settings: config_lib.EvalConfig,
) -> None:
    records, labels, probabilities = metrics.by_video(scores, settings.video_aggregate)
    clips_per_video = np.bincount(scores.records, minlength=len(paths))
    per_video = [
        {
            "path": paths[r],
            "label": class_names[label],
            "prediction": class_names[int(np.argmax(p))],
            "probabilities": dict(zip(class_names, p.tolist())),
            "clips": int(clips_per_video[r]),
        }
        for r, label, p in zip(records, labels, probabilities)
    ]
    positive = class_names[1] if len(class_names) == 2 else None  # the class that ROC-AUC and EER score
    report = {
        **summary,
        "class_names": class_names,
        "positive_class": positive,
        "views": settings.views,
        "aggregate": settings.video_aggregate,
        **sections,
        "per_video": per_video,
    }
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    draw_charts(workdir, sections, scores, labels, probabilities, class_names)
    log_charts(workdir, summary["step"])


def draw_charts(workdir: str, sections: dict, scores, labels, probabilities, class_names: list[str]) -> None:
    """roc.png (two classes) and confusion.png: matplotlib's where the `charts` extra is installed, else OpenCV's."""
    if len(class_names) == 2:  # a ROC curve needs one positive class
        curves = [
            (f"clips ({len(scores.labels)})", metrics.roc_curve(scores.labels, scores.probabilities[:, 1])),
            (f"videos ({len(labels)})", metrics.roc_curve(labels, probabilities[:, 1])),
        ]
        charts.draw_roc(
            os.path.join(workdir, ROC_FILE), [c for c in curves if c[1] is not None], positive=class_names[1]
        )
    charts.draw_confusion(
        os.path.join(workdir, CONFUSION_FILE),
        [
            (f"{name}s ({sections[name]['count']})", np.asarray(sections[name].get("confusion", [])))
            for name in ("clip", "video")
        ],
        class_names,
    )


def log_charts(workdir: str, step: int) -> None:
    """The charts as TensorBoard images (WORKDIR/tensorboard, IMAGES: eval/roc, eval/confusion) at the checkpoint's
    step."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
    with writer.as_default(step=step):
        for name in (ROC_FILE, CONFUSION_FILE):
            path = os.path.join(workdir, name)
            if os.path.isfile(path):  # no roc.png beyond two classes
                tf.summary.image(f"eval/{os.path.splitext(name)[0]}", charts.read_rgb(path)[None])
    writer.close()
