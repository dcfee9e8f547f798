"""Classification metrics from per-clip scores gathered over all ranks: clip-level and per-video (views aggregated).

Exact across ranks: every rank's scored clips are gathered once (padding already dropped) and the metrics
are computed on their union, in (video, view) order, so N ranks report what one process would. The metric
functions are plain NumPy on (labels, probabilities) and are checked against scikit-learn in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

AGGREGATES = ("mean", "max")
TOP_K = (3, 5)  # top-k accuracies reported when there are more than k classes


# ---------------------------------------------------------------------- the scored clips of an evaluation
@dataclass(frozen=True)
class Scores:
    """One row per scored clip: which video (record index) and view it is, its label, probabilities and loss."""

    records: np.ndarray  # int64 (N,): index of the clip's video in the validation records
    views: np.ndarray  # int64 (N,): which of the video's evenly spread clips
    labels: np.ndarray  # int64 (N,)
    probabilities: np.ndarray  # float64 (N, classes)
    losses: np.ndarray  # float64 (N,): cross-entropy of the clip (from the logits)

    @staticmethod
    def concatenate(parts: list[Scores]) -> Scores:
        """All parts as one, sorted by (video, view): the same rows in the same order however they were split."""
        joined = [np.concatenate([getattr(p, name) for p in parts]) for name in Scores.__dataclass_fields__]
        order = np.lexsort((joined[1], joined[0]))  # by record, then view
        return Scores(*(column[order] for column in joined))


def gather(local: Scores) -> Scores:
    """Every rank's scored clips, on every rank (a collective: every rank calls it)."""
    from twostream.trainer import dist  # here: the metrics above need neither TensorFlow nor Horovod

    return Scores.concatenate(dist.gather_objects(local))


# ---------------------------------------------------------------------- metrics of (labels, probabilities)
def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Share of examples whose label is among the k most probable classes."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean -ln p(label), with p clipped to [eps, 1 - eps] (float64 eps) as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    p = np.clip(probabilities[np.arange(len(labels)), labels].astype(np.float64), eps, 1 - eps)
    return float(np.mean(-np.log(p)))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j]: examples of class i predicted as class j."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def roc_curve(labels: np.ndarray, scores: np.ndarray):
    """(fpr, tpr, thresholds) for class 1 against `scores`, one point per distinct score (thresholds descend,
    the first is +inf: nothing called positive). None when the labels hold only one class."""
    if np.all(labels == 1) or not np.any(labels == 1):
        return None
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], labels[order] == 1
    last_of_ties = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # a threshold between distinct scores
    true_positives = np.cumsum(positive)[last_of_ties]
    false_positives = last_of_ties + 1 - true_positives
    return (
        np.r_[0, false_positives] / false_positives[-1],
        np.r_[0, true_positives] / true_positives[-1],
        np.r_[np.inf, scores[last_of_ties]],
    )


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids: ties count one half, as in the Mann-Whitney statistic)."""
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """(rate, threshold) where the false-positive rate equals the false-negative rate (1 - tpr), the ROC curve
    interpolated linearly between its points; the threshold is that of the first point at or past it."""
    gap = (1 - tpr) - fpr  # falls from 1 at (0, 0) to -1 at (1, 1)
    i = int(np.flatnonzero(gap <= 0)[0])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1])), float(thresholds[i])


def summarize(labels: np.ndarray, probabilities: np.ndarray, losses: np.ndarray | None = None) -> dict:
    """Every metric of one set of examples; ROC-AUC and EER for two classes (positive: class 1)."""
    num_classes = probabilities.shape[1]
    if len(labels) == 0:
        return {"count": 0}
    result: dict[str, Any] = {"count": len(labels)}  # counts, rates, None (one class) and the confusion rows
    if losses is not None:
        result["loss"] = float(np.mean(losses))
    result["accuracy"] = accuracy(labels, probabilities)
    result.update({f"top{k}_accuracy": top_k_accuracy(labels, probabilities, k) for k in TOP_K if k < num_classes})
    result["log_loss"] = log_loss(labels, probabilities)
    if num_classes == 2:
        curve = roc_curve(labels, probabilities[:, 1])
        result["roc_auc"] = roc_auc(*curve[:2]) if curve else None  # None: one class only
        result["eer"], result["eer_threshold"] = equal_error_rate(*curve) if curve else (None, None)
    result["confusion"] = confusion_matrix(labels, np.argmax(probabilities, axis=1), num_classes).tolist()
    return result


# ---------------------------------------------------------------------- videos: their clips' views aggregated
def aggregate_views(probabilities: np.ndarray, how: str) -> np.ndarray:
    """One video's class probabilities from its clips' (views, classes): their mean, or each class's maximum
    over the clips renormalised to sum to 1."""
    if how == "mean":
        return probabilities.mean(axis=0)
    if how == "max":
        peak = probabilities.max(axis=0)
        return peak / peak.sum()
    raise ValueError(f"video aggregation must be one of {AGGREGATES}, got {how!r}")


def by_video(scores: Scores, how: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record indices, labels, probabilities) per video, from scores sorted by video (Scores.concatenate)."""
    records, first = np.unique(scores.records, return_index=True)
    probabilities = np.zeros((len(records), scores.probabilities.shape[1]))
    for row, clips in enumerate(np.split(scores.probabilities, first[1:])[: len(records)]):  # a video's clips
        probabilities[row] = aggregate_views(clips, how)
    return records, scores.labels[first], probabilities


def report(scores: Scores, how: str = "mean") -> dict:
    """{"clip": metrics of every clip, "video": metrics of every video's aggregated clips}."""
    _, video_labels, video_probabilities = by_video(scores, how)
    return {
        "clip": summarize(scores.labels, scores.probabilities, scores.losses),
        "video": summarize(video_labels, video_probabilities),
    }


def flat(sections: dict) -> dict:
    """The scalar metrics of report() in one level, as the training loop logs them each epoch: clip-level
    under their own names ("clips" counts them), video-level prefixed "video_" ("videos" counts them)."""
    not_scalar = ("count", "confusion", "eer_threshold")
    clip, video = sections["clip"], sections["video"]
    result = {"loss": clip.get("loss"), "accuracy": clip.get("accuracy"), "clips": clip["count"]}
    result.update({k: v for k, v in clip.items() if k not in not_scalar and k not in result})
    result["videos"] = video["count"]
    result.update({f"video_{k}": v for k, v in video.items() if k not in not_scalar})
    return result
