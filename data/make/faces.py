"""Face tracks for data.boxes from OpenCV's YuNet detector (cv2.FaceDetectorYN); the ONNX model file is the user's.

Every frame is searched (at native resolution, or shrunk so its long side is at most MAX_SIDE); of the faces
found, the one nearest the previous frame's face is kept (the most confident on the first detection), so a
track follows one person. Frames without a face are left out of the file; data/decode/boxes.py interpolates them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import cv2
import numpy as np

from twostream.data.decode.boxes import COLUMNS
from twostream.data.decode.video import iter_frames

MAX_SIDE = 640  # pixels: YuNet finds faces of 10 px and more; larger frames are shrunk to this first
SCORE_THRESHOLD = 0.6  # YuNet's confidence to keep a face


class FaceModelError(ValueError):
    """The YuNet model file is missing or not loadable; the message says what to pass."""


def load_detector(model_path: str, score_threshold: float = SCORE_THRESHOLD):
    """cv2.FaceDetectorYN from the user's ONNX file (e.g. face_detection_yunet_2023mar.onnx)."""
    if not os.path.isfile(model_path):
        raise FaceModelError(
            f"--detect-faces {model_path!r}: file not found; pass the path of a YuNet ONNX model "
            "(face_detection_yunet_2023mar.onnx from the OpenCV model zoo)"
        )
    try:
        return cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold)
    except cv2.error as error:
        raise FaceModelError(
            f"--detect-faces {model_path!r}: OpenCV cannot load it as a YuNet model: "
            f"{str(error).strip().splitlines()[-1]}"
        ) from None


def _faces(detector, rgb: np.ndarray) -> np.ndarray:
    """(K, 5) x, y, w, h, score of the faces in one RGB frame, in the frame's own pixels."""
    height, width = rgb.shape[:2]
    shrink = min(1.0, MAX_SIDE / max(height, width))
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if shrink < 1.0:
        image = cv2.resize(image, (round(width * shrink), round(height * shrink)), interpolation=cv2.INTER_AREA)
    detector.setInputSize((image.shape[1], image.shape[0]))
    _, found = detector.detect(image)
    if found is None:
        return np.zeros((0, 5))
    boxes = found[:, [0, 1, 2, 3, 14]].astype(np.float64)  # YuNet rows: box, 5 landmarks (x, y), score
    boxes[:, :4] /= shrink
    return boxes


def track_faces(path: str, detector) -> Iterator[tuple[int, float, float, float, float]]:
    """(frame, x, y, w, h) per frame with a face, following the face nearest the previous one."""
    previous = None
    for position, rgb in enumerate(iter_frames(path)):
        faces = _faces(detector, rgb)
        if not len(faces):
            continue
        if previous is None:
            chosen = faces[np.argmax(faces[:, 4])]
        else:
            centres = faces[:, :2] + faces[:, 2:4] / 2
            chosen = faces[np.argmin(np.linalg.norm(centres - (previous[:2] + previous[2:4] / 2), axis=1))]
        previous = chosen
        x, y, w, h = (float(v) for v in chosen[:4])
        yield position, x, y, w, h


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


def detect_faces(records, model_path: str, out_dir: str, progress: bool = True) -> dict:
    """Writes OUT_DIR/<file stem>.csv for every record with a face; returns {"tracks", "no_face", "failed"}."""
    from tqdm import tqdm

    detector = load_detector(model_path)
    os.makedirs(out_dir, exist_ok=True)
    tracks, no_face, failed = 0, [], []
    for path in tqdm(sorted({r.path for r in records}), desc="faces", unit="video", disable=not progress):
        target = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + ".csv")
        try:
            rows = list(track_faces(path, detector))
        except Exception as error:  # a bad file is reported; the others go on
            failed.append(f"{path}: {error}")
            continue
        if rows:
            write_track(rows, target)
            tracks += 1
        else:
            no_face.append(path)
    return {"tracks": tracks, "no_face": no_face, "failed": failed}
