"""Evaluation on the held-out videos: per-clip scores gathered over ranks, clip- and video-level metrics, report files.

Exact across ranks: each rank scores its share of the clips, every scored clip is gathered once (padding
dropped) and the metrics are computed on the union (trainer/metrics.py). `twostream evaluate` writes
WORKDIR/eval.json, WORKDIR/roc.png (two classes) and WORKDIR/confusion.png.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from twostream.trainer import dist, metrics

REPORT_FILE, ROC_FILE, CONFUSION_FILE = "eval.json", "roc.png", "confusion.png"


def local_scores(eval_step, dataset) -> metrics.Scores:
    """This rank's scored clips: eval_step over every (inputs, labels, weights, index) batch, padding dropped."""
    parts = []
    for inputs, labels, weights, index in dataset:
        losses, probabilities = eval_step(inputs, labels)
        keep = weights.numpy() > 0   # weight 0: padding, or a stand-in for a clip that failed to load
        index = index.numpy()[keep].astype(np.int64)
        parts.append(metrics.Scores(records=index[:, 0], views=index[:, 1],
                                    labels=labels.numpy()[keep].astype(np.int64),
                                    probabilities=probabilities.numpy()[keep].astype(np.float64),
                                    losses=losses.numpy()[keep].astype(np.float64)))
    return metrics.Scores.concatenate(parts)


def over_ranks(local: metrics.Scores, aggregate: str = "mean") -> dict:
    """The flat metrics of every rank's clips together (a collective: the same dict on every rank)."""
    return metrics.flat(metrics.report(metrics.gather(local), aggregate))


def evaluate(eval_step, dataset, aggregate: str = "mean") -> dict:
    """Scores every held-out clip once over all ranks. Returns flat metrics: "loss", "accuracy", "clips" and the
    rest at clip level, "videos" and "video_*" per video (its clips' probabilities aggregated by `aggregate`)."""
    return over_ranks(local_scores(eval_step, dataset), aggregate)


def evaluate_workdir(workdir: str, overrides: list[str] = ()) -> dict:
    """`twostream evaluate`: the latest checkpoint of WORKDIR on its config's held-out videos. Rank 0 writes
    eval.json (the flat metrics, then clip and video sections with confusion matrices, then every video's
    scores), roc.png and confusion.png. Returns the flat metrics and the checkpoint's step."""
    from twostream.models.registry import build_model
    from twostream.trainer import config as config_lib
    from twostream.trainer.checkpoint import Checkpoints
    from twostream.trainer.inputs import Inputs
    from twostream.trainer.step import make_eval_step

    config_path = os.path.join(workdir, "config.yaml")
    if not os.path.isfile(config_path):
        raise config_lib.ConfigError(f"{workdir!r} holds no config.yaml: is it the --workdir of a `twostream train` run?")
    config = config_lib.load(path=config_path, overrides=list(overrides))
    dist.init()
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    model = build_model(config.model, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
    checkpoints = Checkpoints(workdir, model, optimizer=None)
    if not dist.all_agree(not dist.is_chief() or checkpoints.latest is not None):   # every rank stops, none hangs
        inputs.close()
        raise config_lib.ConfigError(f"{workdir!r} has no checkpoint yet; train first")
    step = checkpoints.restore_or_initialize()
    scores = metrics.gather(local_scores(make_eval_step(model, eager=config.train.eager), inputs.eval_epoch()[0]))
    inputs.close()
    aggregate = config.train.video_aggregate
    sections = metrics.report(scores, aggregate)
    summary = {**metrics.flat(sections), "step": step}
    if dist.is_chief():
        write_report(workdir, summary, sections, scores, [r.path for r in inputs.val_records],
                     list(inputs.class_names), config.train.eval_views, aggregate)
    return summary


# ---------------------------------------------------------------------- report files
def write_report(workdir: str, summary: dict, sections: dict, scores: metrics.Scores, paths: list[str],
                 class_names: list[str], views: int, aggregate: str) -> None:
    records, labels, probabilities = metrics.by_video(scores, aggregate)
    clips_per_video = np.bincount(scores.records, minlength=len(paths))
    per_video = [{"path": paths[r], "label": class_names[label], "prediction": class_names[int(np.argmax(p))],
                  "probabilities": dict(zip(class_names, p.tolist())), "clips": int(clips_per_video[r])}
                 for r, label, p in zip(records, labels, probabilities)]
    positive = class_names[1] if len(class_names) == 2 else None   # the class that ROC-AUC and EER score
    report = {**summary, "class_names": class_names, "positive_class": positive, "views": views,
              "aggregate": aggregate, **sections, "per_video": per_video}
    with open(os.path.join(workdir, REPORT_FILE), "w") as f:
        json.dump(report, f, indent=2)
    if len(class_names) == 2:   # a ROC curve needs one positive class
        curves = [(f"clips ({len(scores.labels)})", metrics.roc_curve(scores.labels, scores.probabilities[:, 1])),
                  (f"videos ({len(labels)})", metrics.roc_curve(labels, probabilities[:, 1]))]
        draw_roc(os.path.join(workdir, ROC_FILE), [c for c in curves if c[1] is not None], positive=class_names[1])
    draw_confusion(os.path.join(workdir, CONFUSION_FILE),
                   [(f"{name}s ({sections[name]['count']})", np.asarray(sections[name].get("confusion", [])))
                    for name in ("clip", "video")], class_names)


# ---------------------------------------------------------------------- images, drawn with OpenCV (BGR)
INK, GRID, COLOURS = (40, 40, 40), (225, 225, 225), [(200, 90, 20), (30, 120, 230)]   # blue, orange
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(image, text: str, origin, scale: float = 0.45, colour=INK) -> None:
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), FONT, scale, colour, 1, cv2.LINE_AA)


