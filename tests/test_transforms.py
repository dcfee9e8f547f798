"""Shape-keeping transforms: aspect ratio kept, RGB and flow cut alike, crops by seed and view, squash as before."""

import os

import cv2
import numpy as np
import pytest

from twostream.data.decode import transforms
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow import FlowEngine
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.flow_format import dequantize, quantize
from twostream.data.decode.sampling import EvalView, TrainView, sample_frames
from twostream.data.decode.video import decode_frames
from twostream.data.distributed.actors import ClipResult
from twostream.data.distributed.pipeline import EpochStream
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.make.synthetic import random_texture, write_video
from twostream.data.manifest import VideoRecord
from twostream.trainer.config import ConfigError, load
from twostream.trainer.video import metrics

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


def _circle_video(folder, height=48, width=96, radius=12, frames=6) -> str:
    """A white disc centred in a dark, non-square frame (every frame alike)."""
    frame = np.zeros((height, width, 3), np.uint8)
    cv2.circle(frame, (width // 2, height // 2), radius, (255, 255, 255), thickness=-1)
    path = os.path.join(str(folder), "circle.avi")
    write_video(path, np.stack([frame] * frames), fps=10)
    return path


def _extent(rgb_frame: np.ndarray) -> tuple[int, int]:
    """(height, width) in pixels of the bright shape."""
    ys, xs = np.nonzero(rgb_frame.mean(axis=2) > 128)
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def _panning_video(folder, height=48, width=72, frames=8, shift=3) -> str:
    """A texture moving `shift` px to the right per frame."""
    texture = random_texture(np.random.default_rng(0), height, width + shift * frames)
    clip = np.stack([texture[:, shift * (frames - t) : shift * (frames - t) + width] for t in range(frames)])
    path = os.path.join(str(folder), "pan.avi")
    write_video(path, np.ascontiguousarray(clip), fps=10)
    return path


def test_short_side_resize_keeps_a_circle_round_and_squash_does_not(tmp_path):
    path = _circle_video(tmp_path)
    kept, _ = ClipLoader(ClipSpec(num_frames=2, size=32)).load(path, EvalView())  # 48x96 -> 32x64, centre crop
    height, width = _extent(kept[0])
    assert kept.shape == (2, 32, 32, 3)
    assert abs(height - width) <= 1 and abs(height - 16) <= 2  # radius 12 x 32/48: a disc of ~16 px
    squashed, _ = ClipLoader(ClipSpec(num_frames=2, size=32, resize="squash")).load(path, EvalView())
    height, width = _extent(squashed[0])
    assert width < 0.65 * height  # 48x96 -> 32x32 halves the width against the height: an ellipse


def test_flow_is_scaled_with_the_image_and_computed_at_the_base_resolution(tmp_path):
    path = _panning_video(tmp_path, shift=3)
    spec = ClipSpec(num_frames=4, size=32, flow_bound=8.0)  # 48x72 -> 32x48: 3 px/frame becomes 2 px/frame
    _, flow = ClipLoader(spec).load(path, EvalView())
    motion = dequantize(flow, spec.flow_bound)[:, 8:-8, 8:-8]  # away from the borders
    assert abs(np.median(motion[..., 0]) - 2.0) < 0.3 and abs(np.median(motion[..., 1])) < 0.3


def test_rgb_and_flow_are_cut_by_the_same_window_and_rescaled_alike():
    rng = np.random.default_rng(0)
    rgb = np.zeros((2, 40, 60, 3), np.uint8)
    rgb[:, 20:24, 30:34] = 255  # a marker, at the same place in both streams
    field = np.zeros((2, 40, 60, 2), np.float32)
    field[:, 20:24, 30:34] = (2.0, -1.0)  # the marker moves 2 px right, 1 px up
    flow = quantize(field, 8.0)
    window = transforms.train_window(rng, (40, 60), 32, scale_jitter=[60, 60])  # 40x60 -> 60x90, then a crop
    assert window.shape == (60, 90)
    rgb_out, flow_out = transforms.apply(rgb, flow, window)
    assert rgb_out.shape == (2, 32, 32, 3) and flow_out.shape == (2, 32, 32, 2)
    marked = rgb_out[0].mean(axis=2) > 128
    moving = np.abs(dequantize(flow_out[0], 8.0)[..., 0]) > 1.0
    assert marked.any() and np.array_equal(marked, moving)  # the same pixels in both streams
    inside = dequantize(flow_out[0], 8.0)[marked]  # edge pixels are blended by the resize; the middle is not
    np.testing.assert_allclose((inside[:, 0].max(), inside[:, 1].min()), (3.0, -1.5), atol=8.0 / 127.5)  # x1.5


def test_random_crop_differs_by_seed_and_the_centre_crop_is_deterministic(tmp_path):
    windows = {transforms.train_window(np.random.default_rng(seed), (32, 96), 32) for seed in range(8)}
    assert len({w.left for w in windows}) > 1 and {w.top for w in windows} == {0}
    assert transforms.eval_window((32, 96), 32) == transforms.Window(0, 32, 32)  # centred on the long side
    assert [transforms.eval_window((96, 40), 32, EvalView(crop=k, crops=3)) for k in range(3)] == [
        transforms.Window(0, 4, 32),
        transforms.Window(32, 4, 32),
        transforms.Window(64, 4, 32),
    ]  # ThreeCrop
    path = _panning_video(tmp_path, height=32, width=96)
    loader = ClipLoader(ClipSpec(num_frames=2, size=32, sampling="segments"))
    first, again = loader.load(path, EvalView()), loader.load(path, EvalView())
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # segments sampling of 2 frames from 8: the seeds below differ in the crop as well as in time
    crops = {loader.load(path, TrainView(seed))[0].tobytes() for seed in range(4)}
    assert len(crops) == 4


def test_square_frames_at_clip_size_draw_no_crop_randomness(tmp_path):
    """The demo's 64x64 videos at clip.size 64: no crop, and the same random numbers as before crops existed."""
    rng = np.random.default_rng(5)
    assert transforms.train_window(rng, (64, 64), 64) == transforms.Window(0, 0, 64)
    assert rng.integers(0, 1 << 30) == np.random.default_rng(5).integers(0, 1 << 30)


def test_squash_reproduces_the_old_pipeline(tmp_path):
    path = _panning_video(tmp_path)
    spec = ClipSpec(num_frames=3, size=32, resize="squash", flow_bound=8.0)
    rgb, flow = ClipLoader(spec).load(path, TrainView(4))
    frames = sample_frames(8, 3, "dense", 1, np.random.default_rng(4))
    squashed = decode_frames(path, 32)  # every frame squashed to 32x32, as the decoder used to
    expected = [quantize(FlowEngine().between_frames(squashed[[i, i + 1]])[0], 8.0) for i in frames]
    assert np.array_equal(rgb, squashed[frames]) and np.array_equal(flow, np.stack(expected))


def test_cache_key_changes_with_every_setting_that_changes_flow(tmp_path):
    path = _panning_video(tmp_path)

    def key(**fields) -> str:
        return FlowCache(str(tmp_path / "c"), 1 << 20, ClipSpec(**fields).flow_params()).key(path)

    assert key(short_side=48) != key(short_side=40)
    assert key(size=32) != key(size=32, resize="squash") != key(size=48, resize="squash")
    assert key(size=32, short_side=48) == key(size=40, short_side=48)  # the crop size does not change the flow
    assert key(size=32) == key(size=32, short_side=32)  # short_side 0 means clip.size
    assert key(flow_bound=10.0) != key(flow_bound=20.0) and key(dis_preset="fast") != key(dis_preset="medium")
    assert key(short_side=48) != FlowCache(str(tmp_path / "c"), 1 << 20, ClipSpec(short_side=48).flow_params()).key(
        path, variant="a region's digest"
    )


def test_clip_settings_are_checked_when_the_config_is_built():
    assert load(overrides=["clip.short_side=80", "clip.scale_jitter=[64, 96]"]).clip.scale_jitter == [64, 96]
    with pytest.raises(ConfigError, match=r"clip.short_side=40 must be at least clip.size=64"):
        load(overrides=["clip.short_side=40"])
    with pytest.raises(ConfigError, match=r"clip.scale_jitter must be \[\] or \[min, max\]"):
        load(overrides=["clip.scale_jitter=[96, 64]"])
    with pytest.raises(ConfigError, match=r"clip.scale_jitter must be list, got 72 \(int\)"):
        load(overrides=["clip.scale_jitter=72"])
    with pytest.raises(ConfigError, match="clip.resize must be one of short_side, squash"):
        load(overrides=["clip.resize=stretch"])
    with pytest.raises(ConfigError, match="eval.spatial_crops must be at least 1"):
        load(overrides=["eval.spatial_crops=0"])


class _RecordingPool:
    """Stands in for the Ray DecoderPool: answers each request with a clip and remembers it."""

    def __init__(self):
        self.requests = []
        self.actors = []  # what EpochStream reads of a pool besides map

    def map(self, requests, stats=None, then=None, in_place=False):
        for request in requests:
            self.requests.append(request)
            yield ClipResult(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 2), np.uint8), None, request.path)
        if then is not None:
            then()


