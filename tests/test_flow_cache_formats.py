"""Compact flow cache: lossless PNG/WebP entries round-trip bit-exactly, read lazily; format in the key; eviction;
projection."""

import os

import numpy as np
import pytest

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FORMATS, FlowCache
from twostream.data.decode.sampling import EvalView, TrainView
from twostream.data.make.prepare import BYTES_PER_PIXEL, prepare
from twostream.data.make.synthetic import random_texture, write_video
from twostream.data.manifest import load_manifest

SIZE = 16
PARAMS = ClipSpec(size=SIZE).flow_params()


def _video(folder, frames: int, name: str = "v") -> str:
    rng = np.random.default_rng(frames)
    path = os.path.join(str(folder), f"{name}{frames}.avi")
    write_video(path, np.stack([random_texture(rng, 24, 20) for _ in range(frames)]), fps=10)
    return path


def _flow(pairs: int, seed: int = 0) -> np.ndarray:
    """Smooth fields with both extremes (0 and 255) and fine noise: what a compressor must keep exactly."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, SIZE)[None, :, None, None]
    flow = np.clip(ramp + rng.integers(-3, 4, size=(pairs, SIZE, SIZE, 2)), 0, 255).astype(np.uint8)
    flow[:, 0, 0] = (0, 255)
    return flow


@pytest.mark.parametrize("fmt", FORMATS)
def test_entries_round_trip_exactly_and_read_only_the_pairs_asked_for(tmp_path, fmt):
    video = _video(tmp_path, 5)
    cache = FlowCache(str(tmp_path / "cache"), 1 << 20, PARAMS, fmt)
    flow = _flow(12)
    cache.put(video, flow)
    stored = cache.get(video)
    assert len(stored) == 12 and stored.shape == (12, SIZE, SIZE, 2)
    wanted = np.array([7, 2, 2, 11])  # any order, repeats
    assert np.array_equal(np.asarray(stored[wanted]), flow[wanted])
    assert np.array_equal(np.asarray(stored[3]), flow[3]) and np.array_equal(np.asarray(stored[2:9:3]), flow[2:9:3])
    if fmt != "raw":
        with pytest.raises(IndexError):
            stored[np.array([12])]
        assert cache.total_bytes() < flow.nbytes  # compressed, yet exact


def test_the_format_is_in_the_key(tmp_path):
    video = _video(tmp_path, 5)
    caches = {fmt: FlowCache(str(tmp_path / "cache"), 1 << 20, PARAMS, fmt) for fmt in FORMATS}
    assert len({cache.key(video) for cache in caches.values()}) == len(FORMATS)
    caches["png"].put(video, _flow(4))
    assert caches["png"].get(video) is not None
    assert caches["webp"].get(video) is None and caches["raw"].get(video) is None  # same folder, other format: a miss
    with pytest.raises(ValueError, match="unknown flow cache format"):
        FlowCache(str(tmp_path / "cache"), 1 << 20, PARAMS, "jpeg")


def test_png_entries_are_evicted_least_recently_used_first(tmp_path):
    videos = [_video(tmp_path, frames) for frames in (5, 6, 7, 8)]
    noise = np.random.default_rng(1).integers(0, 256, size=(20, SIZE, SIZE, 2), dtype=np.uint8)  # incompressible
    probe = FlowCache(str(tmp_path / "probe"), 1 << 30, PARAMS)
    probe.put(videos[0], noise)
    entry = probe.total_bytes()
    cache = FlowCache(str(tmp_path / "cache"), int(3.5 * entry), PARAMS)  # room for three entries
    for video in videos[:3]:
        cache.put(video, noise)
        os.utime(cache._file(cache.key(video)), ns=(10**9 * len(cache.entries()),) * 2)  # distinct last-use times
    assert cache.get(videos[0]) is not None  # used now: the most recent
    cache.put(videos[3], noise)  # past the bound: evicts down to 90% of it
    assert cache.total_bytes() <= 0.9 * 3.5 * entry
    assert cache.get(videos[1]) is None and cache.get(videos[0]) is not None and cache.get(videos[3]) is not None


def test_a_damaged_entry_is_a_miss_or_a_clear_error(tmp_path):
    video = _video(tmp_path, 5)
    cache = FlowCache(str(tmp_path / "cache"), 1 << 20, PARAMS)
    cache.put(video, _flow(6))
    path = cache._file(cache.key(video))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 40])  # the last image cut short
    with pytest.raises(ValueError, match="damaged; clear the flow cache"):
        cache.get(video)[np.array([5])]
    open(path, "wb").write(b"\0" * 8)  # not even a header
    assert cache.get(video) is None


def test_cached_clips_equal_online_clips_bit_for_bit(tmp_path):
    video = _video(tmp_path, 14)
    spec = ClipSpec(num_frames=4, size=SIZE)
    cached = ClipLoader(spec, FlowCache(str(tmp_path / "cache"), 1 << 20, spec.flow_params()))
    online = ClipLoader(spec)
    for view in (EvalView(), TrainView(3)):
        for a, b in zip(cached.load(video, view), online.load(video, view)):
            assert np.array_equal(a, b)


def test_prepare_projects_disk_use_before_it_starts(tmp_path, capsys):
    for label, frames in (("a", 6), ("b", 9)):
        os.makedirs(tmp_path / "d" / label)
        _video(tmp_path / "d" / label, frames)
    spec = ClipSpec(num_frames=2, size=SIZE)
    cache = FlowCache(str(tmp_path / "d" / ".flow_cache"), 500, spec.flow_params())  # below the projection
    summary = prepare(load_manifest(str(tmp_path / "d")).records, spec, cache, progress=True)
    pairs = (6 - 1) + (9 - 1)
    low, high = BYTES_PER_PIXEL["png"]
    pixels = pairs * 19 * SIZE  # 24x20 frames with their short side resized to SIZE (16): 19x16
    assert summary["projected_bytes"] == [int(pixels * low), int(pixels * high)]
    printed = capsys.readouterr().err
    assert f"2 videos, {pairs} frame pairs" in printed and "raise data.flow_cache_gb" in printed
    assert printed.index("frame pairs") < printed.index("flow:")  # before the progress bar starts
