"""Charts drawn with OpenCV (BGR), where matplotlib is not installed: ROC, confusion matrices, score over time."""

from __future__ import annotations

import cv2
import numpy as np

from twostream.trainer.video import metrics

INK, GRID, COLOURS = (40, 40, 40), (225, 225, 225), [(200, 90, 20), (30, 120, 230)]  # blue, orange
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(image, text: str, origin, scale: float = 0.45, colour=INK) -> None:
    cv2.putText(image, text, (int(origin[0]), int(origin[1])), FONT, scale, colour, 1, cv2.LINE_AA)


def _vertical_text(image, text: str, centre_x: int, centre_y: int) -> None:
    """Text rotated 90 degrees counter-clockwise (a y-axis label)."""
    (width, height), _ = cv2.getTextSize(text, FONT, 0.5, 1)
    strip = np.full((height + 8, width + 4, 3), 255, np.uint8)
    _text(strip, text, (2, height + 2), 0.5)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top, left = centre_y - rotated.shape[0] // 2, centre_x - rotated.shape[1] // 2
    image[top : top + rotated.shape[0], left : left + rotated.shape[1]] = rotated


def draw_roc(path: str, curves: list, positive: str, size: int = 480) -> None:
    """ROC curves (name, (fpr, tpr, thresholds)) with their AUC, and each equal-error point as a dot."""
    left, top, side = 70, 30, size - 100  # plot area, pixels
    image = np.full((size, size, 3), 255, np.uint8)

    def point(fpr, tpr):
        return int(round(left + fpr * side)), int(round(top + (1 - tpr) * side))

    for tick in np.linspace(0, 1, 6):
        cv2.line(image, point(tick, 0), point(tick, 1), GRID, 1)
        cv2.line(image, point(0, tick), point(1, tick), GRID, 1)
        _text(image, f"{tick:.1f}", (point(tick, 0)[0] - 10, top + side + 18), 0.4)
        _text(image, f"{tick:.1f}", (left - 32, point(0, tick)[1] + 4), 0.4)
    for a in np.arange(0, 1, 0.1):  # chance: a dashed diagonal
        cv2.line(image, point(a, a), point(a + 0.05, a + 0.05), (160, 160, 160), 1, cv2.LINE_AA)
    cv2.rectangle(image, point(0, 1), point(1, 0), INK, 1)
    for i, (name, (fpr, tpr, thresholds)) in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        cv2.polylines(
            image, [np.array([point(x, y) for x, y in zip(fpr, tpr)], np.int32)], False, colour, 2, cv2.LINE_AA
        )
        eer, _ = metrics.equal_error_rate(fpr, tpr, thresholds)
        cv2.circle(image, point(eer, 1 - eer), 4, colour, -1, cv2.LINE_AA)
        _text(
            image,
            f"{name}: AUC {metrics.roc_auc(fpr, tpr):.3f}, EER {eer:.3f}",
            (left + side * 0.3, top + side - 14 - 20 * (len(curves) - 1 - i)),
            0.45,
            colour,
        )
    _text(image, f"ROC, positive class: {positive}", (left, top - 10), 0.5)
    _text(image, "false positive rate", (left + side / 2 - 70, size - 12), 0.5)
    _vertical_text(image, "true positive rate", 14, top + side // 2)
    cv2.imwrite(path, image)


def draw_confusion(path: str, panels: list, class_names: list[str]) -> None:
    """One confusion matrix per (title, counts) panel, side by side: rows true, columns predicted, shaded by
    the share of the row's examples."""
    cell = int(np.clip(400 // len(class_names), 6, 70))  # pixels; many classes get small cells, no counts
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
                _text(
                    image,
                    str(count),
                    (x + cell / 2 - 5 * len(str(count)), y + cell / 2 + 5),
                    0.5,
                    (255, 255, 255) if shares[row, column] > 0.6 else INK,
                )
        cv2.rectangle(image, (margin, margin), (margin + side, margin + side), INK, 1)
        if cell >= 14:
            for i, name in enumerate(names):
                _text(image, name, (4, margin + i * cell + cell / 2 + 4), 0.4)  # true class (rows)
                _text(image, name, (margin + i * cell + 2, margin - 8 - 12 * (i % 2)), 0.4)  # predicted
        _text(image, title, (margin, 22), 0.55)
        _text(image, "rows: true, columns: predicted", (margin, 44), 0.4)
        images.append(image)
    height = max(i.shape[0] for i in images)
    cv2.imwrite(
        path, np.hstack([np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0)), constant_values=255) for i in images])
    )


def draw_timeline(path: str, points: list, class_names: list[str], marked: list, title: str, width: int = 720) -> None:
    """Each class's probability (y) at each window's centre time (x): `points` [((first, last), probabilities)];
    `marked` windows (first, last), strongest first, named camK at their centre, the first shaded."""
    left, top, plot_w, plot_h = 60, 30, width - 80, 200  # plot area, pixels
    image = np.full((top + plot_h + 70, width, 3), 255, np.uint8)
    centres = np.array([(a + b) / 2 for (a, b), _ in points])
    start, end = min(a for (a, _), _ in points), max(b for (_, b), _ in points)
    span = max(end - start, 1e-9)

    def x_of(t):
        return int(round(left + (t - start) / span * plot_w))

    def y_of(p):
        return int(round(top + (1 - p) * plot_h))

    for k, (a, b) in enumerate(marked, start=1):
        if k == 1:
            cv2.rectangle(image, (x_of(a), top), (x_of(b), top + plot_h), (225, 225, 225), -1)
        _text(image, f"cam{k}", (x_of((a + b) / 2) - 12, top + 12 + 12 * ((k - 1) % 2)), 0.35)
    for tick in np.linspace(0, 1, 5):
        cv2.line(image, (left, y_of(tick)), (left + plot_w, y_of(tick)), GRID, 1)
        _text(image, f"{tick:.2f}", (left - 40, y_of(tick) + 4), 0.4)
    for tick in np.linspace(start, end, 6):
        _text(image, f"{tick:.1f}", (x_of(tick) - 10, top + plot_h + 16), 0.4)
    cv2.rectangle(image, (left, top), (left + plot_w, top + plot_h), INK, 1)
    probabilities = np.array([p for _, p in points])
    for i, k in enumerate(shown_classes(probabilities)):
        colour = PALETTE[i % len(PALETTE)]
        line = np.array([(x_of(t), y_of(p)) for t, p in zip(centres, probabilities[:, k])], np.int32)
        cv2.polylines(image, [line], False, colour, 2, cv2.LINE_AA)
        for point in line:
            cv2.circle(image, tuple(int(v) for v in point), 3, colour, -1, cv2.LINE_AA)
        _text(image, class_names[k], (left + 110 * i, top + plot_h + 56), 0.45, colour)
    _text(image, f"{title}: score per window (camK: drawn with Grad-CAM, cam1 shaded)", (left, top - 10), 0.45)
    _text(image, "time (s), window centre", (left + plot_w // 2 - 80, top + plot_h + 34), 0.45)
    cv2.imwrite(path, image)


PALETTE = [*COLOURS, (40, 160, 40), (40, 40, 200), (160, 60, 160)]  # BGR: blue, orange, green, red, purple


def shown_classes(probabilities: np.ndarray, most: int = 5) -> list[int]:
    """The classes a chart of many draws: all up to `most`, else the `most` highest on average."""
    order = np.argsort(-probabilities.mean(axis=0), kind="stable")
    return sorted(order[:most].tolist()) if probabilities.shape[1] > most else list(range(probabilities.shape[1]))
