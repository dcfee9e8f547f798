"""Decodes video files (FFmpeg, through PyAV) into uint8 RGB frames, native or squashed to a square, frame-accurately.

A clip costs its own frames, not the video's: a frame index (data/decode/frame_index.py) says where every frame
and keyframe is, so reading frame i seeks to the last keyframe at or before it, decodes forward, and
knows each decoded frame by its timestamp. Neither the container's frame count nor its frame rate is
used: both are often wrong (an MPEG-4 AVI with a gap in its timestamps makes OpenCV's frame seek land
one frame early; tests/test_seek.py). Every decoded frame is counted in `counter` (tests, benchmarks).

Frame i is the i-th frame a read from the start produces. When the frames after a seek disagree with the
index, the read falls back: the index rebuilt by decoding, then seeks one keyframe earlier, then reading
from the start, and the file's index is marked sequential (stored) so it is read from the start from then
on (tests/test_real_codecs.py). Only a file that a read from the start cannot decode is bad input.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av
import cv2
import numpy as np

from twostream.data.decode.frame_index import FrameIndex, FrameIndexes, as_sequential, from_decoded, from_stamps

DECODE_THREADS = 1  # per decoding process: one core per decode actor; parallelism comes from the number of actors
MIN_FRAMES = 2  # optical flow needs a pair; a one-frame video is reported as bad input


class VideoError(RuntimeError):
    """A video file could not be opened or decoded; the message names the file and the reason."""


class _Mismatch(Exception):
    """The decoder disagrees with a frame index built from packets: rebuild it by decoding."""


@dataclass
class DecodeCounter:
    frames: int = 0  # frames the decoder produced, wanted or not
    seeks: int = 0  # jumps to a keyframe


counter = DecodeCounter()
_memory_indexes = FrameIndexes()  # for callers that keep no FrameIndexes of their own


@contextlib.contextmanager
def _opened(path: str):
    """(container, its first video stream), decoding on DECODE_THREADS; VideoError when it is no video."""
    if not os.path.isfile(path):
        raise VideoError(f"{path}: file not found")
    if not os.access(path, os.R_OK):
        raise VideoError(f"{path}: not readable (check its permissions)")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise VideoError(f"{path}: FFmpeg cannot open it (not a video, or an unsupported format): {error}") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_count = DECODE_THREADS
        yield container, stream
    finally:
        container.close()


def _decoded(container, stream) -> Iterator[av.VideoFrame]:
    """Every frame the decoder produces from here on, in presentation order; undecodable packets are skipped."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):  # the end, or a damaged container from here on
            return
        try:
            frames = packet.decode()
        except av.FFmpegError:  # a corrupt packet: its frame is missing, which the index check notices
            continue
        for frame in frames:
            counter.frames += 1
            yield frame


def build_index(path: str) -> FrameIndex:
    """The frame index from the packets (no decoding) where they carry timestamps, else by decoding."""
    with _opened(path) as (container, stream):
        try:
            stamps = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        except av.FFmpegError:  # a damaged container: let the decoding pass find what is readable
            stamps = []
        index = from_stamps(stamps, float(stream.time_base or 0), decoded=False)
    return index if index is not None else decode_index(path)


def decode_index(path: str) -> FrameIndex:
    """The frame index by decoding every frame: exactly the frames this decoder produces."""
    with _opened(path) as (container, stream):
        stamps = [(frame.pts, frame.key_frame) for frame in _decoded(container, stream)]
        time_base = float(stream.time_base or 0)
    return from_decoded(stamps, time_base)


def decode_frames(
    path: str, size: int | None, max_frames: int = 100_000, indexes: FrameIndexes | None = None
) -> np.ndarray:
    """Every frame, read through from the start; uint8 (N, size, size, 3) RGB (size None: native (N, H, W, 3)).

    VideoError when none decodes. With `indexes`, the same pass stores the video's decoded frame index.
    """
    frames = [frame if size is None else _square(frame, size) for frame in iter_frames(path, max_frames, indexes)]
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (empty, truncated or corrupt)")
    return np.stack(frames)


def iter_frames(path: str, max_frames: int = 100_000, indexes: FrameIndexes | None = None) -> Iterator[np.ndarray]:
    """Every frame at native resolution, uint8 RGB (H, W, 3), one at a time (memory: one frame).

    With `indexes`, a pass that reaches the end stores the video's decoded frame index (so clips match these frames).
    """
    stamps = []
    with _opened(path) as (container, stream):
        time_base = float(stream.time_base or 0)
        for frame in _decoded(container, stream):
            stamps.append((frame.pts, frame.key_frame))
            yield frame_rgb(frame)
            if len(stamps) >= max_frames:
                return
    if indexes is not None and stamps:
        indexes.replace(path, from_decoded(stamps, time_base))


