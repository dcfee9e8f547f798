"""`predict --explain`: Grad-CAM of every backbone family, the clip's map put back on its frames, a trained model's
map on the patch that makes a fake, and the pictures written per video and per live feed."""

import json
import os

import cv2
import keras
import numpy as np
import pytest
from conftest import run_cli
from helpers.live_feed import predict_piped

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.make.synthetic import CLASSES, SynthSpec, render_with_patch
from twostream.models.gradcam import GradCam, feature_layers, upsample
from twostream.models.registry import build_model
from twostream.models.spec import ModelSpec
from twostream.trainer.video import export as export_lib
from twostream.trainer.video import frame_map, pictures

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

CLIP = ClipSpec(num_frames=4, size=32, flow_bound=8.0)


def _clips(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8) for shape in (CLIP.rgb_shape, CLIP.flow_shape))


@pytest.mark.parametrize(
    "name,fusion,maps",
    [
        ("two_stream_c3d", "concat", {"rgb": "rgb_1_relu", "flow": "flow_1_relu"}),
        ("two_stream_c3d", "conv", {"rgb": "rgb_1_relu", "flow": "flow_1_relu"}),
        ("two_stream_r2plus1d", "late", {"rgb": "rgb_block1_out", "flow": "flow_block1_out"}),
        ("two_stream_tsn", "concat", {"rgb": "rgb_unfold", "flow": "flow_unfold"}),  # flow: 2 stacked fields
        ("rgb_only_c3d", "concat", {"rgb": "rgb_1_relu"}),
        ("two_stream_mobilenetv3small", "late", {"rgb": "rgb_unfold", "flow": "flow_unfold"}),
    ],
)
def test_every_backbone_gives_each_stream_a_map_of_the_clips_shape_in_0_1(name, fusion, maps):
    model = build_model(ModelSpec(name=name, width=4, depth=2, fusion=fusion), 3, CLIP.rgb_shape, CLIP.flow_shape)
    assert feature_layers(model) == maps
    rgb, flow = _clips()
    cams = GradCam(model)(rgb, flow, 2)
    assert sorted(cams) == sorted(maps)
    for cam in cams.values():
        assert cam.shape == (2, 4, 32, 32) and cam.dtype == np.float32
        assert np.all(np.isfinite(cam)) and cam.min() >= 0 and cam.max() <= 1
        assert all(c.max() in (0.0, 1.0) for c in cam)  # each clip's map divided by its own peak


def test_upsampling_is_linear_in_time_and_space_and_keeps_the_peak():
    cam = np.zeros((1, 2, 2, 2), np.float32)
    cam[0, 1, 1, 1] = 4.0  # the last step's bottom-right cell
    full = upsample(cam, (4, 8, 8))
    assert full.shape == (1, 4, 8, 8) and full.max() == 1.0
    assert full[0, -1, -1, -1] == 1.0 and full[0, 0, 0, 0] == 0.0
    assert np.all(np.diff(full[0, :, -1, -1]) >= 0) and np.all(np.diff(full[0, -1, -1, :]) >= 0)
    assert not upsample(np.zeros((1, 1, 2, 2), np.float32), (2, 4, 4)).any()  # no evidence: zeros, not NaN


def test_a_clips_map_goes_back_where_the_clip_was_cut_from():
    spec = ClipSpec(num_frames=4, size=32, short_side=36)
    box = (50, 20, 90, 60)  # a 40 px region of a 160x120 frame: resized to 36, its centre 32 cut
    placed = frame_map.on_frame(np.ones((32, 32), np.float32), box, (120, 160, 3), spec)
    x0, y0, x1, y1 = frame_map.clip_rect(box, spec)
    assert (x0, y0, x1, y1) == pytest.approx((50 + 2 * 40 / 36, 20 + 2 * 40 / 36, 50 + 34 * 40 / 36, 20 + 34 * 40 / 36))
    rows, cols = np.nonzero(placed > 0.5)
    assert abs(cols.min() - x0) <= 1 and abs(cols.max() + 1 - x1) <= 1 and abs(rows.min() - y0) <= 1
    assert not placed[:, :50].any() and not placed[:, 90:].any() and not placed[:20].any() and not placed[60:].any()

    whole = ClipSpec(num_frames=4, size=64)  # no region: the short side resized to 64 (85x64), the centre cut
    x0, _, x1, _ = frame_map.clip_rect((0, 0, 160, 120), whole)
    assert (x0, x1) == pytest.approx((10 * 160 / 85, 74 * 160 / 85))


def _patch_clips(count: int, seed: int, spec: SynthSpec, loader: ClipLoader):
    """Clips of the motion set (fake: the patch moves on its own) with each frame's patch box (x0, y0, x1, y1)."""
    rgb, flow, labels, boxes = [], [], [], []
    for i in range(count):
        frames, centres = render_with_patch(np.random.default_rng([seed, i]), CLASSES[i % 2], spec)
        clip = loader.from_frames(np.ascontiguousarray(frames[..., ::-1]))  # the window is the whole render
        rgb.append(clip[0]), flow.append(clip[1]), labels.append(i % 2)
        boxes.append(np.hstack([centres - spec.patch / 2, centres + spec.patch / 2])[: CLIP.num_frames])
    return np.stack(rgb), np.stack(flow), np.array(labels), np.stack(boxes)


