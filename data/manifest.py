"""Builds and validates the list of clip records (path, label, video id, split) and splits it by source video.

Three dataset descriptions are read, all validated up front (every problem reported in one ManifestError):
- a folder per class: ROOT/<class>/<video files>;
- a CSV with a header `path,label[,split][,video_id]`, paths relative to the CSV's folder;
- a DFDC-style metadata.json `{"x.mp4": {"label": "FAKE"|"REAL", "original": "y.mp4"}}`: a fake takes its
  original's video id, so a fake and its source always land on the same side of the split.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
SPLITS = ("train", "val")            # an explicit split column may only say these (or be empty: hashed)
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "val", "training": "train", "": ""}
DFDC_CLASSES = ("REAL", "FAKE")       # label 0 = REAL, 1 = FAKE
MANIFEST_NAMES = ("manifest.csv", "metadata.json")   # auto-detected in data.root, in this order


class ManifestError(ValueError):
    """The dataset description is wrong; the message lists every problem found, not just the first."""


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int
    video_id: str   # clips sharing a video id (and a fake with its original) stay on one side of a split
    split: str = ""  # "train" | "val" from an explicit split column; "" = decided by a hash of video_id


@dataclass(frozen=True)
class Manifest:
    records: tuple[VideoRecord, ...]
    class_names: tuple[str, ...]


def load_manifest(root: str, manifest_path: str = "") -> Manifest:
    """data.manifest when given (a .csv or .json), else ROOT/manifest.csv or ROOT/metadata.json, else folders."""
    if not manifest_path:
        found = [os.path.join(root, n) for n in MANIFEST_NAMES if os.path.isfile(os.path.join(root, n))]
        manifest_path = found[0] if found else ""
    if not manifest_path:
        return from_folder(root)
    if manifest_path.endswith(".csv"):
        return from_csv(manifest_path)
    if manifest_path.endswith(".json"):
        return from_dfdc_json(manifest_path)
    raise ManifestError(f"data.manifest {manifest_path!r} must end in .csv (path,label[,split][,video_id]) "
                        "or .json (DFDC-style metadata.json)")


def from_folder(root: str) -> Manifest:
    """Reads ROOT/<class>/<video files>; classes are the non-hidden sub-folders, in sorted order."""
    if not os.path.isdir(root):
        raise ManifestError(f"data folder {root!r} does not exist; create it with `twostream synth {root}` "
                            "or point --data at a folder with one sub-folder of videos per class")
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    records, empty = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS))
        if not files:
            empty.append(folder)
        for file_name in files:
            records.append(VideoRecord(os.path.join(folder, file_name), label, os.path.splitext(file_name)[0]))
    problems = [f"class folder {folder!r} holds no video files ({', '.join(VIDEO_EXTENSIONS)})" for folder in empty]
    if len(class_names) < 2:
        problems.append(f"{root!r} has {len(class_names)} class sub-folder(s); a classifier needs at least 2")
    if problems:
        raise ManifestError("invalid dataset:\n  " + "\n  ".join(problems))
    return Manifest(tuple(records), tuple(class_names))


def from_csv(csv_path: str) -> Manifest:
    """Reads `path,label[,split][,video_id]` rows; classes are the distinct labels, in sorted order."""
    rows = _read_csv(csv_path)
    class_names = tuple(sorted({row["label"] for row in rows if row["label"]}))
    folder = os.path.dirname(os.path.abspath(csv_path))
    records, problems = [], []
    for line, row in enumerate(rows, start=2):   # line 1 is the header
        path = os.path.join(folder, row["path"])
        split = SPLIT_ALIASES.get(row.get("split", "").strip().lower())
        if not row["path"] or not row["label"]:
            problems.append(f"{csv_path}:{line}: empty path or label")
            continue
        if split is None:
            problems.append(f"{csv_path}:{line}: split {row['split']!r} is not one of {SPLITS} (or empty)")
        video_id = row.get("video_id") or os.path.splitext(row["path"])[0]
        records.append(VideoRecord(path, class_names.index(row["label"]), video_id, split or ""))
    _check(csv_path, records, class_names, problems)
    return Manifest(tuple(records), class_names)


def _read_csv(csv_path: str) -> list[dict]:
    if not os.path.isfile(csv_path):
        raise ManifestError(f"manifest {csv_path!r} not found; set data.manifest to an existing CSV")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise ManifestError(f"{csv_path}: header {columns} must name at least `path,label` "
                                "(optional: split, video_id)")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def from_dfdc_json(json_path: str) -> Manifest:
    """Reads DFDC metadata.json; REAL is class 0, FAKE class 1; a fake's video id is its original's."""
    if not os.path.isfile(json_path):
        raise ManifestError(f"manifest {json_path!r} not found; set data.manifest to an existing metadata.json")
    try:
        entries = json.load(open(json_path))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{json_path}: not valid JSON ({error})") from None
    folder = os.path.dirname(os.path.abspath(json_path))
    records, problems = [], []
    for name, info in sorted(entries.items()):
        label = str(info.get("label", "")).upper() if isinstance(info, dict) else ""
        if label not in DFDC_CLASSES:
            problems.append(f"{json_path}: {name!r} has label {label or None!r}; expected REAL or FAKE")
            continue
        source = info.get("original") if label == "FAKE" else None
        split = SPLIT_ALIASES.get(str(info.get("split", "")).lower(), "")
        records.append(VideoRecord(os.path.join(folder, name), DFDC_CLASSES.index(label),
                                  os.path.splitext(source or name)[0], split))
    _check(json_path, records, DFDC_CLASSES, problems)
    return Manifest(tuple(records), DFDC_CLASSES)


def _check(source: str, records: list[VideoRecord], class_names, problems: list[str]) -> None:
    """Adds every missing file and a too-small class list to `problems`, then raises once if any."""
    problems = problems + [f"missing file {r.path!r}" for r in records if not os.path.isfile(r.path)]
    splits: dict[str, set] = {}
    for r in records:
        splits.setdefault(r.video_id, set()).add(r.split or None)
    problems += [f"video id {v!r} is listed in splits {sorted(s - {None})}; one video must stay on one side"
                 for v, s in splits.items() if len(s - {None}) > 1]
    if len(class_names) < 2:
        problems.append(f"{len(class_names)} class(es) {list(class_names)}; a classifier needs at least 2")
    if not records:
        problems.append("no clips listed")
    if problems:
        raise ManifestError(f"invalid dataset {source!r} ({len(problems)} problem(s)):\n  " + "\n  ".join(problems))


def _unit_interval(text: str) -> float:
    """A stable hash of `text` in [0, 1): the same on every rank, machine and Python run (unlike hash())."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16 ** 12


def split_by_video(manifest: Manifest, val_fraction: float) -> tuple[Manifest, Manifest]:
    """Splits into (train, validation): a video's explicit split first, else by a hash of its video id."""
    if not 0.0 < val_fraction < 1.0:
        raise ManifestError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    explicit = {r.video_id: r.split for r in manifest.records if r.split}   # applies to all clips of the video
    is_val = {r.video_id: explicit.get(r.video_id, "val" if _unit_interval(r.video_id) < val_fraction else "train")
              == "val" for r in manifest.records}
    val = tuple(r for r in manifest.records if is_val[r.video_id])
    train = tuple(r for r in manifest.records if not is_val[r.video_id])
    if not train or not val:
        raise ManifestError(f"split of {len(manifest.records)} clips with val_fraction={val_fraction} left "
                            f"{len(train)} for training and {len(val)} for validation; add videos or change it")
    return Manifest(train, manifest.class_names), Manifest(val, manifest.class_names)