def test_spatial_crops_are_views_aggregated_per_video():
    records = [VideoRecord(f"v{i}.avi", i % 2, f"v{i}") for i in range(5)]
    views, crops = 2, 3
    plan = plan_epoch(len(records) * views * crops, 4, 0, 1, seed=0, epoch=0, train=False)
    pool = _RecordingPool()
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=False, views=views, crops=crops)
    rows = [(index[weights > 0], labels[weights > 0]) for _, _, labels, weights, index in stream]
    index = np.concatenate([r[0] for r in rows])
    labels = np.concatenate([r[1] for r in rows])
    # every (video, temporal view, crop) requested exactly once
    asked = sorted(
        (r.path, r.view.clip, r.view.clips, r.view.crop, r.view.crops)
        for r in pool.requests[: len(records) * views * crops]
    )
    everything = [(rec.path, v, views, c, crops) for rec in records for v in range(views) for c in range(crops)]
    assert asked == sorted(everything)
    probabilities = np.tile([[0.3, 0.7]], (len(index), 1))
    scores = metrics.Scores(
        index[:, 0].astype(np.int64),
        index[:, 1].astype(np.int64),
        labels.astype(np.int64),
        probabilities,
        np.zeros(len(index)),
    )
    flat = metrics.flat(metrics.report(metrics.Scores.concatenate([scores])))
    assert flat["clips"] == len(records) * views * crops and flat["videos"] == len(records)
