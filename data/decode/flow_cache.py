"""On-disk cache of a whole video's quantised flow, content-addressed, compact, written atomically, bounded in size.

Key: the file's identity (absolute path, size, mtime) plus everything that changes the stored flow (method,
preset, bound, resolution, storage format, format version) and the video's region (a box track's digest, if any).
Value: uint8 (N-1, H, W, 2), in one of FORMATS
(measured by benchmarks/flow_cache.py, bytes per pixel per frame pair):
- "png" (default): each frame pair's x and y fields side by side as one H x 2W grayscale PNG, lossless (bit-exact,
  so training sees exactly the flow it would compute), 0.10-0.21 bytes; encoding costs a fraction of the flow's
  computation; a clip reads and decodes only its own frame pairs;
- "webp": the same images as lossless WebP, 0.05-0.13 bytes, but encoding costs 0.7-3.7x the flow's computation;
- "raw": a .npy, 2 bytes, memory-mapped on read (the cheapest read).
Concurrent writers are safe: each writes a private temp file and os.replace()s it into place, so a reader sees
all or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import cv2
import numpy as np

FORMAT_VERSION = 3  # bump when the stored layout or the flow computation changes
FORMATS = ("png", "webp", "raw")
SUFFIXES = {"png": ".png.flow", "webp": ".webp.flow", "raw": ".npy"}
ENCODINGS = {
    "png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]),  # zlib level 3: near level 6's size, half its time
    "webp": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
}  # OpenCV: a quality above 100 means lossless


class FlowCache:
    def __init__(self, folder: str, max_bytes: int, params: dict, fmt: str = "png"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown flow cache format {fmt!r}; choose one of {FORMATS}")
        self.folder, self.max_bytes, self.fmt = folder, max_bytes, fmt
        self.params = json.dumps({**params, "format": fmt, "version": FORMAT_VERSION}, sort_keys=True)
        os.makedirs(folder, exist_ok=True)
        self._bytes_estimate = self.total_bytes()  # refreshed by a scan whenever it passes the bound

    def key(self, video_path: str, variant: str = "") -> str:
        """sha1 of file identity + flow parameters + format (+ `variant`: the video's region); a changed or
        replaced video gets a new key."""
        stat = os.stat(video_path)
        identity = f"{os.path.abspath(video_path)}|{stat.st_size}|{stat.st_mtime_ns}|{self.params}"
        identity += f"|{variant}" if variant else ""
        return hashlib.sha1(identity.encode()).hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key + SUFFIXES[self.fmt])

    def get(self, video_path: str, variant: str = ""):
        """The cached flow, read lazily (frames are read when indexed), or None on a miss or an unreadable entry.

        Either a read-only memory map ("raw") or an ImageFlow; both have len(), .shape and flow[indices].
        """
        path = self._file(self.key(video_path, variant))
        try:
            flow = np.load(path, mmap_mode="r") if self.fmt == "raw" else ImageFlow(path)
            os.utime(path)  # mtime = last use: eviction drops the least recently used entries first
            return flow
        except (OSError, ValueError):
            return None

    def put(self, video_path: str, flow: np.ndarray, variant: str = "") -> None:
        """Writes atomically (temp file in the same folder, then os.replace), then evicts past the bound."""
        path = self._file(self.key(video_path, variant))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                if self.fmt == "raw":
                    np.save(f, np.ascontiguousarray(flow, dtype=np.uint8))
                else:
                    write_images(f, flow, *ENCODINGS[self.fmt])
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        self._bytes_estimate += os.path.getsize(path)
        if self._bytes_estimate > self.max_bytes:
            self.evict()

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, path) of every complete entry, of any format."""
        found = []
        for directory, _, files in os.walk(self.folder):
            for name in files:
                if name.endswith(tuple(SUFFIXES.values())):
                    path = os.path.join(directory, name)
                    try:
                        stat = os.stat(path)
                    except FileNotFoundError:  # evicted by another writer meanwhile
                        continue
                    found.append((stat.st_mtime, stat.st_size, path))
        return found

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self) -> None:
        """Deletes least recently used entries until the cache is at most 90% of its bound (hysteresis)."""
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= 0.9 * self.max_bytes:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            total -= size
        self._bytes_estimate = total

    def clear(self) -> int:
        """Deletes every entry, frame index and stale temp file; returns the bytes freed."""
        freed = 0
        for directory, _, files in os.walk(self.folder):
            for name in files:
                if name.endswith((*SUFFIXES.values(), ".index.npz", ".tmp")):
                    path = os.path.join(directory, name)
                    freed += os.path.getsize(path)
                    os.unlink(path)
        self._bytes_estimate = 0
        return freed


# An image-format entry: int64 little-endian header [pairs, height, width], then pairs + 1 offsets (bytes from the
# end of the offsets to each image's start; the last is the end), then one H x 2W grayscale image per frame pair.
HEADER = 24  # bytes


def write_images(f, flow: np.ndarray, extension: str, options: list[int]) -> None:
    pairs, height, width = flow.shape[:3]
    images = []
    for field in flow:
        ok, encoded = cv2.imencode(extension, np.hstack([field[..., 0], field[..., 1]]), options)
        if not ok:
            raise ValueError(f"OpenCV could not encode a {height}x{width} px flow field as {extension}")
        images.append(encoded.tobytes())
    offsets = np.concatenate([[0], np.cumsum([len(image) for image in images])]).astype("<i8")
    f.write(np.array([pairs, height, width], "<i8").tobytes())
    f.write(offsets.tobytes())
    for image in images:
        f.write(image)


class ImageFlow:
    """An image-format cache entry opened for reading: flow[indices] reads and decodes only those frame pairs."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            header = np.frombuffer(f.read(HEADER), "<i8")
        if len(header) != 3 or np.any(header < 1):
            raise ValueError(f"{path}: not a flow cache entry")
        self.pairs, self.height, self.width = (int(v) for v in header)
        self._images_start = HEADER + 8 * (self.pairs + 1)

    def __len__(self) -> int:
        return self.pairs

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.pairs, self.height, self.width, 2)

    def __getitem__(self, indices) -> np.ndarray:
        """uint8 (len(indices), H, W, 2) for an array or slice of frame-pair indices (an int gives one (H, W, 2)
        field)."""
        if isinstance(indices, slice):
            indices = np.arange(self.pairs)[indices]
        single = np.ndim(indices) == 0
        wanted = np.atleast_1d(np.asarray(indices, np.int64))
        if np.any(wanted < 0) or np.any(wanted >= self.pairs):
            raise IndexError(f"{self.path}: frame pairs {wanted.tolist()} out of 0..{self.pairs - 1}")
        fields = np.empty((len(wanted), self.height, self.width, 2), np.uint8)
        with open(self.path, "rb") as f:
            for out, index in enumerate(wanted):
                f.seek(HEADER + 8 * int(index))
                start, end = np.frombuffer(f.read(16), "<i8")
                f.seek(self._images_start + int(start))
                image = cv2.imdecode(np.frombuffer(f.read(int(end - start)), np.uint8), cv2.IMREAD_GRAYSCALE)
                if image is None or image.shape != (self.height, 2 * self.width):
                    raise ValueError(f"{self.path}: frame pair {index} is damaged; clear the flow cache")
                fields[out, ..., 0], fields[out, ..., 1] = image[:, : self.width], image[:, self.width :]
        return fields[0] if single else fields
