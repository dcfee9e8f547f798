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
import logging
import os
from collections import Counter
from dataclasses import dataclass

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
SPLITS = ("train", "val")  # an explicit split column may only say these (or be empty: hashed)
SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "validation": "val",
    "valid": "val",
    "test": "val",
    "training": "train",
    "": "",
}
DFDC_CLASSES = ("REAL", "FAKE")  # label 0 = REAL, 1 = FAKE
MANIFEST_NAMES = ("manifest.csv", "metadata.json")  # auto-detected in data.root, in this order
MIN_CLASS_VIDEOS = 2  # data.min_class_videos default: a CSV label of one video is most often a typo

log = logging.getLogger(__name__)


class ManifestError(ValueError):
    """The dataset description is wrong; the message lists every problem found, not just the first."""


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int
    video_id: str  # clips sharing a video id (and a fake with its original) stay on one side of a split
    split: str = ""  # "train" | "val" from an explicit split column; "" = decided by a hash of video_id


@dataclass(frozen=True)
class Manifest:
    records: tuple[VideoRecord, ...]
    class_names: tuple[str, ...]


def from_config(data) -> Manifest:
    """The dataset the `data` config section describes, checked by its rules (data.classes,
    data.min_class_videos, ...)."""
    manifest = load_manifest(data.root, data.manifest, data.min_class_videos, data.merge_duplicates)
    named = [name.strip() for name in data.classes.split(",") if name.strip()]
    if named:
        check_classes(manifest, named, data.root)
    return manifest


def check_classes(manifest: Manifest, named: list[str], root: str = "") -> None:
    """Refuses a dataset whose classes are not exactly the `named` ones (data.classes), naming the videos of
    each label outside them (up to 5, relative to `root`) and each named class without videos."""
    problems = []
    for label, name in enumerate(manifest.class_names):
        if name not in named:
            paths = [os.path.relpath(r.path, root) if root else r.path for r in manifest.records if r.label == label]
            problems.append(
                f"label {name!r} of {len(paths)} video(s) ({', '.join(paths[:5])}"
                f"{', ...' if len(paths) > 5 else ''}) is not one of data.classes ({', '.join(named)}); "
                "fix the label, or add it to data.classes"
            )
    problems += [
        f"class {name!r} of data.classes has no videos; add its videos, or remove it from data.classes"
        for name in named
        if name not in manifest.class_names
    ]
    if problems:
        raise ManifestError("invalid dataset:\n  " + "\n  ".join(problems))


def load_manifest(
    root: str, manifest_path: str = "", min_class_videos: int = MIN_CLASS_VIDEOS, merge_duplicates: bool = True
) -> Manifest:
    """data.manifest when given (a .csv or .json), else ROOT/manifest.csv or ROOT/metadata.json, else folders.
    min_class_videos applies to a CSV's labels (typed by hand: a typo makes a class); a folder or DFDC class
    needs one video."""
    if not manifest_path:
        found = [os.path.join(root, n) for n in MANIFEST_NAMES if os.path.isfile(os.path.join(root, n))]
        manifest_path = found[0] if found else ""
    if not manifest_path:
        return from_folder(root)
    if manifest_path.endswith(".csv"):
        return from_csv(manifest_path, min_class_videos, merge_duplicates)
    if manifest_path.endswith(".json"):
        return from_dfdc_json(manifest_path)
    raise ManifestError(
        f"data.manifest {manifest_path!r} must end in .csv (path,label[,split][,video_id]) "
        "or .json (DFDC-style metadata.json)"
    )


