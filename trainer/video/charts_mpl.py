"""Charts drawn with matplotlib (the `charts` extra): ROC curves, confusion matrices, score over time."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

from twostream.trainer.video import metrics
from twostream.trainer.video.charts_cv import shown_classes

DPI = 100


def draw_roc(path: str, curves: list, positive: str) -> None:
    """ROC curves (name, (fpr, tpr, thresholds)) with their AUC, and each equal-error point as a dot."""
    figure = Figure(figsize=(5.2, 5.2), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for name, (fpr, tpr, thresholds) in curves:
        eer, _ = metrics.equal_error_rate(fpr, tpr, thresholds)
        (line,) = axes.plot(fpr, tpr, linewidth=2, label=f"{name}: AUC {metrics.roc_auc(fpr, tpr):.3f}, EER {eer:.3f}")
        axes.plot([eer], [1 - eer], "o", color=line.get_color())
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate", aspect="equal")
    axes.set_title(f"ROC, positive class: {positive}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.savefig(path)


def draw_confusion(path: str, panels: list, class_names: list[str]) -> None:
    """One confusion matrix per (title, counts) panel, side by side: rows true, columns predicted, shaded by
    the share of the row's examples, counts written where the cells are large enough."""
    panels = [(title, counts) for title, counts in panels if counts.size]
    side = float(np.clip(0.5 * len(class_names) + 1.8, 3.5, 9))  # inches per panel
    figure = Figure(figsize=(side * len(panels), side), dpi=DPI, layout="constrained")
    for axes, (title, counts) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        if len(class_names) <= 20:  # beyond that, names and counts no longer fit
            ticks = range(len(class_names))
            axes.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize="small")
            axes.set_yticks(ticks, class_names, fontsize="small")
            for (row, column), count in np.ndenumerate(counts):
                colour = "white" if shares[row, column] > 0.6 else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=colour)
        axes.set(title=title, xlabel="predicted", ylabel="true")
    figure.savefig(path)


def draw_timeline(path: str, points: list, class_names: list[str], marked: list, title: str) -> None:
    """Each class's probability (y) at each window's centre time (x): `points` [((first, last), probabilities)];
    `marked` windows (first, last), strongest first, named camK at their centre, the first shaded."""
    figure = Figure(figsize=(8, 3.2), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    for k, (a, b) in enumerate(marked, start=1):
        if k == 1:
            axes.axvspan(a, b, color="0.88", zorder=0)
        inside = axes.get_xaxis_transform()  # x in data units, y in the axes' (1: its top)
        axes.text((a + b) / 2, 0.98, f"cam{k}", ha="center", va="top", fontsize="x-small", transform=inside)
    centres = [(a + b) / 2 for (a, b), _ in points]
    probabilities = np.array([p for _, p in points])
    for k in shown_classes(probabilities):
        axes.plot(centres, probabilities[:, k], marker="o", markersize=3, label=class_names[k])
    axes.set(ylim=(0, 1), xlabel="time (s), window centre", ylabel="probability")
    axes.set_title(f"{title}: score per window (camK: the windows drawn with Grad-CAM, cam1 shaded)", fontsize="medium")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.savefig(path)
