"""Regions of interest: box files read and checked, crops that contain the region, both streams of the region,
videos without a track at full frame and counted, DFDC-style manifests, and (with a model file) YuNet tracks."""

import json
import os
import shutil

import numpy as np
import pytest
from test_transforms import _RecordingPool

from twostream.data.decode.boxes import BoxError, BoxTracks, read_csv, region_boxes
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow import FlowEngine
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.flow_format import quantize
from twostream.data.decode.sampling import EvalView, sample_frames
from twostream.data.decode.transforms import resize
from twostream.data.decode.video import decode_frames
from twostream.data.distributed.pipeline import EpochStream
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.make.faces import FaceModelError, detect_faces, load_detector
from twostream.data.make.prepare import prepare
from twostream.data.make.synthetic_scenes import SceneSpec, synthesize_scenes
from twostream.data.manifest import load_manifest
from twostream.trainer.config import ConfigError, load
from twostream.trainer.video.inputs import load_boxes

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

SPEC = SceneSpec(num_videos=8, scenes=2, val_scenes=1, frames=10)  # 160x120 frames, a 32 px region


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("scenes"))
    synthesize_scenes(folder, SPEC)
    return folder


def test_every_crop_box_contains_the_rendered_region(scenes):
    boxes = BoxTracks(os.path.join(scenes, "boxes"), margin=0.2)
    for record in load_manifest(scenes).records:
        track = boxes.for_record(record)
        crops = region_boxes(track, SPEC.height, SPEC.width)
        sides = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in crops}
        assert len(sides) == 1  # one size per video: one base resolution
        for (x0, y0, x1, y1), (x, y, w, h) in zip(crops, track.boxes):
            assert x0 <= x and y0 <= y and x + w <= x1 and y + h <= y1, record.path
            assert 0 <= x0 and 0 <= y0 and x1 <= SPEC.width and y1 <= SPEC.height


def test_both_streams_are_of_the_region_cut_at_native_resolution(scenes, tmp_path):
    record = load_manifest(scenes).records[0]
    track = BoxTracks(os.path.join(scenes, "boxes")).for_record(record)
    spec = ClipSpec(num_frames=3, size=32, sampling="segments")  # short side 32: the whole region, no crop
    rgb, flow = ClipLoader(spec).load(record.path, EvalView(), track=track)
    native = decode_frames(record.path, None)
    crops = region_boxes(track, *native.shape[1:3])
    frames = [int(i) for i in sample_frames(len(native), 3, "segments")]
    for t, i in enumerate(frames):
        x0, y0, x1, y1 = crops[i]
        first, second = (resize(native[j][y0:y1, x0:x1], (32, 32)) for j in (i, i + 1))  # both with frame i's box
        assert np.array_equal(rgb[t], first)
        expected = FlowEngine().between_frames(np.stack([first, second]))[0]
        assert np.array_equal(flow[t], quantize(expected, spec.flow_bound))
    cache = FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params())
    cached = ClipLoader(spec, cache).load(record.path, EvalView(), track=track)
    assert np.array_equal(cached[0], rgb) and np.array_equal(cached[1], flow)  # the cache holds the region's flow
    full = ClipLoader(spec, cache).load(record.path, EvalView())
    assert not np.array_equal(full[1], flow)  # the full frame's flow is another cache entry


def test_videos_without_a_track_fall_back_to_the_full_frame_and_are_counted(scenes, tmp_path):
    folder = tmp_path / "boxes"
    shutil.copytree(os.path.join(scenes, "boxes"), folder)
    records = load_manifest(scenes).records
    missing = {records[1].path, records[4].path}
    for path in missing:
        os.unlink(folder / (os.path.splitext(os.path.basename(path))[0] + ".csv"))
    pool = _RecordingPool()
    plan = plan_epoch(len(records), 4, 0, 1, seed=0, epoch=0, train=True)
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=True, boxes=BoxTracks(str(folder)))
    for _ in stream:
        pass
    assert stream.report.without_box == missing
    assert all((r.track is None) == (r.path in missing) for r in pool.requests)
    spec = ClipSpec(num_frames=2, size=32)
    rgb, _ = ClipLoader(spec).load(records[1].path, EvalView(), track=None)  # the whole 160x120 frame, centre crop
    assert rgb.shape == (2, 32, 32, 3)