def _vertical_text(image, text: str, centre_x: int, centre_y: int) -> None:
    """Text rotated 90 degrees counter-clockwise (a y-axis label)."""
    (width, height), _ = cv2.getTextSize(text, FONT, 0.5, 1)
    strip = np.full((height + 8, width + 4, 3), 255, np.uint8)
    _text(strip, text, (2, height + 2), 0.5)
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top, left = centre_y - strip.shape[0] // 2, centre_x - strip.shape[1] // 2
    image[top:top + strip.shape[0], left:left + strip.shape[1]] = strip


def draw_roc(path: str, curves: list, positive: str, size: int = 480) -> None:
    """ROC curves (name, (fpr, tpr, thresholds)) with their AUC, and each equal-error point as a dot."""
    left, top, side = 70, 30, size - 100   # plot area, pixels
    image = np.full((size, size, 3), 255, np.uint8)

    def point(fpr, tpr):
        return int(round(left + fpr * side)), int(round(top + (1 - tpr) * side))

    for tick in np.linspace(0, 1, 6):
        cv2.line(image, point(tick, 0), point(tick, 1), GRID, 1)
        cv2.line(image, point(0, tick), point(1, tick), GRID, 1)
        _text(image, f"{tick:.1f}", (point(tick, 0)[0] - 10, top + side + 18), 0.4)
        _text(image, f"{tick:.1f}", (left - 32, point(0, tick)[1] + 4), 0.4)
    for a in np.arange(0, 1, 0.1):   # chance: a dashed diagonal
        cv2.line(image, point(a, a), point(a + 0.05, a + 0.05), (160, 160, 160), 1, cv2.LINE_AA)
    cv2.rectangle(image, point(0, 1), point(1, 0), INK, 1)
    for i, (name, (fpr, tpr, thresholds)) in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        cv2.polylines(image, [np.array([point(x, y) for x, y in zip(fpr, tpr)], np.int32)], False, colour, 2,
                      cv2.LINE_AA)
        eer, _ = metrics.equal_error_rate(fpr, tpr, thresholds)
        cv2.circle(image, point(eer, 1 - eer), 4, colour, -1, cv2.LINE_AA)
        _text(image, f"{name}: AUC {metrics.roc_auc(fpr, tpr):.3f}, EER {eer:.3f}",
              (left + side * 0.3, top + side - 14 - 20 * (len(curves) - 1 - i)), 0.45, colour)
    _text(image, f"ROC, positive class: {positive}", (left, top - 10), 0.5)
    _text(image, "false positive rate", (left + side / 2 - 70, size - 12), 0.5)
    _vertical_text(image, "true positive rate", 14, top + side // 2)
    cv2.imwrite(path, image)


def draw_confusion(path: str, panels: list, class_names: list[str]) -> None:
    """One confusion matrix per (title, counts) panel, side by side: rows true, columns predicted, shaded by
    the share of the row's examples."""
    cell = int(np.clip(400 // len(class_names), 6, 70))   # pixels; many classes get small cells, no counts
    margin, names = 90, [n[:10] for n in class_names]
    images = []
    for title, counts in panels:
        if counts.size == 0:
            continue
        side = cell * len(class_names)
        image = np.full((margin + side + 40, max(margin + side + 20, 360), 3), 255, np.uint8)
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        for (row, column), count in np.ndenumerate(counts):
            shade = int(255 - 200 * shares[row, column])
            x, y = margin + column * cell, margin + row * cell
            cv2.rectangle(image, (x, y), (x + cell, y + cell), (255, shade, shade), -1)
            if cell >= 30:
                _text(image, str(count), (x + cell / 2 - 5 * len(str(count)), y + cell / 2 + 5), 0.5,
                      (255, 255, 255) if shares[row, column] > 0.6 else INK)
        cv2.rectangle(image, (margin, margin), (margin + side, margin + side), INK, 1)
        if cell >= 14:
            for i, name in enumerate(names):
                _text(image, name, (4, margin + i * cell + cell / 2 + 4), 0.4)                 # true class (rows)
                _text(image, name, (margin + i * cell + 2, margin - 8 - 12 * (i % 2)), 0.4)   # predicted
        _text(image, title, (margin, 22), 0.55)
        _text(image, "rows: true, columns: predicted", (margin, 44), 0.4)
        images.append(image)
    height = max(i.shape[0] for i in images)
    cv2.imwrite(path, np.hstack([np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0)), constant_values=255)
                                 for i in images]))
