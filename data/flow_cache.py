"""On-disk cache of a whole video's quantised flow, content-addressed, written atomically, bounded in size.

Key: the file's identity (absolute path, size, mtime) plus everything that changes the flow (method,
preset, bound, resolution, format version). Value: uint8 (N-1, S, S, 2) as a raw .npy, i.e. 2 bytes per
pixel per frame pair, memory-mapped on read so a clip reads only its frames. Concurrent writers are
safe: each writes a private temp file and os.replace()s it into place, so a reader sees all or nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

FORMAT_VERSION = 1   # bump when the stored layout or the flow computation changes


class FlowCache:
    def __init__(self, folder: str, max_bytes: int, params: dict):
        self.folder, self.max_bytes = folder, max_bytes
        self.params = json.dumps({**params, "version": FORMAT_VERSION}, sort_keys=True)
        os.makedirs(folder, exist_ok=True)
        self._bytes_estimate = self.total_bytes()   # refreshed by a scan whenever it passes the bound

    def key(self, video_path: str) -> str:
        """sha1 of file identity + flow parameters; a changed or replaced video gets a new key."""
        stat = os.stat(video_path)
        identity = f"{os.path.abspath(video_path)}|{stat.st_size}|{stat.st_mtime_ns}|{self.params}"
        return hashlib.sha1(identity.encode()).hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.folder, key[:2], key + ".npy")

    def get(self, video_path: str) -> np.ndarray | None:
        """The cached flow (memory-mapped, read-only) or None on a miss or an unreadable entry."""
        path = self._file(self.key(video_path))
        try:
            flow = np.load(path, mmap_mode="r")
            os.utime(path)   # mtime = last use: eviction drops the least recently used entries first
            return flow
        except (OSError, ValueError):
            return None

    def put(self, video_path: str, flow: np.ndarray) -> None:
        """Writes atomically (temp file in the same folder, then os.replace), then evicts past the bound."""
        path = self._file(self.key(video_path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                np.save(f, np.ascontiguousarray(flow, dtype=np.uint8))
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        self._bytes_estimate += os.path.getsize(path)
        if self._bytes_estimate > self.max_bytes:
            self.evict()

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, path) of every complete entry."""
        found = []
        for directory, _, files in os.walk(self.folder):
            for name in files:
                if name.endswith(".npy"):
                    path = os.path.join(directory, name)
                    try:
                        stat = os.stat(path)
                    except FileNotFoundError:   # evicted by another writer meanwhile
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
        """Deletes every entry, frame index (.npz, stored beside) and stale temp file; returns the bytes freed."""
        freed = 0
        for directory, _, files in os.walk(self.folder):
            for name in files:
                if name.endswith((".npy", ".npz", ".tmp")):
                    path = os.path.join(directory, name)
                    freed += os.path.getsize(path)
                    os.unlink(path)
        self._bytes_estimate = 0
        return freed