def test_prepare_fills_the_cache_with_each_region_and_counts_videos_without_one(scenes, tmp_path):
    records = load_manifest(scenes).records[:3]
    folder = tmp_path / "boxes"
    os.makedirs(folder)
    shutil.copy(os.path.join(scenes, "boxes", os.path.basename(records[0].path)[:-4] + ".csv"), folder)
    spec = ClipSpec(num_frames=2, size=32)
    boxes = BoxTracks(str(folder))
    cache = FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params())
    summary = prepare(records, spec, cache, progress=False, boxes=boxes)
    assert summary["computed"] == 3 and summary["without_box"] == 2
    track = boxes.for_record(records[0])
    assert cache.get(records[0].path, track.digest()).shape[1:3] == (32, 32)  # the square region
    assert cache.get(records[1].path).shape[1:3] == (32, 43)  # 120x160 -> 32x43
    assert prepare(records, spec, cache, progress=False, boxes=boxes)["cached"] == 3


def test_json_tracks_and_dfdc_manifests(tmp_path, scenes):
    real, fake = (r for r in load_manifest(scenes).records[:2])
    for record in (real, fake):
        shutil.copy(record.path, tmp_path / os.path.basename(record.path))
    metadata = {
        os.path.basename(real.path): {"label": "REAL"},
        os.path.basename(fake.path): {"label": "FAKE", "original": os.path.basename(real.path)},
    }
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    records = load_manifest(str(tmp_path)).records
    csv_tracks = BoxTracks(os.path.join(scenes, "boxes"))
    by_stem = {os.path.splitext(os.path.basename(r.path))[0]: csv_tracks.for_record(r) for r in records}
    tracks = {stem: np.column_stack([t.frames, t.boxes]).tolist() for stem, t in by_stem.items()}
    (tmp_path / "boxes.json").write_text(json.dumps(tracks))
    from_json = BoxTracks(str(tmp_path / "boxes.json"))
    for record in records:  # the fake shares its original's video id but finds its own track by file stem
        stem = os.path.splitext(os.path.basename(record.path))[0]
        assert from_json.for_record(record).digest() == by_stem[stem].digest()
    fake_record = next(r for r in records if "fake" in r.path)
    assert fake_record.video_id != os.path.splitext(os.path.basename(fake_record.path))[0]
    stem = os.path.splitext(os.path.basename(fake_record.path))[0]
    (tmp_path / "by_id.json").write_text(json.dumps({fake_record.video_id: tracks[stem]}))
    assert BoxTracks(str(tmp_path / "by_id.json")).for_record(fake_record) is not None  # no track by stem: by id


def test_malformed_box_files_name_the_problem(tmp_path):
    (tmp_path / "a.csv").write_text("frame,x,y,width,height\n0,1,2,3,4\n")
    with pytest.raises(BoxError, match="a.csv: the header must be frame,x,y,w,h"):
        read_csv(str(tmp_path / "a.csv"), 0.2)
    (tmp_path / "b.csv").write_text("frame,x,y,w,h\n0,1,2,0,4\n")
    with pytest.raises(BoxError, match=r"b.csv: box 0 .* needs frame >= 0 and w, h > 0"):
        read_csv(str(tmp_path / "b.csv"), 0.2)
    config = load(overrides=[f"data.boxes={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="data.boxes=.*nowhere.* is neither a folder"):
        load_boxes(config, [])
    with pytest.raises(ConfigError, match="data.box_margin must be at least 0"):
        load(overrides=["data.box_margin=-0.1"])


def test_a_missing_face_model_is_named(tmp_path):
    with pytest.raises(FaceModelError, match="file not found; pass the path of a YuNet ONNX model"):
        load_detector(str(tmp_path / "yunet.onnx"))


YUNET = os.environ.get("TWOSTREAM_YUNET_MODEL", "")


@pytest.mark.skipif(not YUNET, reason="set TWOSTREAM_YUNET_MODEL to a YuNet .onnx file (nothing is downloaded)")
def test_yunet_writes_readable_tracks(scenes, tmp_path):
    records = load_manifest(scenes).records[:2]
    summary = detect_faces(records, YUNET, str(tmp_path / "faces"), progress=False)
    assert summary["failed"] == [] and summary["tracks"] + len(summary["no_face"]) == 2
    for name in os.listdir(tmp_path / "faces"):
        track = read_csv(str(tmp_path / "faces" / name), 0.2)
        assert np.all(track.boxes[:, 2:] > 0) and np.all(track.frames < SPEC.frames)