def _videos_below(folder: str) -> list[str]:
    """The video files in `folder` and its non-hidden sub-folders (paths relative to it, sorted)."""
    found = []
    for here, folders, files in os.walk(folder):
        folders[:] = sorted(d for d in folders if not d.startswith("."))
        found += [os.path.relpath(os.path.join(here, f), folder) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
    return sorted(found)


def from_folder(root: str) -> Manifest:
    """Reads ROOT/<class>/<video files>, sub-folders of a class folder included; classes are the non-hidden
    sub-folders of ROOT, in sorted order. A video's id is its path in the class folder without extension."""
    if not os.path.isdir(root):
        raise ManifestError(
            f"data folder {root!r} does not exist; create it with `twostream synth {root}` "
            "or point --data at a folder with one sub-folder of videos per class"
        )
    class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    records, empty = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        files = _videos_below(folder)
        if not files:
            empty.append(folder)
        for file_name in files:
            records.append(VideoRecord(os.path.join(folder, file_name), label, os.path.splitext(file_name)[0]))
    nested = sum(os.sep in r.video_id for r in records)
    if nested:
        log.info("%d of %d videos are in sub-folders of their class folder (read as that class)", nested, len(records))
    problems = [f"class folder {folder!r} holds no video files ({', '.join(VIDEO_EXTENSIONS)})" for folder in empty]
    if len(class_names) < 2:
        problems.append(f"{root!r} has {len(class_names)} class sub-folder(s); a classifier needs at least 2")
    if problems:
        raise ManifestError("invalid dataset:\n  " + "\n  ".join(problems))
    return Manifest(tuple(records), tuple(class_names))


def from_csv(csv_path: str, min_class_videos: int = MIN_CLASS_VIDEOS, merge_duplicates: bool = True) -> Manifest:
    """Reads `path,label[,split][,video_id]` rows; classes are the distinct labels, in sorted order. A path listed
    twice with one label is merged with a warning (or refused: merge_duplicates False); with two labels, refused."""
    rows = _read_csv(csv_path)
    class_names = tuple(sorted({row["label"] for row in rows if row["label"]}))
    folder = os.path.dirname(os.path.abspath(csv_path))
    records, problems, lines = [], [], {}
    repeats = _repeated_paths(csv_path, rows, folder, merge_duplicates)
    problems += repeats["problems"]
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        path = os.path.normpath(os.path.join(folder, row["path"]))
        if line in repeats["skip"]:
            continue
        split = SPLIT_ALIASES.get(row.get("split", "").strip().lower())
        if not row["path"] or not row["label"]:
            problems.append(f"{csv_path}:{line}: empty path or label")
            continue
        if split is None:
            problems.append(f"{csv_path}:{line}: split {row['split']!r} is not one of {SPLITS} (or empty)")
        video_id = row.get("video_id") or os.path.splitext(row["path"])[0]
        records.append(VideoRecord(path, class_names.index(row["label"]), video_id, split or ""))
        lines[path] = line
    problems += _small_classes(records, class_names, min_class_videos, lambda r: f"{csv_path}:{lines[r.path]}")
    _check(csv_path, records, class_names, problems)
    return Manifest(tuple(records), class_names)


def _repeated_paths(csv_path: str, rows: list[dict], folder: str, merge: bool) -> dict:
    """{"problems": paths listed with two labels (or twice, merge False), "skip": the lines of merged repeats}."""
    seen: dict[str, list[tuple[int, str]]] = {}
    for line, row in enumerate(rows, start=2):
        if row["path"]:
            seen.setdefault(os.path.normpath(os.path.join(folder, row["path"])), []).append((line, row["label"]))
    problems: list[str] = []
    skip: set[int] = set()
    for path, listed in seen.items():
        if len(listed) < 2:
            continue
        where = ", ".join(f"line {line} ({label!r})" for line, label in listed)
        if len({label for _, label in listed}) > 1:
            problems.append(
                f"{csv_path}: {os.path.relpath(path, folder)!r} is listed with different labels: "
                f"{where}; one file has one label"
            )
        elif not merge:
            problems.append(
                f"{csv_path}: {os.path.relpath(path, folder)!r} is listed {len(listed)} times ({where}); "
                "delete the repeats, or set data.merge_duplicates=true to keep the first"
            )
        else:
            skip.update(line for line, _ in listed[1:])
    if skip and not problems:
        log.warning(
            "%s: %d repeated row(s) of a path already listed with the same label are ignored (first lines kept)",
            csv_path,
            len(skip),
        )
    return {"problems": problems, "skip": skip}


def _small_classes(records, class_names, min_videos: int, where) -> list[str]:
    """A problem per class of fewer than `min_videos` videos (a typo in a label makes a class of one), naming
    where its videos are listed (`where(record)`: a CSV line, a folder)."""
    counts = Counter(r.label for r in records)
    problems = []
    for label, name in enumerate(class_names):
        if counts[label] < min_videos:
            listed = sorted({where(r) for r in records if r.label == label})
            others = [n for n in class_names if n != name]
            same = [n for n in others if n.lower() == name.lower()]
            if not listed:
                problems.append(f"class {name!r} has no videos; a classifier needs videos of every class")
                continue
            hint = f"a typo of {same[0]!r}?" if same else f"a typo? the other classes: {', '.join(others)}"
            problems.append(
                f"class {name!r} has {counts[label]} video(s) ({', '.join(listed[:5])}), fewer than "
                f"data.min_class_videos={min_videos}; {hint} (fix the label, or lower "
                f"data.min_class_videos)"
            )
    return problems


def _read_csv(csv_path: str) -> list[dict]:
    if not os.path.isfile(csv_path):
        raise ManifestError(f"manifest {csv_path!r} not found; set data.manifest to an existing CSV")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise ManifestError(
                f"{csv_path}: header {columns} must name at least `path,label` (optional: split, video_id)"
            )
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def from_dfdc_json(json_path: str) -> Manifest:
    """Reads DFDC metadata.json; REAL is class 0, FAKE class 1; a fake's video id is its original's."""
    if not os.path.isfile(json_path):
        raise ManifestError(f"manifest {json_path!r} not found; set data.manifest to an existing metadata.json")
    try:
        entries = json.load(open(json_path))
    except json.JSONDecodeError as error:
        raise ManifestError(f"{json_path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    if not isinstance(entries, dict):
        raise ManifestError(
            f'{json_path}: must be a JSON object {{"<video file>": {{"label": "REAL" or '
            f'"FAKE", ...}}, ...}} (DFDC\'s metadata.json), got a {type(entries).__name__}'
        )
    folder = os.path.dirname(os.path.abspath(json_path))
    records, problems = [], []
    for name, info in sorted(entries.items()):
        label = str(info.get("label", "")).upper() if isinstance(info, dict) else ""
        if label not in DFDC_CLASSES:
            problems.append(f"{json_path}: {name!r} has label {label or None!r}; expected REAL or FAKE")
            continue
        source = info.get("original") if label == "FAKE" else None
        split = SPLIT_ALIASES.get(str(info.get("split", "")).lower(), "")
        records.append(
            VideoRecord(
                os.path.join(folder, name), DFDC_CLASSES.index(label), os.path.splitext(source or name)[0], split
            )
        )
    problems += _small_classes(records, DFDC_CLASSES, 1, lambda r: r.path)  # the labels are checked: none typed
    _check(json_path, records, DFDC_CLASSES, problems)
    return Manifest(tuple(records), DFDC_CLASSES)


def _check(source: str, records: list[VideoRecord], class_names, problems: list[str]) -> None:
    """Adds every missing file and a too-small class list to `problems`, then raises once if any."""
    problems = problems + [f"missing file {r.path!r}" for r in records if not os.path.isfile(r.path)]
    splits: dict[str, set] = {}
    for r in records:
        splits.setdefault(r.video_id, set()).add(r.split or None)
    problems += [
        f"video id {v!r} is listed in splits {sorted(s - {None})}; one video must stay on one side"
        for v, s in splits.items()
        if len(s - {None}) > 1
    ]
    if len(class_names) < 2:
        problems.append(f"{len(class_names)} class(es) {list(class_names)}; a classifier needs at least 2")
    if not records:
        problems.append("no clips listed")
    if problems:
        raise ManifestError(f"invalid dataset {source!r} ({len(problems)} problem(s)):\n  " + "\n  ".join(problems))


def _unit_interval(text: str) -> float:
    """A stable hash of `text` in [0, 1): the same on every rank, machine and Python run (unlike hash())."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def split_by_video(manifest: Manifest, val_fraction: float) -> tuple[Manifest, Manifest]:
    """Splits into (train, validation): a video's explicit split first, else by a hash of its video id."""
    if not 0.0 < val_fraction < 1.0:
        raise ManifestError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    explicit = {r.video_id: r.split for r in manifest.records if r.split}  # applies to all clips of the video
    is_val = {
        r.video_id: explicit.get(r.video_id, "val" if _unit_interval(r.video_id) < val_fraction else "train") == "val"
        for r in manifest.records
    }
    val = tuple(r for r in manifest.records if is_val[r.video_id])
    train = tuple(r for r in manifest.records if not is_val[r.video_id])
    if not train or not val:
        raise ManifestError(
            f"split of {len(manifest.records)} clips with val_fraction={val_fraction} left "
            f"{len(train)} for training and {len(val)} for validation; add videos or change it"
        )
    for side, records in (("validation", val), ("training", train)):
        missing = [n for i, n in enumerate(manifest.class_names) if all(r.label != i for r in records)]
        if missing:
            log.warning(
                "the %s split has no videos of class(es) %s (data.val_fraction=%s, or the split column); "
                "its metrics leave them out",
                side,
                ", ".join(missing),
                val_fraction,
            )
    return Manifest(train, manifest.class_names), Manifest(val, manifest.class_names)
