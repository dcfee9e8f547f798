"""Exact checks of the pure modules that mutation testing (`make mutants`, scripts/mutants.sh) showed the other tests
let through: sampling ranges and ticks, sharding messages, the crop/flip draw, flow scaling's clip at 0."""

import dataclasses

import numpy as np
import pytest

from twostream.data.decode import augment, flow_format
from twostream.data.decode.sampling import SAMPLING_MODES, EvalView, sample_by_time, sample_frames
from twostream.data.distributed.sharding import Plan, ShardingError, local_batch_size, plan_epoch

SEEDS = range(300)


# ---------------------------------------------------------------- data/decode/sampling.py


def test_sampling_modes_and_the_default():
    assert SAMPLING_MODES == ("dense", "segments")
    assert sample_frames(11, 4).tolist() == sample_frames(11, 4, "dense").tolist()
    with pytest.raises(ValueError) as error:
        sample_frames(10, 2, "magic")
    assert str(error.value) == "unknown clip.sampling 'magic'; choose one of ('dense', 'segments')"


def test_dense_random_starts_cover_exactly_the_slack():
    # 21 frames -> 20 usable; 4 frames 2 apart span 7 -> slack 13: starts 0..13, each possible
    starts = {int(sample_frames(21, 4, "dense", stride=2, placement=np.random.default_rng(s))[0]) for s in SEEDS}
    assert starts == set(range(14))
    # slack 1 (usable 5, span 4): both starts occur
    assert {int(sample_frames(6, 4, "dense", placement=np.random.default_rng(s))[0]) for s in SEEDS} == {0, 1}


def test_dense_views_spread_from_first_to_last_start():
    assert [sample_frames(21, 4, "dense", placement=EvalView(v, 2))[0] for v in range(2)] == [0, 16]
    assert [sample_frames(6, 4, "dense", placement=EvalView(v, 2))[0] for v in range(2)] == [0, 1]  # slack 1


def test_segments_random_picks_cover_each_segment_exactly():
    picks = np.stack([sample_frames(41, 4, "segments", placement=np.random.default_rng(s)) for s in SEEDS])
    for k in range(4):
        assert set(picks[:, k].tolist()) == set(range(10 * k, 10 * (k + 1))), k
    # usable 5 over 4 segments: widths 1, 1, 1, 2 -> the first three picks are fixed
    narrow = np.stack([sample_frames(6, 4, "segments", placement=np.random.default_rng(s)) for s in SEEDS])
    assert [set(narrow[:, k].tolist()) for k in range(4)] == [{0}, {1}, {2}, {3, 4}]


def test_segment_views_are_offsets_within_each_segment():
    assert sample_frames(41, 4, "segments", placement=EvalView(0, 2)).tolist() == [2, 12, 22, 32]
    assert sample_frames(41, 4, "segments", placement=EvalView(1, 2)).tolist() == [7, 17, 27, 37]


def test_short_videos_loop_as_integers():
    looped = sample_frames(3, 5, "segments")
    assert looped.tolist() == [0, 1, 0, 1, 0] and looped.dtype.kind == "i"


def test_a_tick_on_a_frame_shows_that_frame_and_a_later_frame_waits():
    every_tick = lambda ticks: np.arange(ticks - 1)  # noqa: E731
    times = np.array([0.0, 100.0, 200.0, 300.05, 400.0, 500.0])  # frame 3 comes 0.05 ms after the 300 ms tick
    assert sample_by_time(times, 10.0, every_tick).tolist() == [0, 1, 2, 2, 4]  # at 300 ms frame 2 is on screen


def test_the_last_tick_keeps_a_successor_frame():
    last = lambda ticks: np.array([ticks - 1])  # noqa: E731
    assert sample_by_time(np.arange(6) * 100.0, 10.0, last).tolist() == [4]  # frame 5 has no successor


# ---------------------------------------------------------------- data/distributed/sharding.py


