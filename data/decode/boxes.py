"""Regions of interest: per-video box tracks (CSV folder or one JSON), looked up per record, turned into crop boxes.

Formats (docs/data.md, "Regions of interest"); boxes are in pixels of the video's decoded frames, (x, y) the
top-left corner, `frame` the 0-based position of the frame in decoding order:
- a folder holding `<key>.csv` per video, header `frame,x,y,w,h`, one row per frame with a box (rows may skip
  frames: missing frames are interpolated, and the first/last box is held before/after the track);
- one `.json` file: {"<key>": [[frame, x, y, w, h], ...], ...}.
A record's key is its file name without extension (stem), else its manifest video id.

A track becomes one crop box per frame (region_boxes): box centres interpolated and smoothed over
SMOOTH_FRAMES frames; the side is the largest of the smoothed widths and heights, widened by `margin` on each
side (margin 0.2: 1.4x), a square where the frame allows it; clamped (moved, then cut) to lie inside the frame.
Every box of a video has the same size, so all its frames resize to one base resolution.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

SMOOTH_FRAMES = 9  # moving-average window for box centres and sizes (detector jitter is frame to frame)
COLUMNS = ("frame", "x", "y", "w", "h")
PICKS = ("largest", "confident", "centre")  # which face a face track takes when it has none to follow


class BoxError(ValueError):
    """A box file is malformed; the message names the file, the row and the fix."""


@dataclass(frozen=True, eq=False)
class Track:
    """One video's box track: frames (K,) int and boxes (K, 4) float x, y, w, h, sorted by frame; the margin."""

    frames: np.ndarray
    boxes: np.ndarray
    margin: float = 0.2

    def digest(self) -> str:
        """Identifies the crop this track gives (the flow cache key includes it)."""
        content = self.frames.astype("<i8").tobytes() + self.boxes.astype("<f8").tobytes()
        return hashlib.sha1(content + f"|{self.margin}|{SMOOTH_FRAMES}".encode()).hexdigest()


def track_from_rows(rows, margin: float, where: str) -> Track:
    """rows of (frame, x, y, w, h) -> Track; BoxError naming `where` when a row is not five numbers or w, h <= 0."""
    try:
        table = np.asarray([[float(v) for v in row] for row in rows], np.float64).reshape(-1, 5)
    except (TypeError, ValueError):
        raise BoxError(f"{where}: every box must be five numbers frame,x,y,w,h") from None
    if len(table) == 0:
        raise BoxError(f"{where}: the track has no boxes (delete the file to use the full frame)")
    bad = np.flatnonzero((table[:, 3] <= 0) | (table[:, 4] <= 0) | (table[:, 0] < 0) | ~np.isfinite(table).all(1))
    if len(bad):
        raise BoxError(f"{where}: box {int(bad[0])} ({table[bad[0]].tolist()}) needs frame >= 0 and w, h > 0")
    table = table[np.argsort(table[:, 0], kind="stable")]
    return Track(table[:, 0].astype(np.int64), table[:, 1:], margin)


def read_csv(path: str, margin: float) -> Track:
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if header != list(COLUMNS):
            raise BoxError(f"{path}: the header must be {','.join(COLUMNS)}, got {','.join(header) or 'nothing'}")
        return track_from_rows([row for row in reader if row], margin, path)


class BoxTracks:
    """The tracks named by `data.boxes` (a folder of CSVs or one JSON), read on demand and kept."""

    def __init__(self, source: str, margin: float = 0.2):
        self.source, self.margin = source, margin
        self._tracks: dict[str, Track | None] = {}
        self._json = None
        if source.endswith(".json"):
            if not os.path.isfile(source):
                raise BoxError(f"data.boxes={source!r}: file not found")
            with open(source) as f:
                try:
                    self._json = json.load(f)
                except json.JSONDecodeError as error:
                    raise BoxError(f"{source}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
            if not isinstance(self._json, dict):
                raise BoxError(f'{source}: must be an object {{"<video>": [[frame, x, y, w, h], ...]}}')
        elif not os.path.isdir(source):
            raise BoxError(f"data.boxes={source!r} is neither a folder of <video>.csv files nor a .json file")

    def _read(self, key: str) -> Track | None:
        if key not in self._tracks:
            if self._json is not None:
                rows = self._json.get(key)
                where = f"{self.source}[{key}]"
                self._tracks[key] = None if rows is None else track_from_rows(rows, self.margin, where)
            else:
                path = os.path.join(self.source, key + ".csv")
                self._tracks[key] = read_csv(path, self.margin) if os.path.isfile(path) else None
        return self._tracks[key]

    def for_record(self, record) -> Track | None:
        """The record's track by file stem, else by video id; None: no track (the full frame is used)."""
        stem = os.path.splitext(os.path.basename(record.path))[0]
        return self._read(stem) or (self._read(record.video_id) if record.video_id != stem else None)


def _smoothed(values: np.ndarray) -> np.ndarray:
    """Moving average over SMOOTH_FRAMES frames, the ends padded with their edge values."""
    half = SMOOTH_FRAMES // 2
    padded = np.pad(values, (half, half), mode="edge")
    return np.convolve(padded, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="valid")


def region_boxes(track: Track, height: int, width: int) -> np.ndarray:
    """int (F, 4) crop boxes (x0, y0, x1, y1) of one size inside a height x width frame, for frames 0 .. F-1, F-1
    the track's last frame (later frames take its box). The video's length plays no part, so every reader of a
    video (online, cached, prepare) cuts the same boxes."""
    positions = np.arange(int(track.frames[-1]) + 1)
    x, y, w, h = (np.interp(positions, track.frames, track.boxes[:, i]) for i in range(4))
    centre_x, centre_y = _smoothed(x + w / 2), _smoothed(y + h / 2)
    side = float(np.max(np.maximum(_smoothed(w), _smoothed(h)))) * (1 + 2 * track.margin)
    box_w, box_h = int(min(width, max(2, round(side)))), int(min(height, max(2, round(side))))
    x0 = np.clip(np.rint(centre_x - box_w / 2), 0, width - box_w).astype(np.int64)
    y0 = np.clip(np.rint(centre_y - box_h / 2), 0, height - box_h).astype(np.int64)
    return np.stack([x0, y0, x0 + box_w, y0 + box_h], axis=1)
