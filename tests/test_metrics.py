"""trainer/video/metrics.py against scikit-learn, and the video aggregation and order-independence of the union."""

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn import metrics as sk

from twostream.trainer.video import metrics


def _binary(seed: int, n: int = 200, ties: bool = True):
    """Labels and positive-class scores that separate the classes partly; rounding makes ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.25 * labels + 0.75 * rng.random(n), 0, 1)
    return labels, np.round(scores, 1) if ties else scores


def _multiclass(seed: int, n: int = 300, classes: int = 7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probabilities


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_curve_and_auc_match_scikit_learn(seed, ties):
    labels, scores = _binary(seed, ties=ties)
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds, sk_thresholds)
    assert metrics.roc_auc(fpr, tpr) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_equal_error_rate_is_where_the_roc_curve_of_scikit_learn_crosses_fpr_equals_fnr(seed, ties):
    labels, scores = _binary(seed, ties=ties)
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, scores)
    expected = brentq(lambda x: 1.0 - x - np.interp(x, sk_fpr, sk_tpr), 0.0, 1.0, xtol=1e-12)
    eer, threshold = metrics.equal_error_rate(*metrics.roc_curve(labels, scores))
    assert eer == pytest.approx(expected, abs=1e-9)
    # At the returned threshold the two error rates are on either side of the EER (it is a real operating point).
    called = scores >= threshold
    false_positive_rate = np.mean(called[labels == 0])
    false_negative_rate = np.mean(~called[labels == 1])
    assert false_negative_rate <= eer + 1e-12 <= false_positive_rate + 2e-12


def test_equal_error_rate_of_perfect_and_inverted_scores():
    labels = np.array([0, 0, 0, 1, 1])
    assert metrics.equal_error_rate(*metrics.roc_curve(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9])))[0] == 0.0
    assert metrics.equal_error_rate(*metrics.roc_curve(labels, np.array([0.9, 0.8, 0.7, 0.2, 0.1])))[0] == 1.0


def test_log_loss_matches_scikit_learn_including_certain_mistakes():
    labels, probabilities = _multiclass(0)
    assert metrics.log_loss(labels, probabilities) == pytest.approx(sk.log_loss(labels, probabilities), rel=1e-12)
    certain = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # the last one is certain and wrong: clipped
    labels = np.array([0, 1, 1])
    assert metrics.log_loss(labels, certain) == pytest.approx(sk.log_loss(labels, certain), rel=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy_matches_scikit_learn(k):
    labels, probabilities = _multiclass(1)
    expected = sk.top_k_accuracy_score(labels, probabilities, k=k, labels=np.arange(probabilities.shape[1]))
    assert metrics.top_k_accuracy(labels, probabilities, k) == pytest.approx(expected)
    if k == 1:
        assert metrics.accuracy(labels, probabilities) == pytest.approx(
            sk.accuracy_score(labels, probabilities.argmax(1))
        )


def test_confusion_matrix_matches_scikit_learn_with_an_absent_class():
    labels, probabilities = _multiclass(2, classes=5)
    labels[labels == 4] = 0  # class 4 never occurs: its row stays zero, the matrix stays 5 x 5
    predicted = probabilities.argmax(axis=1)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, predicted, 5), sk.confusion_matrix(labels, predicted, labels=range(5))
    )


def test_summary_of_two_classes_and_of_one_class_only():
    labels, scores = _binary(3, ties=False)
    probabilities = np.stack([1 - scores, scores], axis=1)
    summary = metrics.summarize(labels, probabilities, losses=np.ones(len(labels)))
    assert summary["count"] == len(labels) and summary["loss"] == 1.0
    assert summary["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, scores))
    assert np.sum(summary["confusion"]) == len(labels) and "top3_accuracy" not in summary
    only_one = metrics.summarize(np.zeros(4, int), probabilities[:4])
    assert only_one["roc_auc"] is None and only_one["eer"] is None
    assert only_one["accuracy"] == np.mean(np.argmax(probabilities[:4], axis=1) == 0)
    assert "top3_accuracy" in metrics.summarize(*_multiclass(4, classes=5))


def _scores(seed: int, videos: int = 30, views: int = 3) -> metrics.Scores:
    labels, probabilities = _multiclass(seed, n=videos * views, classes=3)
    video_labels = np.repeat(labels[::views], views)  # every clip of a video has the video's label
    return metrics.Scores(
        np.repeat(np.arange(videos), views),
        np.tile(np.arange(views), videos),
        video_labels,
        probabilities,
        -np.log(probabilities[np.arange(len(labels)), video_labels]),
    )


@pytest.mark.parametrize("how", ["mean", "max"])
def test_videos_aggregate_their_clips(how):
    scores = _scores(5)
    records, labels, probabilities = metrics.by_video(scores, how)
    assert list(records) == list(range(30))
    for video in range(30):
        clips = scores.probabilities[scores.records == video]
        expected = clips.mean(axis=0) if how == "mean" else clips.max(axis=0) / clips.max(axis=0).sum()
        np.testing.assert_allclose(probabilities[video], expected)
        assert labels[video] == scores.labels[scores.records == video][0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="mean"):
        metrics.aggregate_views(scores.probabilities[:3], "median")


def test_the_union_of_any_split_gives_the_same_report_exactly():
    """How ranks see the clips (any split, any order) does not change one digit of the metrics."""
    scores = _scores(6)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(scores.labels))
    parts = [
        metrics.Scores(*(getattr(scores, f)[chunk] for f in metrics.Scores.__dataclass_fields__))
        for chunk in np.array_split(order, [7, 40, 41])
    ]
    assert metrics.report(metrics.Scores.concatenate(parts), "max") == metrics.report(scores, "max")
    flat = metrics.flat(metrics.report(scores, "mean"))
    assert flat["clips"] == 90 and flat["videos"] == 30
    assert {"loss", "accuracy", "log_loss", "video_accuracy", "video_log_loss"} <= flat.keys()
    assert all(not isinstance(v, list) for v in flat.values())
