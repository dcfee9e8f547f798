"""Which frames a clip takes: dense (length x stride) windows or TSN-style segments; random, centred or uniform views.

Indices are drawn from the frames that have a successor (0 .. num_frames-2), because each sampled frame
is paired with the next one for its optical flow. Videos shorter than a clip are looped (indices wrap).
Variable-frame-rate files can be sampled by time instead: sample_by_time picks on a resampled timeline.

A clip request asks for a TrainView (a seed) or an EvalView (clip k of N, crop k of M); the view types live here,
the lowest module that reads them, so that the loader, the transforms and the Ray requests all share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from twostream.data.decode.clip_spec import SAMPLING_MODES


@dataclass(frozen=True)
class TrainView:
    """A training clip: `seed` draws its frames, its crop and its augmentation (data/decode/clips.py)."""

    seed: int


@dataclass(frozen=True)
class EvalView:
    """An evaluation clip, the same every time: clip `clip` of `clips` evenly spread in time (1: centred), cut at
    crop `crop` of `crops` spread along the long side (1: the centre; data/decode/transforms.py eval_window)."""

    clip: int = 0
    clips: int = 1
    crop: int = 0
    crops: int = 1


View = TrainView | EvalView  # what a clip request asks for (data/distributed/actors.py ClipRequest)
# Where a clip's frames and crop go: drawn from a training clip's generator (made once from its TrainView's seed,
# since frames, crop and augmentation draw from it in turn), or fixed by an EvalView.
Placement = np.random.Generator | EvalView
CENTRED = EvalView()  # one clip, centred in time and space


def sample_frames(
    num_frames: int, length: int, mode: str = "dense", stride: int = 1, placement: Placement = CENTRED
) -> np.ndarray:
    """`length` frame indices: random from a generator, or an EvalView's clip k of N spread evenly (1: centred)."""
    usable = max(1, num_frames - 1)
    if mode == "dense":
        return _dense(usable, length, stride, placement)
    if mode == "segments":
        return _segments(usable, length, placement)
    raise ValueError(f"unknown clip.sampling {mode!r}; choose one of {SAMPLING_MODES}")


def _dense(usable: int, length: int, stride: int, placement: Placement) -> np.ndarray:
    """`length` frames `stride` apart starting at a random, centred or evenly spaced position."""
    slack = usable - (stride * (length - 1) + 1)
    if slack <= 0:
        start = 0
    elif isinstance(placement, np.random.Generator):
        start = int(placement.integers(0, slack + 1))
    elif placement.clips > 1:
        start = int(round(placement.clip * slack / (placement.clips - 1)))
    else:
        start = slack // 2
    return (start + stride * np.arange(length)) % usable


def _segments(usable: int, length: int, placement: Placement) -> np.ndarray:
    """TSN: `length` equal segments, one frame in each (random in training, at a fixed offset otherwise)."""
    if usable < length:
        return np.arange(length) % usable
    edges = np.linspace(0, usable, length + 1)
    low, width = np.floor(edges[:-1]), np.maximum(1, np.floor(edges[1:]) - np.floor(edges[:-1]))
    if isinstance(placement, np.random.Generator):
        offset = placement.random(length)
    else:
        offset = np.full(length, (placement.clip + 0.5) / placement.clips)  # 1 clip: the middle of each segment
    return (low + np.minimum(np.floor(offset * width), width - 1)).astype(np.int64)


def sample_by_time(timestamps_ms: np.ndarray, fps: float, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    """Frame indices picked on the video's timeline resampled at `fps` ticks per second (variable frame rate).

    The timeline has a tick every 1/fps s from the first frame's time to the last frame's. `choose(num_ticks)`
    picks ticks exactly as sample_frames picks frames (so a stride of 2 is 2/fps s whatever the file's rate),
    and each tick becomes the frame on screen at that time: the last one whose timestamp is <= the tick.
    """
    times = np.asarray(timestamps_ms, np.float64) - timestamps_ms[0]
    ticks = np.arange(int(times[-1] * fps / 1000.0 + 1e-6) + 1) * (1000.0 / fps)  # ms
    on_screen = np.searchsorted(times, ticks + 1e-3, side="right") - 1  # 1e-3 ms: a tick on a frame's time shows it
    # sample_frames picks ticks that have a successor tick, so their frame has a successor frame; min() guards ties
    return np.minimum(on_screen[choose(len(ticks))], len(times) - 2)
