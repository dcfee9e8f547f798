"""Decodes video files with OpenCV into uint8 RGB frames at a fixed training size."""
from __future__ import annotations

import os

import cv2
import numpy as np


class VideoError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file and the reason."""


def decode_frames(path: str, size: int, max_frames: int = 100_000) -> np.ndarray:
    """Reads frames until the stream ends (the container's frame count is often wrong, so it is not trusted).

    Returns uint8 (N, size, size, 3) in RGB order; raises VideoError when nothing can be decoded.
    """
    if not os.path.isfile(path):
        raise VideoError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: not readable (check its permissions)")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open it (not a video, or an unsupported codec)")
        frames = []
        while len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            frames.append(to_rgb(frame, size))
    finally:
        capture.release()
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (empty, truncated or corrupt)")
    return np.stack(frames)


def to_rgb(frame: np.ndarray, size: int) -> np.ndarray:
    """OpenCV frame (BGR, BGRA or grayscale, any size) -> uint8 RGB size x size."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.shape[:2] != (size, size):
        interpolation = cv2.INTER_AREA if min(frame.shape[:2]) > size else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (size, size), interpolation=interpolation)
    return frame


def clip_indices(num_decoded: int, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of `length` consecutive frames: a random start when rng is given, else the centred window.

    A video shorter than `length` is looped (indices wrap around), so every clip has the same shape.
    """
    slack = num_decoded - length
    if slack <= 0:
        start = 0
    elif rng is None:
        start = slack // 2
    else:
        start = int(rng.integers(0, slack + 1))
    return (start + np.arange(length)) % num_decoded
