"""Which frames a clip takes: dense (length x stride) windows or TSN-style segments; random, centred or uniform views.

Indices are drawn from the frames that have a successor (0 .. num_frames-2), because each sampled frame
is paired with the next one for its optical flow. Videos shorter than a clip are looped (indices wrap).
Variable-frame-rate files can be sampled by time instead: sample_by_time picks on a resampled timeline.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from twostream.data.decode.clip_spec import SAMPLING_MODES


def sample_frames(num_frames: int, length: int, mode: str = "dense", stride: int = 1,
                  rng: np.random.Generator | None = None, view: int = 0, views: int = 1) -> np.ndarray:
    """`length` frame indices; rng=None is deterministic: view `view` of `views` spread evenly (1 view: centred)."""
    usable = max(1, num_frames - 1)
    if mode == "dense":
        return _dense(usable, length, stride, rng, view, views)
    if mode == "segments":
        return _segments(usable, length, rng, view, views)
    raise ValueError(f"unknown clip.sampling {mode!r}; choose one of {SAMPLING_MODES}")


def _dense(usable: int, length: int, stride: int, rng, view: int, views: int) -> np.ndarray:
    """`length` frames `stride` apart starting at a random, centred or evenly spaced position."""
    slack = usable - (stride * (length - 1) + 1)
    if slack <= 0:
        start = 0
    elif rng is not None:
        start = int(rng.integers(0, slack + 1))
    elif views > 1:
        start = int(round(view * slack / (views - 1)))
    else:
        start = slack // 2
    return (start + stride * np.arange(length)) % usable


def _segments(usable: int, length: int, rng, view: int, views: int) -> np.ndarray:
    """TSN: `length` equal segments, one frame in each (random in training, at a fixed offset otherwise)."""
    if usable < length:
        return np.arange(length) % usable
    edges = np.linspace(0, usable, length + 1)
    low, width = np.floor(edges[:-1]), np.maximum(1, np.floor(edges[1:]) - np.floor(edges[:-1]))
    if rng is not None:
        offset = rng.random(length)
    else:
        offset = np.full(length, (view + 0.5) / views)   # 1 view: the middle of each segment
    return (low + np.minimum(np.floor(offset * width), width - 1)).astype(np.int64)


def sample_by_time(timestamps_ms: np.ndarray, fps: float, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    """Frame indices picked on the video's timeline resampled at `fps` ticks per second (variable frame rate).

    The timeline has a tick every 1/fps s from the first frame's time to the last frame's. `choose(num_ticks)`
    picks ticks exactly as sample_frames picks frames (so a stride of 2 is 2/fps s whatever the file's rate),
    and each tick becomes the frame on screen at that time: the last one whose timestamp is <= the tick.
    """
    times = np.asarray(timestamps_ms, np.float64) - timestamps_ms[0]
    ticks = np.arange(int(times[-1] * fps / 1000.0 + 1e-6) + 1) * (1000.0 / fps)   # ms
    on_screen = np.searchsorted(times, ticks + 1e-3, side="right") - 1   # 1e-3 ms: a tick on a frame's time shows it
    # sample_frames picks ticks that have a successor tick, so their frame has a successor frame; min() guards ties
    return np.minimum(on_screen[choose(len(ticks))], len(times) - 2)
