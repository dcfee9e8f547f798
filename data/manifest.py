"""Builds and validates the list of clip records (path, label, video id) and splits it by source video."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class ManifestError(ValueError):
    """The dataset description is wrong; the message lists every problem found, not just the first."""


@dataclass(frozen=True)
class ClipRecord:
    path: str
    label: int
    video_id: str   # clips sharing a video id (and a fake with its original) stay on one side of a split


@dataclass(frozen=True)
class Manifest:
    records: tuple[ClipRecord, ...]
    class_names: tuple[str, ...]


def from_folder(root: str) -> Manifest:
    """Reads ROOT/<class>/<video files>; classes are the sub-folders, in sorted order."""
    if not os.path.isdir(root):
        raise ManifestError(f"data folder {root!r} does not exist; create it with `twostream synth {root}` "
                            "or point --data at a folder with one sub-folder of videos per class")
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    records, empty = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS))
        if not files:
            empty.append(folder)
        for file_name in files:
            records.append(ClipRecord(os.path.join(folder, file_name), label, os.path.splitext(file_name)[0]))
    problems = [f"class folder {folder!r} holds no video files ({', '.join(VIDEO_EXTENSIONS)})" for folder in empty]
    if len(class_names) < 2:
        problems.append(f"{root!r} has {len(class_names)} class sub-folder(s); a classifier needs at least 2")
    if problems:
        raise ManifestError("invalid dataset:\n  " + "\n  ".join(problems))
    return Manifest(tuple(records), tuple(class_names))


def _unit_interval(text: str) -> float:
    """A stable hash of `text` in [0, 1): the same on every rank, machine and Python run (unlike hash())."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_by_video(manifest: Manifest, val_fraction: float) -> tuple[Manifest, Manifest]:
    """Splits into (train, validation) by a hash of the video id, so a video never lands on both sides."""
    if not 0.0 < val_fraction < 1.0:
        raise ManifestError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    val = tuple(r for r in manifest.records if _unit_interval(r.video_id) < val_fraction)
    train = tuple(r for r in manifest.records if _unit_interval(r.video_id) >= val_fraction)
    if not train or not val:
        raise ManifestError(f"split of {len(manifest.records)} clips with val_fraction={val_fraction} left "
                            f"{len(train)} for training and {len(val)} for validation; add videos or change it")
    return Manifest(train, manifest.class_names), Manifest(val, manifest.class_names)
