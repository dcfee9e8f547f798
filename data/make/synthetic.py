"""Writes a seeded, motion-defined synthetic video dataset: one RGB frame cannot tell its classes apart, flow can.

Every clip shows a textured background seen through a panning camera and a textured square "face" patch.
- real: the patch is part of the scene, so it moves exactly with the camera pan (one coherent motion field);
- fake: the patch moves on its own, with a velocity that differs from the pan by at least `min_offset`
  pixels per frame (the inconsistent motion a face swap pasted frame by frame leaves behind).
Textures, positions, pan direction and speed are drawn from the same distributions for both classes,
so the still frames of both classes are statistically identical; only the motion differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ("real", "fake")
# (fourcc, file extension) pairs that OpenCV's pip wheels can write without a system FFmpeg.
CODECS = {"mjpg": ("MJPG", ".avi"), "mp4v": ("mp4v", ".mp4")}


@dataclass(frozen=True)
class SynthSpec:
    num_videos: int = 600  # total clips, split evenly across classes
    frames: int = 20  # frames per clip
    size: int = 64  # frame height and width, pixels
    fps: float = 10.0
    max_speed: float = 2.5  # camera pan speed bound, pixels per frame
    min_offset: float = 1.2  # fake patch speed minus pan speed, at least this many pixels per frame
    patch: int = 24  # side of the moving patch, pixels
    codec: str = "mjpg"
    seed: int = 0


def random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour texture (uint8, HxWx3) with enough structure for optical flow to lock on to."""
    coarse = rng.integers(0, 256, size=(max(2, height // 6), max(2, width // 6), 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.integers(-25, 26, size=(height, width, 3))
    return np.clip(texture.astype(np.int16) + fine, 0, 255).astype(np.uint8)


def _random_velocity(rng: np.random.Generator, max_speed: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, max_speed)
    return speed * np.array([np.cos(angle), np.sin(angle)])


def _fake_patch_velocity(rng: np.random.Generator, pan: np.ndarray, spec: SynthSpec) -> np.ndarray:
    while True:
        velocity = _random_velocity(rng, spec.max_speed)
        if np.linalg.norm(velocity - pan) >= spec.min_offset:
            return velocity


def render_clip(rng: np.random.Generator, label: str, spec: SynthSpec) -> np.ndarray:
    """Renders one clip as uint8 frames (T, size, size, 3) in BGR order, OpenCV's convention."""
    return render_with_patch(rng, label, spec)[0]


def render_with_patch(rng: np.random.Generator, label: str, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """(render_clip's frames, the patch's centre (x, y) in each, pixels (T, 2)): where a fake's evidence is."""
    size, travel = spec.size, int(np.ceil(spec.max_speed * spec.frames)) + 2
    world = random_texture(rng, size + 2 * travel, size + 2 * travel)
    patch = random_texture(rng, spec.patch, spec.patch)
    pan = _random_velocity(rng, spec.max_speed)
    patch_velocity = pan if label == "real" else _fake_patch_velocity(rng, pan, spec)
    margin = spec.patch // 2 + int(spec.max_speed * spec.frames) // 2
    start = rng.uniform(margin, size - margin, size=2) if size > 2 * margin else np.array([size / 2, size / 2])
    start = start + patch_velocity * spec.frames / 2  # the patch passes `start` mid-clip
    frames, centres = [], []
    for t in range(spec.frames):
        # The camera moves by `pan`, so the scene appears to move by -pan on screen; a "real" patch is
        # glued to the scene, so its screen velocity is -pan too.
        cam = np.array([travel, travel]) + pan * t
        frame = _shifted_crop(world, cam, size)
        centre = start - patch_velocity * t
        _paste(frame, patch, centre)
        frames.append(frame)
        centres.append(centre)
    return np.stack(frames), np.array(centres)


def _shifted_crop(image: np.ndarray, top_left_xy: np.ndarray, size: int) -> np.ndarray:
    """Crops size x size at a sub-pixel offset (bilinear), so motion is smooth rather than integer steps."""
    matrix = np.array([[1, 0, -top_left_xy[0]], [0, 1, -top_left_xy[1]]], np.float32)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _paste(frame: np.ndarray, patch: np.ndarray, centre_xy: np.ndarray) -> None:
    side = patch.shape[0]
    matrix = np.array([[1, 0, centre_xy[0] - side / 2], [0, 1, centre_xy[1] - side / 2]], np.float32)
    size = (frame.shape[1], frame.shape[0])
    moved = cv2.warpAffine(patch, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpAffine(np.ones(patch.shape[:2], np.float32), matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    frame[:] = (frame * (1 - mask) + moved * mask).astype(np.uint8)


def write_video(path: str, frames: np.ndarray, fps: float, codec: str = "mjpg") -> None:
    """Encodes uint8 BGR frames (T, H, W, 3) to `path` with OpenCV; raises if the codec cannot be opened."""
    fourcc, _ = CODECS[codec]
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec!r} video to {path}; try --codec mjpg")
    for frame in frames:
        writer.write(frame)
    writer.release()


def synthesize(out_dir: str, spec: SynthSpec = SynthSpec()) -> list[str]:
    """Writes spec.num_videos clips as OUT_DIR/<class>/<class>_<index>.<ext>; returns the written paths."""
    if spec.codec not in CODECS:
        raise ValueError(f"unknown codec {spec.codec!r}; choose one of {sorted(CODECS)}")
    paths = []
    for class_name in CLASSES:
        os.makedirs(os.path.join(out_dir, class_name), exist_ok=True)
    for index in range(spec.num_videos):
        label = CLASSES[index % len(CLASSES)]
        rng = np.random.default_rng([spec.seed, index])  # per-clip stream: any subset regenerates identically
        path = os.path.join(out_dir, label, f"{label}_{index:05d}{CODECS[spec.codec][1]}")
        write_video(path, render_clip(rng, label, spec), spec.fps, spec.codec)
        paths.append(path)
    return paths
