"""Evaluation on the held-out videos: per-clip scores of each rank, gathered over ranks, clip- and video-level metrics.

Exact across ranks: each rank scores its share of the clips, every scored clip is gathered once (padding
dropped) and the metrics are computed on the union (trainer/video/metrics.py). The `evaluate` command
(launch/commands/evaluate_cmd.py) writes the report files; trainer/video/charts.py draws them.
"""

from __future__ import annotations

import numpy as np

from twostream.trainer.video import metrics


def local_scores(eval_step, dataset) -> metrics.Scores:
    """This rank's scored clips: eval_step over every (inputs, labels, weights, index) batch, padding dropped."""
    parts = []
    for inputs, labels, weights, index in dataset:
        losses, probabilities = eval_step(inputs, labels)
        keep = weights.numpy() > 0  # weight 0: padding, or a stand-in for a clip that failed to load
        index = index.numpy()[keep].astype(np.int64)
        parts.append(
            metrics.Scores(
                records=index[:, 0],
                views=index[:, 1],
                labels=labels.numpy()[keep].astype(np.int64),
                probabilities=probabilities.numpy()[keep].astype(np.float64),
                losses=losses.numpy()[keep].astype(np.float64),
            )
        )
    return metrics.Scores.concatenate(parts)


def over_ranks(local: metrics.Scores, aggregate: str = "mean") -> dict:
    """The flat metrics of every rank's clips together (a collective: the same dict on every rank)."""
    return metrics.flat(metrics.report(metrics.gather(local), aggregate))


def evaluate(eval_step, dataset, aggregate: str = "mean") -> dict:
    """Scores every held-out clip once over all ranks. Returns flat metrics: "loss", "accuracy", "clips" and the
    rest at clip level, "videos" and "video_*" per video (its clips' probabilities aggregated by `aggregate`)."""
    return over_ranks(local_scores(eval_step, dataset), aggregate)