def test_plans_are_frozen():
    plan = plan_epoch(8, 4, 0, 1, seed=0, epoch=0, train=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.indices = None
    assert isinstance(plan, Plan)


def test_a_global_batch_equal_to_the_world_is_one_clip_per_rank():
    assert local_batch_size(4, 4) == 1


@pytest.mark.parametrize("global_batch,world,suggested", [(6, 4, 4), (9, 4, 8), (2, 4, 4)])
def test_the_batch_error_suggests_the_nearest_multiple(global_batch, world, suggested):
    with pytest.raises(ShardingError) as error:
        local_batch_size(global_batch, world)
    assert str(error.value) == (
        f"global batch size {global_batch} must be a positive multiple of the number of "
        f"processes ({world}); set train.global_batch to e.g. {suggested}"
    )


def test_too_few_clips_for_one_batch_says_what_to_change():
    with pytest.raises(ShardingError) as error:
        plan_epoch(5, 8, 0, 1, seed=0, epoch=0, train=True)
    assert str(error.value) == "5 training clips make no full global batch of 8; lower train.global_batch or add videos"


# ---------------------------------------------------------------- data/decode/augment.py and data/decode/flow_format.py


def _draws(size, crop_scale_min, flip):
    return [augment.draw(np.random.default_rng(s), size, crop_scale_min, flip) for s in SEEDS]


def test_crop_sides_span_the_scale_range():
    sides = [d.side for d in _draws(32, 0.5, False)]
    assert min(sides) == 16 and max(sides) == 32 and sides.count(32) < len(sides) // 10
    assert {d.side for d in _draws(32, 1.0, False)} == {32}
    assert min(d.side for d in _draws(4, 0.01, False)) == 2  # never below 2 pixels


def test_crop_positions_span_the_frame():
    draws = _draws(32, 0.5, False)
    assert all(0 <= d.top <= 32 - d.side and 0 <= d.left <= 32 - d.side for d in draws)
    assert any(d.top == 0 for d in draws) and any(d.top == 32 - d.side for d in draws if d.side < 32)
    assert any(d.left == 0 for d in draws) and any(d.left == 32 - d.side for d in draws if d.side < 32)


def test_flip_is_a_fair_coin_only_when_enabled():
    flips = sum(d.flip for d in _draws(32, 1.0, True))
    assert 0.4 * len(SEEDS) < flips < 0.6 * len(SEEDS)
    assert not any(d.flip for d in _draws(32, 0.5, False))


def test_augmentations_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        augment.Augmentation(0, 0, 8, False).side = 4


def test_an_off_centre_crop_is_cut_where_drawn():
    rgb = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    flow = np.full((2, 32, 32, 2), 128, np.uint8)
    out, _ = augment.apply(rgb, flow, augment.Augmentation(top=3, left=5, side=20, flip=False))
    import cv2

    np.testing.assert_array_equal(out[1], cv2.resize(rgb[1, 3:23, 5:25], (32, 32), interpolation=cv2.INTER_LINEAR))


def test_scaled_flow_clips_at_both_ends():
    stored = np.array([0, 64, 128, 192, 255], np.uint8)
    assert flow_format.scale(stored, 2.0).tolist() == [0, 0, 128, 255, 255]
    assert flow_format.LEVELS == 255 and flow_format.ZERO == 127.5


# ---------------------------------------------------------------- trainer/video/metrics.py


def test_aggregates_and_top_k_thresholds():
    from twostream.trainer.video import metrics

    assert metrics.AGGREGATES == ("mean", "max") and metrics.TOP_K == (3, 5)
    rng = np.random.default_rng(0)
    for classes, reported in [
        (3, []),
        (4, ["top3_accuracy"]),
        (5, ["top3_accuracy"]),
        (6, ["top3_accuracy", "top5_accuracy"]),
    ]:
        labels = np.arange(12) % classes
        summary = metrics.summarize(labels, rng.dirichlet(np.ones(classes), 12))
        assert sorted(k for k in summary if k.startswith("top")) == reported, classes


def test_scores_are_frozen():
    from twostream.trainer.video.metrics import Scores

    scores = Scores(*(np.zeros(1) for _ in range(5)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.labels = None


def test_log_loss_clips_a_certain_right_answer_below_one():
    from twostream.trainer.video.metrics import log_loss

    eps = np.finfo(np.float64).eps
    assert log_loss(np.array([0]), np.array([[1.0, 0.0]])) == float(-np.log(1 - eps))  # 2.2e-16, not 0


def test_roc_curve_points_and_one_class_only():
    from twostream.trainer.video.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.array([1, 0, 1]), np.array([0.9, 0.5, 0.1]))
    assert fpr.tolist() == [0, 0, 1, 1] and tpr.tolist() == [0, 0.5, 0.5, 1]
    assert thresholds.tolist() == [np.inf, 0.9, 0.5, 0.1]
    assert roc_curve(np.ones(4, int), np.linspace(0, 1, 4)) is None
    assert roc_curve(np.zeros(4, int), np.linspace(0, 1, 4)) is None


def test_equal_error_rate_on_a_curve_point_takes_that_points_threshold():
    from twostream.trainer.video.metrics import equal_error_rate, roc_curve

    assert equal_error_rate(*roc_curve(np.array([1, 0]), np.array([0.8, 0.2]))) == (0.0, 0.8)


def test_no_examples_summarise_to_a_count_of_zero():
    from twostream.trainer.video.metrics import summarize

    assert summarize(np.zeros(0, int), np.zeros((0, 2))) == {"count": 0}
    assert summarize(np.array([1]), np.array([[0.2, 0.8]]))["count"] == 1


def test_report_and_its_flat_form_exactly():
    from twostream.trainer.video import metrics as m

    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    labels = np.array([0, 0, 1, 1, 0])
    scores = m.Scores(
        np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 0]), labels, probabilities, np.array([0.1, 0.5, 0.3, 0.6, 1.6])
    )
    sections = m.report(scores)
    assert sections == m.report(scores, "mean")  # mean is the default aggregation
    video_probabilities = np.array([[0.75, 0.25], [0.375, 0.625], [0.2, 0.8]])
    expected = {"loss": 0.62, "accuracy": 0.8, "clips": 5, "videos": 3}
    for prefix, (y, p) in {"": (labels, probabilities), "video_": (np.array([0, 1, 0]), video_probabilities)}.items():
        curve = m.roc_curve(y, p[:, 1])
        expected.update(
            {
                f"{prefix}log_loss": m.log_loss(y, p),
                f"{prefix}roc_auc": m.roc_auc(*curve[:2]),
                f"{prefix}eer": m.equal_error_rate(*curve)[0],
            }
        )
        assert sections["clip" if not prefix else "video"]["eer_threshold"] == m.equal_error_rate(*curve)[1]
    expected["video_accuracy"] = 2 / 3
    flat = m.flat(sections)
    assert flat.keys() == expected.keys()
    for key, value in expected.items():
        assert flat[key] == pytest.approx(value), key


