"""Face tracks for data.boxes: a face detector on every frame, one face followed, one `<file stem>.csv` per video.

The detector (data/make/face_detectors.py) is the built-in MTCNN or YuNet from your ONNX file. Linking: a face within
LINK_DISTANCE face sizes of the followed one, and of a similar size, continues the track (the nearest); otherwise (the
first face, after a cut, or when the followed face is lost) the track takes the face that `pick` names: the largest,
the most confident, or the one nearest the frame's centre. A run of fewer than MIN_RUN frames taken that way is
dropped as a false detection when the video has a longer one. Frames without a box are left out of the file;
data/decode/boxes.py interpolates them and holds the first and last box. A video without a face gets no file and is
counted, not failed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable

import numpy as np

from twostream.data.decode.boxes import COLUMNS, PICKS, Track, track_from_rows
from twostream.data.decode.video import iter_frames
from twostream.data.make.face_detectors import BUILTIN, FaceModelError, load_detector

__all__ = [
    "PICKS",
    "FaceModelError",
    "LiveFaceTrack",
    "detect_faces",
    "link",
    "load_detector",
    "track_faces",
    "write_track",
]

LINK_DISTANCE = 1.0  # face sizes (sqrt(w h)) a face's centre may move from the followed one and still be it
LINK_SIZE_RATIO = 2.0  # and its size may change at most this factor
MIN_RUN = 3  # frames: a shorter run that no earlier face continues is a false detection when a longer one exists


def _size(box: np.ndarray) -> float:
    return float(np.sqrt(box[2] * box[3]))


def _centres(faces: np.ndarray) -> np.ndarray:
    return faces[:, :2] + faces[:, 2:4] / 2


def _follow(faces: np.ndarray, followed: np.ndarray) -> int | None:
    """Index of the face nearest the followed box within LINK_DISTANCE sizes and LINK_SIZE_RATIO; None if none."""
    size = _size(followed)
    distance = np.linalg.norm(_centres(faces) - _centres(followed[None])[0], axis=1) / size
    ratio = np.sqrt(faces[:, 2] * faces[:, 3]) / size
    near = (distance <= LINK_DISTANCE) & (ratio <= LINK_SIZE_RATIO) & (ratio >= 1 / LINK_SIZE_RATIO)
    return int(np.flatnonzero(near)[np.argmin(distance[near])]) if near.any() else None


def _pick(faces: np.ndarray, pick: str, shape: tuple[int, int]) -> int:
    """Index of the face `pick` names among `faces` in a frame of `shape` (height, width)."""
    if pick == "confident":
        return int(np.argmax(faces[:, 4]))
    if pick == "centre":
        middle = np.array([shape[1], shape[0]]) / 2
        return int(np.argmin(np.linalg.norm(_centres(faces) - middle, axis=1)))
    return int(np.argmax(faces[:, 2] * faces[:, 3]))


def link(detections: Iterable[tuple[tuple[int, int], np.ndarray]], pick: str = "largest") -> list[tuple]:
    """(frame, x, y, w, h) of one followed face, from each frame's (shape, (K, 5) faces); short false runs dropped."""
    if pick not in PICKS:
        raise ValueError(f"pick {pick!r}: choose one of {', '.join(PICKS)}")
    runs: list[list[tuple]] = []
    followed = None
    for position, (shape, faces) in enumerate(detections):
        if not len(faces):
            continue
        chosen = _follow(faces, followed) if followed is not None else None
        if chosen is None:  # nothing to follow: a new run starts with the face `pick` names
            chosen = _pick(faces, pick, shape)
            runs.append([])
        followed = faces[chosen]
        runs[-1].append((position, *(float(v) for v in followed[:4])))
    longest = max((len(run) for run in runs), default=0)
    return [row for run in runs if len(run) >= MIN_RUN or len(run) == longest for row in run]


