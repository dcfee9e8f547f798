"""Folder-per-class manifests: validation errors list every problem; splits keep a video on one side."""

import json
import os

import pytest

from twostream.data.manifest import ManifestError, from_csv, from_dfdc_json, from_folder, load_manifest, split_by_video


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_folder_per_class(tmp_path):
    for name in ["b/x1.mp4", "b/x2.avi", "a/y1.mp4", "a/notes.txt"]:
        _touch(tmp_path / name)
    manifest = from_folder(str(tmp_path))
    assert manifest.class_names == ("a", "b")
    assert [(os.path.basename(r.path), r.label, r.video_id) for r in manifest.records] == [
        ("y1.mp4", 0, "y1"),
        ("x1.mp4", 1, "x1"),
        ("x2.avi", 1, "x2"),
    ]


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


def test_csv_manifest_relative_paths_split_and_video_id(tmp_path):
    for name in ["v/a.mp4", "v/b.mp4", "v/c.mp4", "v/d.mp4"]:
        _touch(tmp_path / name)
    (tmp_path / "list.csv").write_text(
        "path,label,split,video_id\nv/a.mp4,walk,train,s1\nv/b.mp4,run,val,s2\nv/c.mp4,run,,s1\nv/d.mp4,walk,,\n"
    )
    manifest = load_manifest(str(tmp_path), str(tmp_path / "list.csv"))
    assert manifest.class_names == ("run", "walk")
    assert [(r.label, r.video_id, r.split) for r in manifest.records] == [
        (1, "s1", "train"),
        (0, "s2", "val"),
        (0, "s1", ""),
        (1, "v/d", ""),
    ]
    assert manifest.records[0].path == str(tmp_path / "v" / "a.mp4")
    train, val = split_by_video(manifest, 0.5)
    assert {r.video_id for r in val.records} >= {"s2"} and "s1" in {r.video_id for r in train.records}
    assert all(r.video_id != "s1" for r in val.records)  # c.mp4 follows its video's explicit split


def test_csv_reports_every_missing_file_and_bad_split_together(tmp_path):
    _touch(tmp_path / "ok.mp4")
    (tmp_path / "m.csv").write_text("path,label,split\nok.mp4,a,train\ngone1.mp4,b,train\ngone2.mp4,b,holdout\n")
    with pytest.raises(ManifestError) as error:
        from_csv(str(tmp_path / "m.csv"))
    message = str(error.value)
    assert "gone1.mp4" in message and "gone2.mp4" in message and "holdout" in message


def test_dfdc_metadata_fakes_follow_their_original(tmp_path):
    meta = {
        "r1.mp4": {"label": "REAL"},
        "f1.mp4": {"label": "FAKE", "original": "r1.mp4"},
        "f2.mp4": {"label": "FAKE", "original": "r1.mp4"},
        "r2.mp4": {"label": "REAL", "split": "val"},
        **{f"x{i}.mp4": {"label": "REAL"} for i in range(20)},
    }
    for name in meta:
        _touch(tmp_path / name)
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    manifest = load_manifest(str(tmp_path))  # auto-detected in the data root
    assert manifest.class_names == ("REAL", "FAKE")
    ids = {os.path.basename(r.path): (r.label, r.video_id) for r in manifest.records}
    assert ids["f1.mp4"] == (1, "r1") and ids["f2.mp4"] == (1, "r1") and ids["r1.mp4"] == (0, "r1")
    for fraction in (0.3, 0.5, 0.7):
        train, val = split_by_video(manifest, fraction)
        sides = {r.video_id for r in train.records} & {r.video_id for r in val.records}
        assert not sides and "r2" in {r.video_id for r in val.records}


def test_dfdc_unknown_labels_and_missing_files_reported_together(tmp_path):
    _touch(tmp_path / "a.mp4")
    meta = {"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}, "c.mp4": {"label": "MAYBE"}}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ManifestError) as error:
        from_dfdc_json(str(tmp_path / "metadata.json"))
    assert "b.mp4" in str(error.value) and "MAYBE" in str(error.value)


def test_hidden_folders_are_not_classes(tmp_path):
    for name in ["a/x.mp4", "b/y.mp4", ".flow_cache/z.mp4"]:
        _touch(tmp_path / name)
    assert load_manifest(str(tmp_path)).class_names == ("a", "b")


def test_videos_in_sub_folders_of_a_class_folder_are_read_as_that_class(tmp_path):
    for name in [
        "real/a.mp4",
        "real/day1/b.mp4",
        "real/day1/deep/c.mp4",
        "real/.hidden/x.mp4",
        "fake/d.mp4",
        "fake/day2/e.mp4",
    ]:
        _touch(tmp_path / name)
    manifest = from_folder(str(tmp_path))
    assert manifest.class_names == ("fake", "real")
    assert sorted((r.label, r.video_id) for r in manifest.records) == [
        (0, "d"),
        (0, os.path.join("day2", "e")),
        (1, "a"),
        (1, os.path.join("day1", "b")),
        (1, os.path.join("day1", "deep", "c")),
    ]


def _csv_dataset(tmp_path, rows: list[str]) -> str:
    for row in rows:
        _touch(tmp_path / row.split(",")[0])
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"{row}\n" for row in rows))
    return str(tmp_path / "m.csv")


def test_a_path_listed_twice_with_one_label_is_merged_with_a_warning(tmp_path, caplog):
    path = _csv_dataset(
        tmp_path, ["a.mp4,real", "b.mp4,real", "c.mp4,fake", "d.mp4,fake", "a.mp4,real", "./c.mp4,fake"]
    )
    manifest = from_csv(path)
    assert len(manifest.records) == 4  # not 6: each video scored once
    assert "2 repeated row(s)" in caplog.text
    with pytest.raises(ManifestError, match="'a.mp4' is listed 2 times"):
        from_csv(path, merge_duplicates=False)


def test_a_class_of_fewer_than_min_class_videos_is_refused_with_its_rows(tmp_path):
    path = _csv_dataset(tmp_path, ["a.mp4,real", "b.mp4,real", "c.mp4,fake", "d.mp4,fake", "e.mp4,fkae"])
    with pytest.raises(ManifestError, match=r"class .fkae. has 1 video\(s\) \(.*m.csv:6\)"):
        from_csv(path)
    assert from_csv(path, min_class_videos=1).class_names == ("fake", "fkae", "real")
    with pytest.raises(ManifestError, match="class 'fake' has 2 video"):
        from_csv(path, min_class_videos=3)


def test_a_split_missing_a_class_is_warned_about(tmp_path, caplog):
    rows = [f"r{i}.mp4,real,train" for i in range(3)] + ["f0.mp4,fake,train", "f1.mp4,fake,train", "r9.mp4,real,val"]
    for row in rows:
        _touch(tmp_path / row.split(",")[0])
    (tmp_path / "m.csv").write_text("path,label,split\n" + "".join(f"{row}\n" for row in rows))
    split_by_video(from_csv(str(tmp_path / "m.csv")), 0.2)
    assert "the validation split has no videos of class(es) fake" in caplog.text
