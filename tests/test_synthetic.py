"""The synthetic dataset: reproducible, readable back, and defined by motion rather than appearance."""

import os

import numpy as np
import pytest

from twostream.data.decode.flow import FlowEngine
from twostream.data.decode.video import decode_frames
from twostream.data.make.synthetic import CLASSES, SynthSpec, render_clip, synthesize


def test_same_seed_gives_identical_clips_and_other_seed_differs():
    spec = SynthSpec(frames=6, size=32, patch=12)
    a = render_clip(np.random.default_rng([0, 3]), "fake", spec)
    b = render_clip(np.random.default_rng([0, 3]), "fake", spec)
    c = render_clip(np.random.default_rng([1, 3]), "fake", spec)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("codec", ["mjpg", "mp4v"])
def test_written_videos_decode_with_every_frame(tmp_path, codec):
    paths = synthesize(str(tmp_path), SynthSpec(num_videos=4, frames=9, size=32, patch=12, codec=codec))
    assert len(paths) == 4
    assert sorted(os.listdir(tmp_path)) == sorted(CLASSES)
    for path in paths:
        frames = decode_frames(path, 32)
        assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8


def _flow_spread(label: str, seed: int) -> float:
    """Spatial spread of the flow field: near zero for one coherent motion, large for two motions."""
    spec = SynthSpec(frames=6, size=64, seed=seed)
    frames = render_clip(np.random.default_rng([seed, 0]), label, spec)[..., ::-1]  # BGR -> RGB
    flow = FlowEngine("dis", "medium").between_frames(frames)[:, 8:-8, 8:-8]  # drop the borders, where DIS guesses
    return float(np.mean(np.std(flow, axis=(1, 2))))


def test_classes_differ_in_motion_but_not_in_appearance():
    real = [_flow_spread("real", s) for s in range(6)]
    fake = [_flow_spread("fake", s) for s in range(6)]
    assert np.mean(fake) > 2 * np.mean(real), (real, fake)
    # Appearance: per-clip mean brightness overlaps between classes (no colour or brightness give-away).
    spec = SynthSpec(frames=2, size=64)
    bright = {c: [render_clip(np.random.default_rng([s, 9]), c, spec).mean() for s in range(20)] for c in CLASSES}
    assert abs(np.mean(bright["real"]) - np.mean(bright["fake"])) < 2 * np.std(bright["real"])
