"""Colour order: a solid colour written in BGR (OpenCV's order) by the test decodes to the same colour in RGB,
from MJPG/AVI (OpenCV's writer) and H.264/MP4 (ffmpeg from imageio-ffmpeg), whole-video and clip paths."""

import cv2
import numpy as np
import pytest
from helpers.raw_video import encode_frames

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import TrainView
from twostream.data.decode.video import decode_frames

RGB = (200, 40, 90)  # distinct channels: any swap or drop moves each by >= 50
FRAMES, HEIGHT, WIDTH, SIZE = 12, 48, 64, 32
TOLERANCE = 12  # lossy codecs and their YUV round trip shift a solid colour by a few levels


def _solid_bgr() -> np.ndarray:
    frames = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    frames[...] = RGB[::-1]  # written in BGR, as OpenCV's writer and `-pix_fmt bgr24` expect
    return frames


def _write_mjpg(path) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for frame in _solid_bgr():
        writer.write(frame)
    writer.release()
    return str(path)


def _write_h264(path) -> str:
    return encode_frames(path, _solid_bgr(), ["-c:v", "libx264", "-pix_fmt", "yuv420p"])


@pytest.fixture(params=["mjpg", "h264"])
def solid_video(request, tmp_path):
    if request.param == "mjpg":
        return _write_mjpg(tmp_path / "solid.avi")
    return _write_h264(tmp_path / "solid.mp4")


def _assert_colour(frames: np.ndarray) -> None:
    mean = frames.reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(mean - RGB) <= TOLERANCE), f"decoded mean colour {mean.round(1)}, written RGB {RGB}"


def test_whole_video_decodes_to_rgb(solid_video):
    frames = decode_frames(solid_video, SIZE)
    assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    _assert_colour(frames)


def test_training_clip_is_rgb(solid_video):
    rgb, _ = ClipLoader(ClipSpec(num_frames=4, size=SIZE)).load(solid_video, TrainView(3))
    assert rgb.shape == (4, SIZE, SIZE, 3)
    _assert_colour(rgb)