def test_an_unknown_aggregation_names_the_accepted_ones():
    from twostream.trainer.video.metrics import aggregate_views

    with pytest.raises(ValueError) as error:
        aggregate_views(np.ones((2, 2)) / 2, "median")
    assert str(error.value) == "video aggregation must be one of ('mean', 'max'), got 'median'"


# ---------------------------------------------------------------- trainer/engine/schedule.py


@pytest.mark.tensorflow
def test_schedule_values_exactly():
    import keras

    from twostream.trainer.engine.schedule import SCHEDULES, WarmupDecay

    assert SCHEDULES == ("constant", "cosine", "step")
    rate = lambda schedule, steps: [round(float(schedule(s)), 6) for s in steps]  # noqa: E731
    assert rate(WarmupDecay(2.0, 100, 4, kind="constant"), [0, 1, 3, 4, 99]) == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert rate(WarmupDecay(2.0, 100, kind="constant"), [0, 50]) == [2.0, 2.0]  # no warmup: the peak at once
    assert rate(WarmupDecay(2.0, 100, 1, kind="constant"), [0, 1]) == [2.0, 2.0]  # a one-step warmup ends at once
    cosine = WarmupDecay(1.0, 20, 0, kind="cosine")
    assert rate(cosine, [0, 5, 10, 20, 30]) == [1.0, round(0.5 * (1 + np.cos(np.pi / 4)), 6), 0.5, 0.0, 0.0]
    step = WarmupDecay(1.0, 100, 10, kind="step", step_every=5, step_factor=0.5)
    assert rate(step, [9, 14, 15, 24, 25]) == [1.0, 1.0, 0.5, 0.25, 0.125]  # decay counts after warmup
    assert rate(WarmupDecay(1.0, 100, kind="step", step_every=0, step_factor=0.5), [0, 1, 2]) == [1.0, 0.5, 0.25]
    assert rate(WarmupDecay(1.0, 100, kind="step"), [0, 1]) == [1.0, 0.1]  # defaults: x 0.1 each step
    assert rate(WarmupDecay(1.0, 1, kind="cosine"), [0, 1]) == [1.0, 0.0]  # a one-step run
    config = step.get_config()
    assert config == {
        "peak": 1.0,
        "total_steps": 100,
        "warmup_steps": 10,
        "kind": "step",
        "step_every": 5,
        "step_factor": 0.5,
    }
    assert rate(WarmupDecay.from_config(config), [9, 15, 25]) == [1.0, 0.5, 0.125]
    assert keras.saving.get_registered_name(WarmupDecay) == "twostream>WarmupDecay"