def iter_timed(path: str) -> Iterator[tuple[np.ndarray, float | None]]:
    """Every frame at native resolution (uint8 RGB) with its presentation time, s (None where the file has none)."""
    with _opened(path) as (container, stream):
        for frame in _decoded(container, stream):
            yield frame_rgb(frame), frame.time


def frame_shape(path: str) -> tuple[int, int]:
    """(height, width) of the video's frames, from its stream header (nothing decoded)."""
    with _opened(path) as (_, stream):
        return int(stream.codec_context.height), int(stream.codec_context.width)


def decode_selected(
    path: str,
    size: int | None,
    choose: Callable[[int], np.ndarray],
    seek_gap: int | None = None,
    indexes: FrameIndexes | None = None,
) -> tuple[dict[int, np.ndarray], int]:
    """Decodes the frames `choose(num_frames)` asks for; returns ({index: RGB frame}, num_frames).

    num_frames is the frame index's count; frames are size x size (None: native). seek_gap: also seek when a frame is
    more than this many frames
    ahead within the same keyframe interval (0: seek for every frame; None: only when that saves decoding).
    """
    return _decode_chosen(path, size, lambda index: choose(len(index)), seek_gap, indexes)


def decode_by_time(
    path: str, size: int | None, choose: Callable[[np.ndarray], np.ndarray], indexes: FrameIndexes | None = None
) -> tuple[dict[int, np.ndarray], int]:
    """Decodes the frames `choose(timestamps_ms)` asks for (variable-frame-rate files); as decode_selected."""
    return _decode_chosen(path, size, lambda index: choose(_times_ms(path, index)), None, indexes)


def frame_times(path: str, indexes: FrameIndexes | None = None) -> np.ndarray:
    """Presentation time of every frame, ms from the first, from the frame index (the file's timestamps)."""
    return _times_ms(path, (indexes or _memory_indexes).get(path, build_index))


def _times_ms(path: str, index: FrameIndex) -> np.ndarray:
    if len(index) < MIN_FRAMES:
        raise VideoError(f"{path}: only {len(index)} frame decoded; optical flow needs at least {MIN_FRAMES}")
    if not index.timestamped:
        raise VideoError(
            f"{path}: its frames carry no timestamps, so it cannot be sampled by time; "
            "set clip.sample_fps=0 to sample it by frame index"
        )
    return index.times_ms()


def _decode_chosen(
    path: str,
    size: int | None,
    choose: Callable[[FrameIndex], np.ndarray],
    seek_gap: int | None,
    indexes: FrameIndexes | None,
) -> tuple[dict[int, np.ndarray], int]:
    """Reads the frames choose(index) names; when the decoder disagrees with the index, falls back (_fallback)."""
    indexes = indexes or _memory_indexes
    index, earlier = indexes.get(path, build_index), 0
    while True:
        if len(index) < MIN_FRAMES:
            raise VideoError(f"{path}: only {len(index)} frame decoded; optical flow needs at least {MIN_FRAMES}")
        wanted = np.unique(choose(index))
        wanted = wanted[wanted < len(index)]  # a caller's fixed indices may exceed a shorter real video
        try:
            return _read(path, size, wanted, index, seek_gap, earlier), len(index)
        except _Mismatch as mismatch:
            index, earlier = _fallback(path, index, earlier, str(mismatch), indexes)


def _fallback(
    path: str, index: FrameIndex, earlier: int, mismatch: str, indexes: FrameIndexes
) -> tuple[FrameIndex, int]:
    """The next way to read after a mismatch: (index, keyframes to start earlier) or VideoError when none is left.

    A packet index is rebuilt by decoding; a decoded one is tried from one keyframe earlier, then marked
    sequential (stored), read from the start. A read from the start that disagrees with a decoding pass
    means the file changed while being read.
    """
    if not index.decoded:
        index = decode_index(path)
        indexes.replace(path, index)
        return index, 0
    if index.seekable and earlier == 0 and len(index.keyframes) > 1:
        return index, 1
    if index.seekable:
        index = as_sequential(index)
        indexes.replace(path, index)
        return index, 0
    raise VideoError(
        f"{path}: {mismatch} reading from the start, although a decoding pass produced it; the file "
        "changed while being read, or its decoder output differs between reads"
    )


