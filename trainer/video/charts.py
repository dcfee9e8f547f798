"""Evaluation and evidence charts: matplotlib's where the `charts` extra is installed, else OpenCV's."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np


def backend() -> str:
    """ "matplotlib" where it is installed (`pip install twostream[charts]`), else "opencv"."""
    return "matplotlib" if importlib.util.find_spec("matplotlib") is not None else "opencv"


def _module():
    if backend() == "matplotlib":
        from twostream.trainer.video import charts_mpl

        return charts_mpl
    from twostream.trainer.video import charts_cv

    return charts_cv


def draw_roc(path: str, curves: list, positive: str) -> None:
    """PNG of ROC curves (name, (fpr, tpr, thresholds)), each with its AUC and equal-error point."""
    _module().draw_roc(path, curves, positive)


def draw_confusion(path: str, panels: list, class_names: list[str]) -> None:
    """PNG of confusion matrices (title, counts) side by side: rows true, columns predicted."""
    _module().draw_confusion(path, panels, class_names)


def draw_timeline(path: str, points: list, class_names: list[str], marked: list, title: str) -> None:
    """PNG of each class's probability per window over time: `points` [((first, last), probabilities)]."""
    _module().draw_timeline(path, points, class_names, marked, title)


def read_rgb(path: str) -> np.ndarray:
    """A chart's PNG as uint8 RGB (H, W, 3), e.g. for TensorBoard."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
