"""Training augmentation applied identically to both streams: one random crop (scale jitter) and one flip per clip.

Flow is augmented in its uint8 quantised form (data/decode/flow_format.py), without dequantising:
- resizing a crop of side c back to `size` magnifies motion by size / c (flow_format.scale);
- a horizontal flip mirrors the image and negates horizontal flow, which is exact on stored values (flow_format.negate).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twostream.data.decode import flow_format


@dataclass(frozen=True)
class Augmentation:
    top: int
    left: int
    side: int  # crop side in pixels, <= size
    flip: bool


def draw(rng: np.random.Generator, size: int, crop_scale_min: float, flip: bool) -> Augmentation:
    """One crop (side = size x U(crop_scale_min, 1)) at a random position, and a coin flip when enabled."""
    side = int(round(size * rng.uniform(crop_scale_min, 1.0))) if crop_scale_min < 1.0 else size
    side = max(2, min(size, side))
    top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    return Augmentation(top, left, side, bool(flip and rng.random() < 0.5))


def apply(rgb: np.ndarray, flow: np.ndarray, aug: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    """Applies `aug` to uint8 rgb (T, S, S, 3) and uint8 quantised flow (T, S, S, 2); shapes are kept, and a flipped
    rgb is a view (ClipLoader.load copies the clip where it goes)."""
    size = rgb.shape[1]
    if aug.side < size:
        rgb = _crop_resize(rgb, aug, size)
        flow = _crop_resize(flow, aug, size)
        flow = flow_format.scale(flow, size / aug.side)
    if aug.flip:
        rgb = rgb[:, :, ::-1]
        flow = flow[:, :, ::-1].copy()
        flow[..., 0] = flow_format.negate(flow[..., 0])
    return rgb, flow


def _crop_resize(frames: np.ndarray, aug: Augmentation, size: int) -> np.ndarray:
    crops = frames[:, aug.top : aug.top + aug.side, aug.left : aug.left + aug.side]
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])
