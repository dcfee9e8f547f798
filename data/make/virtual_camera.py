"""Real face footage without a download: a still photo filmed by a moving virtual camera (pans, zooms, a cut, shake).

The camera sees a window of the photo (the output size divided by the zoom) and resamples it to the output size
with sub-pixel precision. Each shot moves the window's centre linearly, relative to the face, and zooms linearly;
a small seeded hand-held shake is added; a cut starts the next shot at once. The face's true box in every frame
follows from the camera, so detectors and tracks can be scored against it (benchmarks/faces.py, the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Shot:
    """One shot: `frames` frames; the window's centre at start and end as offsets from the face centre, in
    fractions of the window (0.25: a quarter window right of the face), and the zoom at start and end."""

    frames: int
    start: tuple[float, float, float]  # (offset x, offset y, zoom)
    end: tuple[float, float, float]


# A pan right with a zoom in, then a cut to a pan up-left with a zoom out: 90 frames, 3 s at 30 fps.
DEFAULT_SHOTS = (
    Shot(48, (0.25, 0.15, 1.0), (-0.25, 0.0, 1.6)),
    Shot(42, (-0.2, -0.15, 1.3), (0.15, 0.1, 1.0)),
)
SHAKE_PX = 1.5  # hand-held shake, output pixels (standard deviation of a 9-frame smoothed noise)


@dataclass(frozen=True)
class Footage:
    """frames (T, H, W, 3) uint8 RGB; face (T, 4) true face box x, y, w, h in output pixels; zoom (T,); shot (T,)."""

    frames: np.ndarray
    face: np.ndarray
    zoom: np.ndarray
    shot: np.ndarray


def film(
    photo: np.ndarray, face, size: tuple[int, int], shots=DEFAULT_SHOTS, seed: int = 0, zoom: float = 1.0
) -> Footage:
    """Films `photo` (RGB) whose face box is `face` (x, y, w, h, photo pixels) at output `size` (width, height);
    `zoom` scales every shot's zoom (0.6: the same path with a face 0.6x as large)."""
    face = np.asarray(face, np.float64)
    out_w, out_h = size
    centres, zooms, shot_ids = _camera_path(photo.shape[:2], face, size, shots, zoom)
    centres = centres + _shake(len(zooms), seed) / zooms[:, None]  # shake is in output pixels
    frames, boxes = [], []
    for (cx, cy), z in zip(centres, zooms):
        # output pixel p shows photo point (p - out/2) / z + centre
        matrix = np.array([[z, 0, out_w / 2 - z * cx], [0, z, out_h / 2 - z * cy]])
        frames.append(cv2.warpAffine(photo, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        x, y = matrix @ np.array([face[0], face[1], 1.0])
        boxes.append((x, y, face[2] * z, face[3] * z))
    return Footage(np.stack(frames), np.array(boxes), zooms, shot_ids)


def _camera_path(shape, face: np.ndarray, size, shots, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window centres (T, 2) in photo pixels, zooms (T,) and shot numbers (T,); each window lies inside the photo
    and holds the whole face wherever the photo allows it."""
    height, width = shape
    face_centre = face[:2] + face[2:] / 2
    centres, zooms, shot_ids = [], [], []
    for number, shot in enumerate(shots):
        for t in np.linspace(0.0, 1.0, shot.frames):
            ox, oy, zoom = (a + (b - a) * t for a, b in zip(shot.start, shot.end))
            zoom *= scale
            window = np.array(size, np.float64) / zoom
            centre = face_centre + np.array([ox, oy]) * window
            slack = np.maximum(window / 2 - face[2:] / 2 - 2, 0)  # keeps the face 2 photo px inside the window
            centre = np.clip(centre, face_centre - slack, face_centre + slack)
            centre = np.clip(centre, window / 2, np.array([width, height]) - window / 2)
            centres.append(centre)
            zooms.append(zoom)
            shot_ids.append(number)
    return np.array(centres), np.array(zooms), np.array(shot_ids)


def _shake(count: int, seed: int) -> np.ndarray:
    """(count, 2) smooth random offsets with standard deviation about SHAKE_PX."""
    steps = np.random.default_rng(seed).normal(size=(count + 8, 2))
    smooth = np.stack([np.convolve(steps[:, i], np.ones(9) / 3, mode="valid") for i in range(2)], axis=1)
    return smooth[:count] * SHAKE_PX


def face_less(photo: np.ndarray, size: tuple[int, int], frames: int = 30, seed: int = 0) -> np.ndarray:
    """(frames, H, W, 3) RGB of a photo without faces under a slow pan and zoom (a video that has no face)."""
    height, width = photo.shape[:2]
    centre = np.array([width, height], np.float64) / 2
    zoom_in = max(size[0] / width, size[1] / height) * 1.2  # the window fits inside the photo
    shots = (Shot(frames, (-0.05, 0.0, zoom_in), (0.05, 0.05, zoom_in * 1.1)),)
    box = np.array([*(centre - 1), 2.0, 2.0])  # a 2 px "face" at the centre: only the path uses it
    return film(photo, box, size, shots, seed).frames
