"""Evidence for `predict --explain`: windows scored along a video or feed, Grad-CAM of the strongest on its frames.

Windows are cut as `predict --stream` cuts a feed (launch/commands/stream.py): loader.window_frames() consecutive
frames every `hop` frames (and one ending on the last frame), each made into the model's evaluation clip (the centre
crop of the region or frame, flow computed here, clip.sample_fps not applied). Every window's class probabilities
make the score over time. The target class is the one asked for, else the video's prediction (the windows' mean);
the `clips` windows with its highest probability get a Grad-CAM per stream (models/gradcam.py), mapped from the
clip back onto the native frames it was cut from (trainer/video/frame_map.py), and trainer/video/pictures.py draws
them.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from twostream.data.decode.boxes import Track
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import EvalView, sample_frames
from twostream.data.decode.video import VideoError, iter_timed

if TYPE_CHECKING:  # TensorFlow: imported by whoever builds the model, not by cutting windows (a live feed's loop)
    from twostream.models.gradcam import GradCam

BATCH = 8  # windows scored per model call


@dataclass
class Cut:
    """One window of a video: the clip the model scores, and where its frames came from."""

    first: int  # frame number (in the video or feed) of the window's first frame
    times: tuple[float, float]  # its first and last frame, s (frame numbers where the file has no times)
    rgb: np.ndarray  # (T, S, S, 3) uint8 model input
    flow: np.ndarray  # (T, S, S, 2) uint8 model input
    frames: np.ndarray  # (T, H, W, 3) the native frames the clip sampled
    numbers: np.ndarray  # (T,) their frame numbers
    boxes: np.ndarray  # (T, 4) x0, y0, x1, y1 of the region each was cut from, native pixels
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (classes,), once scored


def cut(loader: ClipLoader, frames: list, first: int, times: tuple, track: Track | None = None) -> Cut:
    """The window of consecutive native RGB `frames` (video frame numbers from `first`) as the model's clip."""
    native = np.stack(frames)
    rgb, flow = loader.from_frames(native, track, first)
    spec = loader.spec
    picked = sample_frames(len(native), spec.num_frames, spec.sampling, spec.frame_stride, EvalView())
    region = loader.regions(track, *native.shape[1:3])  # what from_frames cut each sampled frame from
    boxes = np.array([region(first + int(i)) for i in picked])
    return Cut(first, times, rgb, flow, native[picked], first + picked, boxes)


def windows(path: str, loader: ClipLoader, hop: int, track: Track | None = None) -> Iterator[Cut]:
    """The video's windows in order: every `hop` frames, plus one ending on its last frame (a video shorter than a
    window gives one window of all its frames, looped as sample_frames loops a short video)."""
    size = loader.window_frames()
    ring: collections.deque = collections.deque(maxlen=size)  # (rgb, time or frame number): memory of one window
    count, last_end = 0, 0
    for count, (frame, time) in enumerate(iter_timed(path), start=1):
        ring.append((frame, count - 1 if time is None else time))
        if count >= size and (count - size) % hop == 0:
            yield cut(loader, [f for f, _ in ring], count - len(ring), (ring[0][1], ring[-1][1]), track)
            last_end = count
    if count >= 2 and last_end < count:
        yield cut(loader, [f for f, _ in ring], count - len(ring), (ring[0][1], ring[-1][1]), track)


class Evidence:
    """One video's scored windows: every window's times and probabilities, and the `clips` highest of each class
    (of the target only, when it is given) with their clips and frames (memory: that many windows)."""

    def __init__(self, class_names: list[str], clips: int = 3, target: int | None = None):
        self.class_names, self.clips, self.asked = class_names, clips, target
        self.timeline: list[tuple[int, tuple, np.ndarray]] = []  # (first frame, times, probabilities)
        self.best: dict[int, list[Cut]] = {}  # class -> its highest windows, highest first

    def add(self, window: Cut, probabilities: np.ndarray) -> None:
        window.probabilities = probabilities
        self.timeline.append((window.first, window.times, probabilities))
        for k in range(len(self.class_names)) if self.asked is None else [self.asked]:
            kept = sorted([*self.best.get(k, []), window], key=lambda w: -w.probabilities[k])
            self.best[k] = kept[: self.clips]

    def target(self) -> int:
        """The class asked for, else the one the windows' mean probability predicts."""
        if self.asked is not None:
            return self.asked
        return int(np.argmax(np.mean([p for _, _, p in self.timeline], axis=0)))

    def strongest(self) -> list[Cut]:
        return self.best.get(self.target(), [])


def score(path: str, model: GradCam, loader: ClipLoader, evidence: Evidence, hop: int, track=None) -> None:
    """Scores every window of the video into `evidence`, BATCH windows per model call."""
    batch: list[Cut] = []
    for window in itertools.chain(windows(path, loader, hop, track), [None]):  # None: the end, scores the last batch
        if window is not None:
            batch.append(window)
        if batch and (window is None or len(batch) == BATCH):
            probabilities = model.probabilities(np.stack([w.rgb for w in batch]), np.stack([w.flow for w in batch]))
            for w, p in zip(batch, probabilities):
                evidence.add(w, p)
            batch = []
    if not evidence.timeline:
        raise VideoError(f"{path}: fewer than 2 frames decoded, so no window to score")


def write(evidence: Evidence, model: GradCam, loader: ClipLoader, out_dir: str, name: str) -> dict:
    """Writes OUT/<name>.scores.png, OUT/<name>.cam<k>.png (k = 1: the strongest) and OUT/<name>.explain.json;
    returns what the JSON holds."""
    from twostream.trainer.video import charts, frame_map, pictures

    os.makedirs(out_dir, exist_ok=True)
    target, strongest = evidence.target(), evidence.strongest()
    names = evidence.class_names
    charts.draw_timeline(
        os.path.join(out_dir, f"{name}.scores.png"),
        [(times, p) for _, times, p in evidence.timeline],
        names,
        [w.times for w in strongest],
        title=name,
    )
    sheets = []
    if strongest:
        cams = model(np.stack([w.rgb for w in strongest]), np.stack([w.flow for w in strongest]), target)
        for k, window in enumerate(strongest, start=1):
            clip_cams = {stream: cam[k - 1] for stream, cam in cams.items()}
            rects = np.array([frame_map.clip_rect(box, loader.spec) for box in window.boxes])
            on_frames = frame_map.native_cams(window, clip_cams, loader.spec)
            sheet = pictures.cam_sheet(window, clip_cams, on_frames, rects)
            title = f"{name}: {names[target]} {window.probabilities[target]:.3f}, window {k} of {len(strongest)}"
            path = os.path.join(out_dir, f"{name}.cam{k}.png")
            pictures.save(path, pictures.titled(sheet, title))
            sheets.append({"file": os.path.basename(path), "first_frame": window.first, "times": list(window.times)})
    report = {
        "target": names[target],
        "windows": [
            {"first_frame": first, "times": list(times), "scores": dict(zip(names, np.round(p, 6).tolist()))}
            for first, times, p in evidence.timeline
        ],
        "cams": sheets,
    }
    with open(os.path.join(out_dir, f"{name}.explain.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report
