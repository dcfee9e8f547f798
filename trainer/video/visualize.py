"""Sample clips as TensorBoard images: RGB frames, and optical flow in colour (direction = hue, magnitude = value)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from twostream.data.decode.flow_format import to_unit


def flow_to_rgb(flow: np.ndarray) -> np.ndarray:
    """uint8 flow (..., 2) in the format of data/decode/flow_format.py -> uint8 colour image (..., 3).

    Hue is the direction (right = red, down = yellow-green, left = cyan, up = violet; image y points down),
    value the magnitude in units of the clipping bound (zero flow is black, a component at the bound is
    full brightness), saturation 1. The scale is fixed, so images of different clips compare directly.
    """
    units = to_unit(flow.astype(np.float32))  # dequantised flow / bound, in [-1, 1]
    dx, dy = units[..., 0], units[..., 1]
    hue = (np.arctan2(dy, dx) / (2.0 * np.pi)) % 1.0  # angle as a fraction of a turn
    value = np.minimum(np.hypot(dx, dy), 1.0)
    hsv = np.stack([hue, np.ones_like(hue), value], axis=-1)
    return np.round(tf.image.hsv_to_rgb(hsv).numpy() * 255.0).astype(np.uint8)


def filmstrip(clips: np.ndarray) -> np.ndarray:
    """(N, T, H, W, C) -> (N, H, T*W, C): each clip's frames side by side, left to right in time."""
    n, t, h, w, c = clips.shape
    return clips.transpose(0, 2, 1, 3, 4).reshape(n, h, t * w, c)


def clip_images(batch, max_clips: int = 3) -> dict:
    """The first `max_clips` clips of a training batch ({"rgb", "flow"} uint8, labels, ...) as filmstrips:
    {"samples/rgb": (N, H, T*W, 3), "samples/flow": (N, H, T*W, 3)} uint8."""
    rgb, flow = (np.asarray(batch[0][key])[:max_clips] for key in ("rgb", "flow"))
    return {"samples/rgb": filmstrip(rgb), "samples/flow": filmstrip(flow_to_rgb(flow))}
