"""Charts (ROC, confusion, score over time) drawn by matplotlib where it is installed and by OpenCV without it."""

import cv2
import numpy as np
import pytest

from twostream.trainer.video import charts, metrics

BACKENDS = ["matplotlib", "opencv"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Each drawing library in turn: opencv as where matplotlib is not installed."""
    if request.param == "matplotlib":
        pytest.importorskip("matplotlib")  # the `charts` extra (requirements-dev.txt installs it)
    monkeypatch.setattr(charts, "backend", lambda: request.param)
    return request.param


def _drawn(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    assert min(image.shape[:2]) >= 200 and image.std() > 10, path  # a drawing, not a blank canvas
    return image


def test_roc_and_confusion_are_drawn(backend, tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    scores = np.clip(labels * 0.4 + rng.random(40) * 0.6, 0, 1)
    charts.draw_roc(str(tmp_path / "roc.png"), [("clips (40)", metrics.roc_curve(labels, scores))], positive="real")
    _drawn(tmp_path / "roc.png")
    counts = metrics.confusion_matrix(labels, (scores > 0.5).astype(int), 2)
    panels = [("clips (40)", counts), ("videos (0)", np.zeros((0,)))]  # an empty panel is left out
    charts.draw_confusion(str(tmp_path / "confusion.png"), panels, ["fake", "real"])
    _drawn(tmp_path / "confusion.png")


def test_the_score_over_time_shows_every_class_of_few_and_the_top_five_of_many(backend, tmp_path):
    times = [(t * 0.4, t * 0.4 + 0.8) for t in range(6)]
    two = [(span, np.array([p, 1 - p])) for span, p in zip(times, np.linspace(0.1, 0.9, 6))]
    charts.draw_timeline(str(tmp_path / "two.png"), two, ["fake", "real"], [times[5], times[4]], "video")
    assert _drawn(tmp_path / "two.png").shape[1] >= 700
    many = [(span, np.full(9, 1 / 9)) for span in times]
    charts.draw_timeline(str(tmp_path / "many.png"), many, [f"c{k}" for k in range(9)], [], "video")
    _drawn(tmp_path / "many.png")


def test_matplotlib_is_used_where_installed():
    pytest.importorskip("matplotlib")
    assert charts.backend() == "matplotlib"
