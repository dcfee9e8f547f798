"""Decoding (codecs, containers, odd inputs, bad files) and optical flow (direction, magnitude, quantisation)."""

import os

import cv2
import numpy as np
import pytest

from twostream.data.decode.flow import FlowEngine, dequantize, quantize
from twostream.data.decode.video import VideoError, decode_frames
from twostream.data.make.synthetic import random_texture, write_video


def _frames(n=6, height=40, width=56):
    rng = np.random.default_rng(0)
    return np.stack([random_texture(rng, height, width) for _ in range(n)])


@pytest.mark.parametrize("codec,ext", [("mjpg", ".avi"), ("mp4v", ".mp4")])
def test_decode_resizes_odd_sizes_to_rgb_square(tmp_path, codec, ext):
    path = str(tmp_path / f"clip{ext}")
    write_video(path, _frames(height=40, width=56), fps=10, codec=codec)
    frames = decode_frames(path, 32)
    assert frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8


def test_grayscale_video(tmp_path):
    path = str(tmp_path / "gray.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32), isColor=False)
    for frame in _frames(4, 32, 32):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    writer.release()
    frames = decode_frames(path, 32)
    assert frames.shape == (4, 32, 32, 3)


@pytest.mark.parametrize(
    "content,reason",
    [(None, "not found"), (b"", "cannot open|no frame"), (b"this is not a video" * 50, "cannot open|no frame")],
)
def test_bad_files_raise_video_error_naming_the_file(tmp_path, content, reason):
    path = str(tmp_path / "bad.mp4")
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(VideoError, match=reason) as error:
        decode_frames(path, 32)
    assert path in str(error.value)


def test_truncated_video_decodes_what_is_there_or_fails_cleanly(tmp_path):
    path = str(tmp_path / "full.avi")
    write_video(path, _frames(8, 32, 32), fps=10)
    cut = str(tmp_path / "cut.avi")
    with open(path, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[: os.path.getsize(path) // 2])
    try:
        frames = decode_frames(cut, 32)
        assert 1 <= len(frames) <= 8
    except VideoError as error:
        assert cut in str(error)


@pytest.mark.parametrize("method", ["dis", "farneback"])
@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (-2, 1)])
def test_flow_of_known_translation(method, dx, dy):
    rng = np.random.default_rng(1)
    world = random_texture(rng, 128, 128)
    a = world[20:84, 20:84]
    b = world[20 - dy : 84 - dy, 20 - dx : 84 - dx]  # content moves by (+dx, +dy) on screen
    flow = FlowEngine(method, "medium").between_frames(np.stack([a, b]))[0][12:-12, 12:-12]
    median = np.median(flow.reshape(-1, 2), axis=0)
    assert np.allclose(median, [dx, dy], atol=0.3), median


def test_unknown_flow_method_and_tvl1_without_contrib_are_clear():
    with pytest.raises(ValueError, match="unknown flow method"):
        FlowEngine("magic")
    if not hasattr(cv2, "optflow"):
        with pytest.raises(ValueError, match="opencv-contrib"):
            FlowEngine("tvl1")


def test_quantisation_is_one_byte_and_within_half_a_step():
    flow = np.linspace(-30, 30, 1000, dtype=np.float32).reshape(-1, 2)
    q = quantize(flow, bound=20.0)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    restored = dequantize(q, 20.0)
    inside = np.abs(flow) <= 20
    assert np.max(np.abs(restored[inside] - flow[inside])) <= 20.0 / 255 + 1e-6
    assert np.all(np.abs(restored[~inside]) >= 20 - 1e-4)  # clipped to the bound
