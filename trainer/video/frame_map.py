"""Maps a clip's pixels back onto the native frame it was cut from: the region, resized to base, its centre crop."""

from __future__ import annotations

import numpy as np

from twostream.data.decode.clip_spec import ClipSpec, base_shape
from twostream.data.decode.transforms import Window, eval_window, resize


def placement(box, spec: ClipSpec) -> tuple[tuple[int, int], Window]:
    """(base shape, eval window) of a region `box` (x0, y0, x1, y1): resized to base, then the centre crop cut."""
    x0, y0, x1, y1 = (int(v) for v in box)
    base = base_shape(y1 - y0, x1 - x0, spec.resize, spec.base_side, spec.size)
    return base, eval_window(base, spec.size)


def clip_rect(box, spec: ClipSpec) -> tuple[float, float, float, float]:
    """Where the clip's crop lies on the native frame: (x0, y0, x1, y1), pixels."""
    (height, width), window = placement(box, spec)
    x0, y0, x1, y1 = (int(v) for v in box)
    sx, sy = (x1 - x0) / width, (y1 - y0) / height  # native pixels per base pixel
    return (
        x0 + window.left * sx,
        y0 + window.top * sy,
        x0 + (window.left + spec.size) * sx,
        y0 + (window.top + spec.size) * sy,
    )


def on_frame(cam: np.ndarray, box, frame_shape, spec: ClipSpec) -> np.ndarray:
    """A clip frame's (S, S) map put back where the clip was cut from: (H, W) of the native frame, 0 elsewhere."""
    x0, y0, x1, y1 = (int(v) for v in box)
    base, window = placement(box, spec)
    canvas = np.zeros(base, np.float32)
    canvas[window.top : window.top + spec.size, window.left : window.left + spec.size] = cam
    placed = np.zeros(frame_shape[:2], np.float32)
    placed[y0:y1, x0:x1] = np.clip(resize(canvas, (y1 - y0, x1 - x0)), 0.0, 1.0)
    return placed


def native_cams(window, cams: dict, spec: ClipSpec) -> dict:
    """{stream: (T, H, W)}: each clip frame's map on the native frame it came from."""
    return {
        stream: np.stack(
            [on_frame(c, box, frame.shape, spec) for c, box, frame in zip(cam, window.boxes, window.frames)]
        )
        for stream, cam in cams.items()
    }