def test_a_trained_models_flow_map_lies_on_the_patch_that_makes_a_fake():
    """The real check: a model that tells the classes apart looks where the fake's motion is. 96 clips of 32 px
    (the tiny preset's model), trained in memory to separate held-out clips; each held-out fake's flow-stream map
    is denser on its patch than off it (about 2x in median, over 4 seeds when written)."""
    spec = SynthSpec(frames=CLIP.num_frames + 1, size=32, patch=12)
    loader = ClipLoader(CLIP)
    train, held_out = _patch_clips(96, 1, spec, loader), _patch_clips(32, 2, spec, loader)
    keras.utils.set_random_seed(0)
    model = build_model(ModelSpec(width=8, depth=2), 2, CLIP.rgb_shape, CLIP.flow_shape)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit({"rgb": train[0], "flow": train[1]}, train[2], batch_size=16, epochs=30, verbose=0)
    rgb, flow, labels, boxes = held_out
    predicted = np.argmax(model.predict({"rgb": rgb, "flow": flow}, verbose=0), axis=1)
    assert np.mean(predicted == labels) >= 0.9  # it separates the classes: its evidence is worth looking at

    fake = labels == CLASSES.index("fake")
    cams = GradCam(model)(rgb[fake], flow[fake], CLASSES.index("fake"))["flow"]
    ys, xs = np.mgrid[:32, :32]
    ratios = []
    for cam, clip_boxes in zip(cams, boxes[fake]):
        inside = np.stack([(xs >= a) & (xs < c) & (ys >= b) & (ys < d) for a, b, c, d in clip_boxes])
        ratios.append(cam[inside].mean() / max(cam[~inside].mean(), 1e-6))  # map per pixel, on vs off the patch
    assert np.median(ratios) > 1.5 and np.mean(np.array(ratios) > 1) >= 0.75, np.round(ratios, 2)


def test_the_exported_model_is_rebuilt_with_the_served_weights(tmp_path):
    spec = ModelSpec(name="two_stream_c3d", width=4, depth=2, fusion="late_learned")
    model = build_model(spec, 2, CLIP.rgb_shape, CLIP.flow_shape)
    export_lib.export(model, str(tmp_path), CLIP, ["a", "b"], spec)
    loaded, meta = export_lib.load(str(tmp_path))
    assert meta["model"]["fusion"] == "late_learned"
    rgb, flow = _clips(3, seed=1)
    rebuilt = export_lib.load_keras(loaded, meta, ModelSpec(**meta["model"]))
    served = loaded.serve(rgb, flow)["probabilities"].numpy()
    np.testing.assert_allclose(GradCam(rebuilt).probabilities(rgb, flow), served, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit model"):
        export_lib.load_keras(loaded, meta, ModelSpec(name="two_stream_c3d", width=8, depth=2))


def _png(path):
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def test_predict_explain_writes_the_score_over_time_and_maps_per_video(trained, tiny_dataset, tmp_path):
    videos = [
        os.path.join(tiny_dataset, "fake", "fake_00001.avi"),
        os.path.join(tiny_dataset, "real", "real_00000.avi"),
    ]
    out = tmp_path / "evidence"
    argv = ["--workdir", trained.workdir, "--explain", str(out)]
    result = run_cli("predict", *videos, *argv, "--explain-clips", "2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [v["explained"] for v in json.loads(result.stdout)["videos"]] == ["fake_00001", "real_00000"]
    for name in ("fake_00001", "real_00000"):
        report = json.load(open(out / f"{name}.explain.json"))
        # 10 frames, windows of 5 (4 frames and the last one's successor) every 2, and one ending on the last
        assert [w["first_frame"] for w in report["windows"]] == [0, 2, 4, 5]
        starts = [w["times"][0] for w in report["windows"]]
        assert starts == sorted(starts) and report["windows"][-1]["times"][1] == pytest.approx(0.9)  # 10 fps
        scores = report["windows"][0]["scores"]
        assert sorted(scores) == ["fake", "real"] and sum(scores.values()) == pytest.approx(1, abs=1e-4)
        assert [c["file"] for c in report["cams"]] == [f"{name}.cam1.png", f"{name}.cam2.png"]
        target = [w["scores"][report["target"]] for w in report["windows"]]
        assert report["cams"][0]["first_frame"] == report["windows"][int(np.argmax(target))]["first_frame"]
        assert min(_png(out / f"{name}.scores.png").shape[:2]) >= 250
        # 4 rows (frames under each stream's map, the flow, the flow under its map) of 4 frames, 32 px drawn at CELL
        sheet = _png(out / f"{name}.cam1.png")
        assert sheet.shape == (28 + pictures.HEADER_H + 4 * pictures.CELL, pictures.LABEL_W + 4 * pictures.CELL, 3)
        assert sheet.std() > 10

    wrong = run_cli("predict", videos[0], *argv, "--explain-class", "x")
    assert wrong.returncode == 2 and "--explain-class 'x' is not a class" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_piped_feed_gets_its_pictures_when_it_ends(trained, tmp_path):
    feed = ["-re", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "3", "-f", "mpegts", "-"]
    out = tmp_path / "feed"
    argv = ["--workdir", trained.workdir, "--explain", str(out), "--explain-clips", "1"]
    code, stdout, stderr = predict_piped(feed, argv, timeout_s=120)
    assert code == 0, stderr[-3000:]
    lines = stdout.splitlines()
    report = json.load(open(out / "feed.explain.json"))
    assert len(report["windows"]) == len(lines) >= 2 and len(report["cams"]) == 1  # fewer when a burst skips some
    assert [w["first_frame"] + 4 for w in report["windows"]] == [json.loads(line)["frame"] for line in lines]
    assert _png(out / "feed.cam1.png").shape[1] > _png(out / "feed.scores.png").shape[1] // 2
    assert "evidence pictures in" in stderr.strip().splitlines()[-1]