class LiveFaceTrack:
    """One face followed through a live feed (`predict --stream --detect-faces`): the detector runs on a few frames of
    each window (DETECTIONS_PER_WINDOW: each costs 40-70 ms on a core, a window's every frame would lag the feed),
    each face found linked to the one followed so far as `link` does; the window's track interpolates between them."""

    DETECTIONS_PER_WINDOW = 3  # its first, middle and last frame

    def __init__(self, detector, pick: str = "largest", margin: float = 0.2):
        if pick not in PICKS:
            raise ValueError(f"pick {pick!r}: choose one of {', '.join(PICKS)}")
        self.detector, self.pick, self.margin = detector, pick, margin
        self.rows: list[tuple] = []  # (frame number, x, y, w, h) of the followed face, of the current window
        self.followed: np.ndarray | None = None
        self.windows_without_face = 0

    def update(self, frames: list[np.ndarray], first: int) -> Track | None:
        """The track of the window `frames` (feed frame numbers from `first`), or None (the whole frame) when no face
        has been seen in it."""
        picked = np.unique(np.linspace(0, len(frames) - 1, self.DETECTIONS_PER_WINDOW).round().astype(int))
        self.rows = [row for row in self.rows if row[0] >= first]  # older windows' boxes: gone with their frames
        for position in picked:
            self._detect(frames[position], first + int(position))
        if not self.rows:
            self.windows_without_face += 1
            return None
        return track_from_rows(sorted(set(self.rows)), self.margin, "the feed's face track")

    def _detect(self, rgb: np.ndarray, number: int) -> None:
        faces = self.detector(rgb)
        if not len(faces):
            return
        chosen = _follow(faces, self.followed) if self.followed is not None else None
        if chosen is None:  # nothing to follow (the first face, after a cut): the face `pick` names
            chosen = _pick(faces, self.pick, rgb.shape[:2])
        self.followed = faces[chosen]
        self.rows.append((number, *(float(v) for v in self.followed[:4])))


def track_faces(path: str, detector, pick: str = "largest") -> tuple[list[tuple], int]:
    """The video's followed face as rows (frame, x, y, w, h), and its number of frames."""
    frames = 0

    def detections():
        nonlocal frames
        for rgb in iter_frames(path):
            frames += 1
            yield rgb.shape[:2], detector(rgb)

    rows = link(detections(), pick)
    return rows, frames


def write_track(rows, path: str) -> int:
    """Writes a data.boxes CSV (atomically); returns the number of rows."""
    rows = list(rows)
    temp = path + ".tmp"
    with open(temp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows([[frame, *(round(v, 1) for v in box)] for frame, *box in rows])
    os.replace(temp, path)
    return len(rows)


def detect_faces(records, model: str | None, out_dir: str, progress: bool = True, pick: str = "largest") -> dict:
    """Writes OUT_DIR/<file stem>.csv for every record with a face (model None or "builtin": the built-in detector,
    else a YuNet .onnx file); returns {"detector", "tracks", "no_face", "failed", "frames", "frames_with_face"}."""
    from tqdm import tqdm

    detector = load_detector(model)
    os.makedirs(out_dir, exist_ok=True)
    summary: dict = {"detector": "yunet" if model not in (None, "", BUILTIN) else BUILTIN, "tracks": 0}
    summary.update(no_face=[], failed=[], frames=0, frames_with_face=0)
    for path in tqdm(sorted({r.path for r in records}), desc="faces", unit="video", disable=not progress):
        target = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".csv")
        try:
            rows, frames = track_faces(path, detector, pick)
        except Exception as error:  # a bad file is reported; the others go on
            summary["failed"].append(f"{path}: {error}")
            continue
        summary["frames"] += frames
        summary["frames_with_face"] += len(rows)
        if rows:
            write_track(rows, target)
            summary["tracks"] += 1
        else:
            summary["no_face"].append(path)
            if os.path.exists(target):  # an earlier run's track: this detector found no face
                os.remove(target)
    return summary
