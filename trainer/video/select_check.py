"""Checks train.select_metric against the epoch-record fields the video task will write, before training starts
(the loop itself would find a wrong name only at the end of the first epoch)."""

from __future__ import annotations

import numpy as np

from twostream.trainer.config import Config, ConfigError
from twostream.trainer.video import metrics

TRAIN_FIELDS = ("train_loss",)  # the loop's own metric in the record; the rest are counts and speeds


def validation_fields(num_classes: int, aggregate: str = "mean") -> list[str]:
    """The val_* fields of an epoch record for `num_classes` classes: the metrics of a made-up evaluation of two
    clips of one class each, named as the loop names them."""
    labels = np.arange(2) % num_classes
    probabilities = np.full((2, num_classes), 1.0 / num_classes)
    scores = metrics.Scores(
        records=np.arange(2),
        views=np.zeros(2, np.int64),
        labels=labels,
        probabilities=probabilities,
        losses=np.zeros(2),
    )
    return [f"val_{name}" for name in metrics.flat(metrics.report(scores, aggregate))]


def check_select_metric(config: Config, num_classes: int) -> None:
    """ConfigError naming train.select_metric and the fields it may name when the record will not have it."""
    name = config.train.select_metric
    allowed = [*validation_fields(num_classes, config.eval.video_aggregate), *TRAIN_FIELDS]
    if name and name not in allowed:
        raise ConfigError(
            f"train.select_metric={name!r} is not a field of the epoch record ({num_classes} classes); "
            f"choose one of {', '.join(allowed)}, or '' for no selection"
        )
