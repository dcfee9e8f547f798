"""Per-video frame index: each frame's presentation timestamp and the keyframes, read once, kept in memory and on disk.

Frame i of a video is the i-th frame in presentation order, whatever the container's frame count or
frame rate says. The index is read by demuxing (no decoding: about 1% of the cost of decoding the
video) from the packets' timestamps and keyframe flags, and checked whenever a clip is decoded with it:
a frame that the packets promise but the decoder does not produce, or produces at a timestamp the index
lacks, makes video.py rebuild the index by decoding every frame (`decoded=True`, the truth) and retry.

Frame i is the i-th frame a decoder produces reading from the start. A file whose decoded timestamps are not
increasing (MPEG-4 Part 2 AVIs with packed B-frames: the decoder outputs 1, 3, 2, 5, 4, ...), or whose frames
after a seek disagree with that read (MPEG program streams, broken timestamps), is marked `sequential`: it is
read from the start, and the flag is stored with its index so no later process seeks in it again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

INDEX_VERSION = 2  # bump when the stored layout or how indexes are built changes
MEMORY_ENTRIES = 4096  # indexes kept in memory per process (a 30 s, 30 fps video's takes about 8 KB)


@dataclass(frozen=True)
class FrameIndex:
    pts: np.ndarray  # int64 (N,): presentation timestamps, increasing, in units of time_base
    keyframes: np.ndarray  # int64: sorted positions (indices into pts) a decoder can start from; always holds 0
    time_base: float  # seconds per pts unit
    decoded: bool  # True: built by decoding every frame; False: from the packets, checked when used
    sequential: bool = False  # True: frames are known only by their order from the start: no seeking

    @property
    def seekable(self) -> bool:
        """Whether a frame can be reached by seeking to a keyframe and recognised by its timestamp."""
        return self.timestamped and not self.sequential

    @property
    def timestamped(self) -> bool:
        """False for a file without usable timestamps: frames are then numbered in decoding order, no seeking.

        A sequential index keeps its (sorted) timestamps as the frames' presentation times."""
        return self.time_base > 0

    def __len__(self) -> int:
        return len(self.pts)

    def times_ms(self) -> np.ndarray:
        """Each frame's presentation time in ms from the first frame's (float64)."""
        return (self.pts - self.pts[0]) * (self.time_base * 1000.0)

    def keyframe_before(self, position: int) -> int:
        """The last keyframe at or before frame `position`: where decoding starts to reach that frame."""
        return int(self.keyframes[np.searchsorted(self.keyframes, position, side="right") - 1])

    def position(self, pts: int | None) -> int | None:
        """The frame shown at timestamp `pts`, or None when no frame of the index has it."""
        if pts is None:
            return None
        found = int(np.searchsorted(self.pts, pts))
        return found if found < len(self.pts) and self.pts[found] == pts else None


def from_stamps(stamps: list[tuple[int | None, bool]], time_base: float, decoded: bool) -> FrameIndex | None:
    """(pts, is_keyframe) per frame in any order -> FrameIndex; None when timestamps are missing or repeat."""
    if not stamps or not time_base > 0 or any(pts is None for pts, _ in stamps):
        return None
    stamps = sorted(stamps)
    pts = np.fromiter((p for p, _ in stamps), np.int64, len(stamps))
    if np.any(np.diff(pts) <= 0):
        return None
    keyframes = np.flatnonzero([key for _, key in stamps])
    keyframes = np.union1d([0], keyframes).astype(np.int64)  # decoding from the start always works
    return FrameIndex(pts, keyframes, time_base, decoded)


def from_decoded(stamps: list[tuple[int | None, bool]], time_base: float) -> FrameIndex:
    """(pts, is_keyframe) of every frame in the order a decoder produced them from the start -> FrameIndex.

    Increasing timestamps: a seekable index. Unique but out of order (packed B-frames): sequential, with the
    sorted timestamps as presentation times. Missing or repeated: numbered in decoding order.
    """
    index = from_stamps(stamps, time_base, decoded=True)
    if index is None:
        return in_decoding_order(len(stamps))
    # The index holds every timestamp (none missing) sorted and unique: increasing iff decoded in that order.
    in_order = [pts for pts, _ in stamps] == index.pts.tolist()
    return index if in_order else as_sequential(index)


def as_sequential(index: FrameIndex) -> FrameIndex:
    """The same frames, to be read from the start (seeks into this file disagree with a sequential read)."""
    return FrameIndex(index.pts, np.zeros(1, np.int64), index.time_base, decoded=True, sequential=True)


def in_decoding_order(count: int) -> FrameIndex:
    """The index of a file whose frames carry no usable timestamps: read from the start, numbered as decoded."""
    return FrameIndex(np.arange(count, dtype=np.int64), np.zeros(1, np.int64), 0.0, decoded=True, sequential=True)


class FrameIndexes:
    """Indexes by video file, in memory (least recently used dropped) and, when `folder` is set, on disk.

    The key is the file's identity (absolute path, size, mtime), so a changed or replaced file is indexed anew.
    Disk entries are written atomically (temp file, then os.replace): concurrent processes may share a folder.
    `sequential_paths`: the videos seen with a sequential index (counted in reports).
    """

    def __init__(self, folder: str | None = None, memory_entries: int = MEMORY_ENTRIES):
        self.folder, self.memory_entries = folder, memory_entries
        self._memory: OrderedDict[str, FrameIndex] = OrderedDict()
        self.sequential_paths: set[str] = set()
        if folder:
            os.makedirs(folder, exist_ok=True)

    def key(self, path: str) -> str:
        stat = os.stat(path)
        identity = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{INDEX_VERSION}"
        return hashlib.sha1(identity.encode()).hexdigest()

    def get(self, path: str, build) -> FrameIndex:
        """The stored index of `path`, or `build(path)` (a FrameIndex) stored and returned."""
        if not os.path.isfile(path):
            return build(path)  # no identity to key on: the builder names the missing file (VideoError)
        key = self.key(path)
        index = self._memory.get(key) or self._load(key)
        if index is None:
            index = build(path)
            self._save(key, index)
        self._remember(key, index, path)
        return index

    def replace(self, path: str, index: FrameIndex) -> None:
        """Stores `index` for `path` in place of the one it had (a rebuilt, decoded index)."""
        key = self.key(path)
        self._save(key, index)
        self._remember(key, index, path)

    def _remember(self, key: str, index: FrameIndex, path: str) -> None:
        if index.sequential:
            self.sequential_paths.add(os.path.abspath(path))
        self._memory[key] = index
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_entries:
            self._memory.popitem(last=False)

    def _file(self, key: str) -> str:
        assert self.folder, "disk entries exist only with a folder: _load and _save return before without one"
        return os.path.join(self.folder, key + ".index.npz")

    def _load(self, key: str) -> FrameIndex | None:
        if not self.folder:
            return None
        try:
            with np.load(self._file(key)) as stored:
                return FrameIndex(
                    stored["pts"],
                    stored["keyframes"],
                    float(stored["time_base"]),
                    bool(stored["decoded"]),
                    bool(stored["sequential"]),
                )
        except (OSError, ValueError, KeyError):  # missing, or torn by a crash: build again
            return None

    def _save(self, key: str, index: FrameIndex) -> None:
        if not self.folder:
            return
        handle, temp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(
                    f,
                    pts=index.pts,
                    keyframes=index.keyframes,
                    time_base=index.time_base,
                    decoded=index.decoded,
                    sequential=index.sequential,
                )
            os.replace(temp, self._file(key))
        except BaseException:
            os.unlink(temp)
            raise
