"""Folder-per-class manifests: validation errors list every problem; splits keep a video on one side."""
import os

import pytest

from twostream.data.manifest import ManifestError, from_folder, split_by_video


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_folder_per_class(tmp_path):
    for name in ["b/x1.mp4", "b/x2.avi", "a/y1.mp4", "a/notes.txt"]:
        _touch(tmp_path / name)
    manifest = from_folder(str(tmp_path))
    assert manifest.class_names == ("a", "b")
    assert [(os.path.basename(r.path), r.label, r.video_id) for r in manifest.records] == [
        ("y1.mp4", 0, "y1"), ("x1.mp4", 1, "x1"), ("x2.avi", 1, "x2")]


def test_all_problems_reported_together(tmp_path):
    os.makedirs(tmp_path / "empty_a")
    os.makedirs(tmp_path / "empty_b")
    with pytest.raises(ManifestError) as error:
        from_folder(str(tmp_path))
    assert "empty_a" in str(error.value) and "empty_b" in str(error.value)


def test_missing_root_names_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="twostream synth"):
        from_folder(str(tmp_path / "nope"))


def test_split_is_disjoint_by_video_and_deterministic(tmp_path):
    for i in range(50):
        _touch(tmp_path / ("a" if i % 2 else "b") / f"v{i}.mp4")
    manifest = from_folder(str(tmp_path))
    train, val = split_by_video(manifest, 0.3)
    assert {r.video_id for r in train.records}.isdisjoint({r.video_id for r in val.records})
    assert len(train.records) + len(val.records) == 50
    assert 5 <= len(val.records) <= 25
    assert split_by_video(manifest, 0.3) == (train, val)
    with pytest.raises(ManifestError):
        split_by_video(manifest, 1.5)
