"""The built-in face detector on real faces: opencv-doc's messi5.jpg filmed by a moving virtual camera (pans, zooms,
a cut). Every frame's face found, the track follows it, gaps interpolated, false runs dropped, a video without a face
counted (not failed), and `twostream prepare --detect-faces` end to end. No TensorFlow: MTCNN runs on cv2.dnn."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from conftest import run_cli

from twostream.data.decode.boxes import read_csv, region_boxes, track_from_rows
from twostream.data.decode.video import iter_frames
from twostream.data.make.face_detectors import FaceModelError, load_detector
from twostream.data.make.faces import PICKS, LiveFaceTrack, detect_faces, link, track_faces
from twostream.data.make.synthetic import write_video
from twostream.data.make.virtual_camera import Shot, face_less, film
from twostream.data.manifest import load_manifest
from twostream.launch import cli

DATA = "/usr/share/doc/opencv-doc/examples/data"
MESSI, FRUITS = f"{DATA}/messi5.jpg", f"{DATA}/fruits.jpg"
MESSI_FACE = (224, 90, 40, 44)  # x, y, w, h in messi5.jpg: brow to chin, drawn by hand
# docs/data.md's camera path, shortened: a pan right with a zoom in, a cut, a pan up-left with a zoom out
SHOTS = (Shot(16, (0.25, 0.15, 1.0), (-0.25, 0.0, 1.6)), Shot(14, (-0.2, -0.15, 1.3), (0.15, 0.1, 1.0)))
SIZE = (384, 240)

needs_photos = pytest.mark.skipif(
    not os.path.isfile(MESSI),
    reason="needs Debian's opencv-doc (messi5.jpg, fruits.jpg): scripts/test_system_deps.sh installs it",
)


def _photo(path: str) -> np.ndarray:
    return cv2.imread(path)[..., ::-1].copy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """DIR/real/messi.mp4 (a face under the moving camera) and DIR/fake/fruits.mp4 (no face); the true face boxes."""
    root = tmp_path_factory.mktemp("faces")
    for label in ("real", "fake"):
        os.makedirs(root / label)
    footage = film(_photo(MESSI), MESSI_FACE, SIZE, SHOTS)
    write_video(str(root / "real" / "messi.mp4"), footage.frames[..., ::-1], 30.0, "mp4v")
    write_video(str(root / "fake" / "fruits.mp4"), face_less(_photo(FRUITS), SIZE, 12)[..., ::-1], 30.0, "mp4v")
    return root, footage


@pytest.fixture(scope="module")
def detector():
    return load_detector()


@needs_photos
def test_every_frame_has_the_face_and_no_other_box(dataset, detector):
    root, footage = dataset
    for frame, truth in zip(iter_frames(str(root / "real" / "messi.mp4")), footage.face):
        faces = detector(frame)
        assert len(faces) == 1, faces  # the crowd, the arm and the knee score below the built-in's threshold
        centre = faces[0, :2] + faces[0, 2:4] / 2
        assert np.all(np.abs(centre - (truth[:2] + truth[2:] / 2)) < truth[2:] / 2), (faces, truth)
        assert 0.5 < np.sqrt(faces[0, 2] * faces[0, 3] / (truth[2] * truth[3])) < 2


@needs_photos
def test_the_crop_follows_the_face_across_pans_zooms_and_the_cut(dataset, detector):
    root, footage = dataset
    rows, frames = track_faces(str(root / "real" / "messi.mp4"), detector)
    assert frames == len(footage.face) and len(rows) == frames  # one followed face in every frame
    crops = region_boxes(track_from_rows(rows, 0.2, "messi"), *SIZE[::-1])
    for (x0, y0, x1, y1), (x, y, w, h) in zip(crops, footage.face):
        assert x0 <= x + w / 2 <= x1 and y0 <= y + h / 2 <= y1  # the face's centre inside the crop
    cut = int(np.argmax(footage.shot))
    jump = np.hypot(*(np.array(rows[cut][1:3]) - rows[cut - 1][1:3]))
    true_jump = np.hypot(*(footage.face[cut, :2] - footage.face[cut - 1, :2]))
    assert jump > true_jump / 2  # the track jumps with the cut, not held where the face was


def test_gaps_are_interpolated_and_a_short_false_run_is_dropped():
    face = np.array([[100.0, 50, 40, 40, 0.99]])
    far = np.array([[300.0, 150, 60, 60, 0.97]])  # larger, elsewhere, one frame: a false detection
    none = np.zeros((0, 5))
    detections = [face, face + [2, 0, 0, 0, 0], none, far, face + [8, 0, 0, 0, 0], face + [10, 0, 0, 0, 0]]
    rows = link(((240, 384), d) for d in detections)
    assert [r[0] for r in rows] == [0, 1, 4, 5]  # frame 3's far box dropped, frames 2-3 left to interpolation
    crops = region_boxes(track_from_rows(rows, 0.0, "t"), 240, 384)
    assert len(crops) == 6 and np.all(np.abs(crops[2:4, 0] - [104, 106]) <= 3)  # centres interpolated (smoothed)


def test_the_picked_face_starts_the_track_and_is_followed():
    big, sure, middle = [10.0, 10, 80, 80, 0.9], [300.0, 20, 30, 30, 0.99], [180.0, 100, 30, 30, 0.8]
    frames = [((240, 384), np.array([big, sure, middle]))] * 3
    starts = {pick: link(frames, pick)[0][1] for pick in PICKS}
    assert starts == {"largest": 10.0, "confident": 300.0, "centre": 180.0}
    moved = [((240, 384), np.array([big, middle])), ((240, 384), np.array([[20.0, 12, 78, 78, 0.9], middle]))]
    assert [r[1] for r in link(moved, "largest")] == [10.0, 20.0]
    with pytest.raises(ValueError, match="choose one of largest, confident, centre"):
        link(frames, "nearest")


@needs_photos
def test_a_video_without_a_face_is_counted_not_failed(dataset, detector, tmp_path):
    root, _ = dataset
    out = tmp_path / "boxes"
    os.makedirs(out)
    (out / "fruits.csv").write_text("frame,x,y,w,h\n0,1,1,5,5\n")  # an earlier run's track
    summary = detect_faces(load_manifest(str(root)).records, None, str(out), progress=False)
    assert summary["failed"] == [] and summary["tracks"] == 1 and summary["detector"] == "builtin"
    assert [os.path.basename(p) for p in summary["no_face"]] == ["fruits.mp4"]
    assert summary["frames_with_face"] == 30 and summary["frames"] == 30 + 12
    assert sorted(os.listdir(out)) == ["messi.csv"]  # the stale track of the face-less video removed


@needs_photos
def test_prepare_detect_faces_end_to_end(dataset, tmp_path):
    root, _ = dataset
    done = run_cli("prepare", "--preset", "tiny", "--data", str(root), "--detect-faces")
    assert done.returncode == 0, done.stderr[-2000:]
    faces, flow = (json.loads(line) for line in done.stdout.splitlines() if line.startswith("{"))
    assert faces["tracks"] == 1 and [os.path.basename(p) for p in faces["no_face"]] == ["fruits.mp4"]
    assert faces["boxes"] == os.path.join(str(root), ".boxes") and faces["failed"] == []
    track = read_csv(os.path.join(faces["boxes"], "messi.csv"), 0.2)
    assert len(track.frames) == 30
    assert flow["failed"] == [] and flow["computed"] == 2 and flow["without_box"] == 1
    assert f"--set data.boxes={faces['boxes']}" in done.stdout


def test_the_flag_takes_no_value_builtin_or_a_model_file(tmp_path):
    parse = cli.build_parser().parse_args
    assert parse(["prepare", "--data", "d", "--detect-faces"]).detect_faces == "builtin"
    assert parse(["prepare", "--data", "d", "--detect-faces", "y.onnx"]).detect_faces == "y.onnx"
    for pick in PICKS:  # the command's choices are the linker's
        assert parse(["prepare", "--data", "d", "--detect-faces", "--pick-face", pick]).pick_face == pick
    with pytest.raises(FaceModelError, match="file not found; pass the path of a YuNet ONNX model"):
        load_detector(str(tmp_path / "yunet.onnx"))


@needs_photos
def test_a_live_feed_s_windows_are_cut_around_the_face_they_follow(dataset, detector):
    """predict --stream --detect-faces: three detections a window, each window's crop around the face (pans, zooms,
    the cut); a window of a face-less video gets no track (the whole frame)."""
    root, footage = dataset
    frames = list(iter_frames(str(root / "real" / "messi.mp4")))
    live, size, hop = LiveFaceTrack(detector), 10, 5
    for end in range(size, len(frames) + 1, hop):
        track = live.update(frames[end - size : end], end - size)
        assert track is not None and len(track.frames) == 3 and track.frames[-1] == end - 1
        (x0, y0, x1, y1), (x, y, w, h) = region_boxes(track, *SIZE[::-1])[end - 1], footage.face[end - 1]
        assert x0 <= x + w / 2 <= x1 and y0 <= y + h / 2 <= y1, (end, track.boxes[-1], footage.face[end - 1])
    assert live.windows_without_face == 0
    empty = LiveFaceTrack(detector)
    assert empty.update(list(iter_frames(str(root / "fake" / "fruits.mp4")))[:size], 0) is None
    assert empty.windows_without_face == 1
