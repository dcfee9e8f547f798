"""The `footage` preset: it resolves to the documented recipe, it names the missing ImageNet file in one line, and
shrunk by --set overrides it trains on a realistic set's region crops and evaluates with its three spatial crops."""

import json
import os

import pytest
import yaml
from conftest import run_cli

from twostream.data.make.synthetic_scenes import SceneSpec, synthesize_scenes
from twostream.trainer.config import load

# 4 scenes of 2 real/fake pairs, the last scene held out: 12 training and 4 validation videos
SPEC = SceneSpec(num_videos=16, scenes=4, val_scenes=1, frames=8, width=96, height=72, region=16, seed=5)
TINY = [
    "clip.size=32",
    "clip.short_side=36",
    "clip.scale_jitter=[36, 45]",
    "clip.num_frames=4",
    "model.name=two_stream_tsn",
    "model.width=4",
    "model.depth=2",
    "model.pretrained=",
    "model.freeze_bn=none",
    "train.global_batch=4",
    "train.epochs=1",
    "data.num_actors=1",
    "data.object_store_mb=128",
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("scenes"))
    synthesize_scenes(root, SPEC)
    return root


def _sets(overrides):
    return [arg for item in overrides for arg in ("--set", item)]


def test_the_preset_is_the_documented_recipe():
    config = load("footage")
    assert (config.clip.resize, config.clip.short_side, config.clip.size) == ("short_side", 256, 224)
    assert config.clip.scale_jitter == [256, 320] and config.clip.flip and config.clip.sampling == "segments"
    assert (config.clip.flow_method, config.clip.dis_preset) == ("dis", "medium")
    assert (config.eval.spatial_crops, config.eval.views) == (3, 2)
    assert (config.model.pretrained, config.model.freeze_bn, config.model.temporal_shift) == (
        "imagenet",
        "partial",
        0.125,
    )
    assert config.model.name == "two_stream_resnet50" and config.data.box_margin == 0.15
    assert config.train.select_metric == "val_video_roc_auc"


@pytest.mark.tensorflow
def test_without_the_imagenet_file_the_run_stops_with_one_line(scenes, tmp_path):
    done = run_cli(
        "train",
        "--preset",
        "footage",
        "--data",
        scenes,
        "--workdir",
        str(tmp_path / "run"),
        *_sets(["train.global_batch=4", "data.num_actors=1", "data.object_store_mb=128"]),
        env={"KERAS_HOME": str(tmp_path / "empty_keras_home")},
        timeout=300,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in done.stderr
    assert "keras.applications.ResNet50" in done.stderr  # how to get the file once


@pytest.mark.tensorflow
def test_shrunk_it_trains_on_region_crops_and_scores_three_crops_per_video(scenes, tmp_path):
    workdir = str(tmp_path / "run")
    done = run_cli(
        "train",
        "--preset",
        "footage",
        "--data",
        scenes,
        "--workdir",
        workdir,
        *_sets(TINY + [f"data.boxes={scenes}/boxes"]),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    epoch = next(r for r in records if r["kind"] == "epoch")
    assert epoch["videos_without_box"] == 0 and epoch["clips_failed"] == 0
    assert epoch["val_videos"] == 4 and epoch["val_clips"] == 4 * 2 * 3  # 2 views x 3 spatial crops each
    saved = yaml.safe_load(open(os.path.join(workdir, "config.yaml")))
    assert (saved["clip"]["short_side"], saved["model"]["temporal_shift"]) == (36, 0.125)  # the preset's, kept
    final = next(r for r in records if r["kind"] == "final")
    assert final["best"]["metric"] == "val_video_roc_auc"
    assert os.path.isfile(os.path.join(workdir, "export", "saved_model.pb"))
