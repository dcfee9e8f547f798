"""Decodes video files with OpenCV into uint8 RGB frames at a fixed training size, seeking to the frames needed."""
from __future__ import annotations

import os
from typing import Callable

import cv2
import numpy as np

SEEK_GAP = 16   # frames: further ahead than this, seek (CAP_PROP_POS_FRAMES) instead of grabbing frame by frame
MIN_FRAMES = 2  # optical flow needs a pair; a one-frame video is reported as bad input


class VideoError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file and the reason."""


def _open(path: str) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise VideoError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: not readable (check its permissions)")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: OpenCV cannot open it (not a video, or an unsupported codec)")
    return capture


def decode_frames(path: str, size: int, max_frames: int = 100_000) -> np.ndarray:
    """Reads frames until the stream ends (the container's frame count is often wrong, so it is not trusted).

    Returns uint8 (N, size, size, 3) in RGB order; raises VideoError when nothing can be decoded.
    """
    capture = _open(path)
    try:
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


def decode_selected(path: str, size: int, choose: Callable[[int], np.ndarray],
                    seek_gap: int = SEEK_GAP) -> tuple[dict[int, np.ndarray], int]:
    """Decodes only the frames `choose(num_frames)` asks for; returns ({index: RGB frame}, num_frames used).

    The container's frame count is taken as a hint to choose indices and seek to them; when a seek lands
    elsewhere or a chosen frame does not exist (the count was too high), the whole video is decoded
    and the indices are chosen again from the true count. A count that is too low only narrows the choice.
    """
    capture = _open(path)
    try:
        hint = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if hint >= MIN_FRAMES:
            wanted = np.unique(choose(hint))
            frames = _read_indices(capture, wanted, size, seek_gap)
            if frames is not None:
                return frames, hint
    finally:
        capture.release()
    everything = decode_frames(path, size)
    if len(everything) < MIN_FRAMES:
        raise VideoError(f"{path}: only {len(everything)} frame decoded; optical flow needs at least {MIN_FRAMES}")
    wanted = np.unique(choose(len(everything)))
    wanted = wanted[wanted < len(everything)]   # a caller's fixed indices may exceed a shorter real video
    return {int(i): everything[i] for i in wanted}, len(everything)


def _read_indices(capture: cv2.VideoCapture, wanted: np.ndarray, size: int, seek_gap: int) -> dict | None:
    """Reads the sorted frame indices `wanted`, seeking over long gaps; None when the video disagrees."""
    frames, position = {}, 0   # position: index of the frame the next read() returns
    for target in (int(i) for i in wanted):
        seeked = target - position > seek_gap
        if seeked:
            capture.set(cv2.CAP_PROP_POS_FRAMES, target)
            if int(capture.get(cv2.CAP_PROP_POS_FRAMES)) != target:
                return None    # the backend could not seek exactly: fall back to reading through
            position = target
        while position < target:   # grab() skips a frame without converting it
            if not capture.grab():
                return None
            position += 1
        ok, frame = capture.read()
        if not ok or frame is None:
            return None        # the container promised more frames than there are
        if seeked and not _on_constant_rate_clock(capture, target):
            return None        # a variable-frame-rate file: the seek may have landed on another frame
        frames[target] = to_rgb(frame, size)
        position += 1
    return frames


def _on_constant_rate_clock(capture: cv2.VideoCapture, index: int) -> bool:
    """Whether the frame just read is shown at index / fps (within half a frame), as in a constant-rate file.

    OpenCV seeks to a frame index through a time computed from the average rate, and counts frames from the
    timestamps it lands on; in a variable-frame-rate file both are wrong, silently (tests/test_codecs.py).
    """
    fps = capture.get(cv2.CAP_PROP_FPS)
    if not fps > 0:
        return False           # no rate to check against: do not trust the seek
    return abs(capture.get(cv2.CAP_PROP_POS_MSEC) - index * 1000.0 / fps) <= 500.0 / fps


def frame_times(path: str) -> np.ndarray:
    """Presentation time of every decodable frame, ms from the first, read by grabbing through the whole file.

    The times come from the container's timestamps (CAP_PROP_POS_MSEC), so a variable-frame-rate file shows
    its true, uneven spacing. Raises VideoError for fewer than MIN_FRAMES frames or times that run backwards.
    """
    capture = _open(path)
    try:
        times = []
        while capture.grab():   # grab() decodes without converting: the cheapest full pass
            times.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    finally:
        capture.release()
    if len(times) < MIN_FRAMES:
        raise VideoError(f"{path}: only {len(times)} frame decoded; optical flow needs at least {MIN_FRAMES}")
    times = np.asarray(times, np.float64)
    if np.any(np.diff(times) < 0) or times[-1] <= times[0]:
        raise VideoError(f"{path}: its frame timestamps do not increase, so it cannot be sampled by time; "
                         "set clip.sample_fps=0 to sample it by frame index")
    return times - times[0]


def decode_by_time(path: str, size: int,
                   choose: Callable[[np.ndarray], np.ndarray]) -> tuple[dict[int, np.ndarray], int]:
    """Decodes the frames `choose(timestamps_ms)` asks for; returns ({index: RGB frame}, number of frames).

    For variable-frame-rate files: a first pass reads every frame's timestamp (frame_times), a second reads
    the chosen frames in order without seeking, since a seek by frame index is not reliable in such a file.
    """
    times = frame_times(path)
    wanted = np.unique(choose(times))
    capture = _open(path)
    try:
        frames = _read_indices(capture, wanted, size, seek_gap=len(times))   # a gap this long never occurs: no seek
    finally:
        capture.release()
    if frames is None:
        raise VideoError(f"{path}: frames {wanted.tolist()} of {len(times)} could not be read again on a second pass")
    return frames, len(times)


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