def _read(
    path: str, size: int | None, wanted: np.ndarray, index: FrameIndex, seek_gap: int | None, earlier: int = 0
) -> dict[int, np.ndarray]:
    """Frames at the sorted positions `wanted`: seek to the keyframe before one only when that saves decoding.

    earlier: each seek starts this many keyframes before the one at or before its frame.
    """
    frames = {}
    with _opened(path) as (container, stream):
        reader, next_position = None, 0  # next_position: the frame the reader yields next
        for target in (int(i) for i in wanted):
            if reader is None or _should_seek(index, target, next_position, seek_gap):
                reader = _from_keyframe(container, stream, index, target, earlier, fresh=reader is None)
            for position, frame in reader:
                if position == target:
                    frames[target] = _rgb(frame, size)
                    break
                if position > target:
                    raise _Mismatch(f"frame {target} of {len(index)} was not produced by the decoder")
            else:
                raise _Mismatch(f"the stream ended before frame {target} of {len(index)}")
            next_position = target + 1
    return frames


def _should_seek(index: FrameIndex, target: int, next_position: int, seek_gap: int | None) -> bool:
    if not index.seekable:
        return False  # no timestamps to seek by or to recognise frames with, or seeks disagree: read on
    return index.keyframe_before(target) > next_position or (seek_gap is not None and target - next_position > seek_gap)


def _from_keyframe(
    container, stream, index: FrameIndex, target: int, earlier: int = 0, fresh: bool = False
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(position, frame) from the last keyframe at or before `target` on, or `earlier` keyframes before it
    (a sequential index: numbered from the start). `fresh`: nothing was read yet, so keyframe 0 needs no seek
    (seeking to the start of an MPEG program stream loses its first frames).

    A demuxer may land after the keyframe asked for; then the keyframe before that one is tried. A frame
    from the keyframe on that the decoder marks corrupt after the seek is a mismatch (an H.264 4:4:4 IDR
    frame decodes black after a seek, though whole from the start: python3-imageio's cockatoo.mp4).
    """
    if not index.seekable:
        yield from enumerate(_decoded(container, stream))
        return
    keyframe = index.keyframe_before(target)
    for _ in range(earlier):
        keyframe = index.keyframe_before(max(keyframe - 1, 0))
    if keyframe == 0 and fresh:
        for frame in _decoded(container, stream):
            yield _position_of(frame, index), frame
        return
    while True:
        counter.seeks += 1
        container.seek(int(index.pts[keyframe]), stream=stream, backward=True, any_frame=False)
        frames = _decoded(container, stream)
        first = next(frames, None)
        first_position = None if first is None else index.position(first.pts)
        if first_position is None or first_position <= target or keyframe == 0:
            break
        keyframe = index.keyframe_before(keyframe - 1)  # landed past the frame: start one keyframe earlier
    for frame in frames if first is None else itertools.chain([first], frames):
        position = _position_of(frame, index)
        if frame.is_corrupt and position >= keyframe:  # earlier ones: open-GOP leading frames, never returned
            raise _Mismatch(f"frame {position} of {len(index)} came out corrupt after a seek")
        yield position, frame


def _position_of(frame: av.VideoFrame, index: FrameIndex) -> int:
    position = index.position(frame.pts)
    if position is None:
        raise _Mismatch(f"the decoder produced a frame at timestamp {frame.pts}, which the frame index lacks")
    return position


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as uint8 RGB (H, W, 3), converted on this thread. PyAV's default (threads=0) starts and stops
    a pool of slice threads, one per core, for every frame: the decoding thread then sleeps on them, and they fight
    the trainer for cores (benchmarks/frame_convert.py measures it)."""
    return frame.to_ndarray(format="rgb24", threads=1)


def _rgb(frame: av.VideoFrame, size: int | None) -> np.ndarray:
    rgb = frame_rgb(frame)
    return rgb if size is None else _square(rgb, size)


def to_rgb(frame: np.ndarray, size: int) -> np.ndarray:
    """OpenCV frame (BGR, BGRA or grayscale, any size) -> uint8 RGB size x size."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return _square(frame, size)


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB frame of any size -> size x size (area averaging when shrinking)."""
    if rgb.shape[:2] != (size, size):
        interpolation = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (size, size), interpolation=interpolation)
    return rgb
