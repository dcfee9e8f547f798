"""Shape-keeping spatial transforms, the same for RGB and flow: short-side resize, scale jitter, random/centre/N crops.

A video's frames are first brought to their *base* resolution, once per video: the short side resized to
`clip.short_side` (aspect ratio kept), or squashed to `clip.size` x `clip.size` (`clip.resize: squash`).
Flow is computed at the base resolution (so the flow cache holds one entry per video, valid for every crop).
A clip is then cut from its base frames by a Window: at training an optional rescale (scale jitter: a short
side drawn from `clip.scale_jitter`) and a random `size` x `size` crop; at evaluation crop k of N spread along
the long side (1: the centre; 3: both ends and the centre, like mmaction2's ThreeCrop). Rescaling flow scales
its values by the same factor as the image (data/decode/flow_format.py scale, per axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from twostream.data.decode import flow_format
from twostream.data.decode.clip_spec import base_shape
from twostream.data.decode.sampling import CENTRED, EvalView


def resize(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One frame (H, W, C) to `shape` (height, width): area averaging when shrinking, bilinear when enlarging."""
    if frame.shape[:2] == tuple(shape):
        return frame
    interpolation = cv2.INTER_AREA if min(frame.shape[:2]) > min(shape) else cv2.INTER_LINEAR
    return cv2.resize(frame, (shape[1], shape[0]), interpolation=interpolation)


@dataclass(frozen=True)
class Window:
    """Where a clip is cut from its base frames: rescaled to `shape` (None: kept), then a square crop."""

    top: int
    left: int
    size: int
    shape: tuple[int, int] | None = None


def train_window(
    rng: np.random.Generator, base: tuple[int, int], size: int, scale_jitter: Sequence[int] = ()
) -> Window:
    """A random crop of `size` (after rescaling to a short side drawn from scale_jitter [min, max], if given).

    Draws nothing from `rng` where there is no choice (a base of size x size and no jitter), so square
    videos at clip size consume the same random numbers as before crops existed."""
    shape = None
    if scale_jitter:
        short = int(rng.integers(scale_jitter[0], scale_jitter[1] + 1))
        shape = base_shape(*base, "short_side", short, size)
    height, width = shape or base
    top = int(rng.integers(0, height - size + 1)) if height > size else 0
    left = int(rng.integers(0, width - size + 1)) if width > size else 0
    return Window(top, left, size, shape)


def eval_window(base: tuple[int, int], size: int, view: EvalView = CENTRED) -> Window:
    """The view's crop k of N, evenly spread along the long side (1 crop: centred), centred on the short side."""
    height, width = base
    slack = max(height, width) - size
    along = view.crop * slack // (view.crops - 1) if view.crops > 1 else slack // 2
    across = (min(height, width) - size) // 2
    return Window(along, across, size) if height > width else Window(across, along, size)


def apply(rgb: np.ndarray, flow: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Cuts `window` from uint8 rgb (T, H, W, 3) and quantised flow (T, H, W, 2) alike; flow values rescaled with it.
    The crops are views into the (rescaled) frames: whoever keeps them copies them where they go (ClipLoader.load)."""
    if window.shape is not None and window.shape != rgb.shape[1:3]:
        (height, width), (new_height, new_width) = rgb.shape[1:3], window.shape
        rgb = np.stack([resize(frame, window.shape) for frame in rgb])
        flow = np.stack([resize(field, window.shape) for field in flow])
        flow[..., 0] = flow_format.scale(flow[..., 0], new_width / width)  # x motion scales with the width
        flow[..., 1] = flow_format.scale(flow[..., 1], new_height / height)
    crop = (slice(None), slice(window.top, window.top + window.size), slice(window.left, window.left + window.size))
    return rgb[crop], flow[crop]
