"""`twostream evaluate` (eval.json, roc.png, confusion.png), `twostream predict`, and metrics from two real ranks
(horovodrun -np 2) equal to the metrics of the union of their clips computed in one process."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, VENV_BIN, copy_workdir, run_cli
from sklearn import metrics as sk

from twostream.trainer.video import metrics

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

HELPER = os.path.join(REPO, "tests", "helpers", "eval_and_dump.py")


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    """The session's trained workdir (tiny preset, one epoch, 2 views per video in its config), copied, then
    evaluated through the CLI with 3 views per video aggregated by max; returns (workdir, printed summary,
    eval.json)."""
    workdir = copy_workdir(trained.workdir, str(tmp_path_factory.mktemp("evaluate") / "run"))
    result = run_cli("evaluate", "--workdir", workdir, "--set", "eval.views=3", "--set", "eval.video_aggregate=max")
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])["eval"]
    with open(os.path.join(workdir, "eval.json")) as f:
        return workdir, printed, json.load(f)


def test_evaluate_reports_clip_and_video_metrics(evaluated):
    _, printed, report = evaluated
    assert printed == {k: report[k] for k in printed}  # eval.json starts with what the command prints
    assert report["views"] == 3 and report["aggregate"] == "max"
    videos = report["per_video"]
    assert report["videos"] == report["video"]["count"] == len(videos) > 0
    assert report["clips"] == report["clip"]["count"] == 3 * len(videos) and all(v["clips"] == 3 for v in videos)
    assert np.sum(report["clip"]["confusion"]) == report["clips"]
    assert np.sum(report["video"]["confusion"]) == report["videos"]

    # The video-level numbers are those of the per-video scores it lists, by scikit-learn.
    names = report["class_names"]
    labels = np.array([names.index(v["label"]) for v in videos])
    probabilities = np.array([[v["probabilities"][n] for n in names] for v in videos])
    assert report["positive_class"] == names[1]
    assert report["video_accuracy"] == pytest.approx(sk.accuracy_score(labels, probabilities.argmax(axis=1)))
    assert report["video_log_loss"] == pytest.approx(sk.log_loss(labels, probabilities, labels=[0, 1]))
    if len(set(labels)) == 2:
        assert report["video_roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probabilities[:, 1]))


def test_evaluate_draws_roc_and_confusion_images(evaluated):
    workdir = evaluated[0]
    for name in ("roc.png", "confusion.png"):
        image = cv2.imread(os.path.join(workdir, name))
        assert image is not None, name
        assert min(image.shape[:2]) >= 200 and image.std() > 10, name  # a drawing, not a blank canvas


def test_evaluate_shows_its_charts_in_tensorboard(evaluated):
    import glob

    import tensorflow as tf

    workdir, printed, _ = evaluated
    shown = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("eval/"):
                    png = tf.make_ndarray(value.tensor)[2]  # [width, height, png]
                    shown[(value.tag, event.step)] = tf.io.decode_png(png).numpy()
    for tag, name in (("eval/roc", "roc.png"), ("eval/confusion", "confusion.png")):
        written = cv2.cvtColor(cv2.imread(os.path.join(workdir, name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(shown[(tag, printed["step"])], written)  # the PNG itself, at its step


def _predict(*args):
    result = run_cli("predict", *args)
    return result, [line.split("\t") for line in result.stdout.strip().splitlines()]


def test_predict_runs_the_whole_path_like_evaluate(evaluated):
    workdir, _, report = evaluated
    videos = report["per_video"][:2]
    paths = [v["path"] for v in videos]
    result, lines = _predict(*paths, "--workdir", workdir, "--views", "3", "--aggregate", "max")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line[0] for line in lines] == paths and all(line[1] in report["class_names"] for line in lines)

    as_json = run_cli(
        "predict", *paths, "--model", os.path.join(workdir, "export"), "--views", "3", "--aggregate", "max", "--json"
    )
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    predicted = json.loads(as_json.stdout)["videos"]
    for video, expected in zip(predicted, videos):
        assert video["path"] == expected["path"] and video["views"] == 3 and video["error"] is None
        assert video["prediction"] == max(video["probabilities"], key=video["probabilities"].get)
        for name, p in expected["probabilities"].items():  # SavedModel in process == checkpoint on Ray actors
            assert video["probabilities"][name] == pytest.approx(p, abs=1e-4)

    defaults = json.loads(run_cli("predict", paths[0], "--workdir", workdir, "--json").stdout)
    assert (defaults["views"], defaults["aggregate"]) == (2, "mean")  # the workdir's eval.views


def test_predict_names_each_bad_video_and_exits_nonzero(evaluated, tmp_path):
    workdir, _, report = evaluated
    good = report["per_video"][0]["path"]
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 100)
    missing = str(tmp_path / "missing.avi")
    result, lines = _predict(good, str(garbage), missing, "--workdir", workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line[0] for line in lines] == [good]
    errors = [line for line in result.stderr.splitlines() if line.startswith("twostream predict: error:")]
    assert len(errors) == 2 and str(garbage) in errors[0] and missing in errors[1] and "not found" in errors[1]

    no_model = run_cli("predict", good, "--model", str(tmp_path))
    assert (
        no_model.returncode == 2 and "not an exported model" in no_model.stderr and "Traceback" not in no_model.stderr
    )


# Enough held-out videos for both classes; 2 views each, so some video's views land on different ranks;
# a global batch that does not divide the clips, so the last step carries padding.
RANKS_COMMON = [
    "data.val_fraction=0.5",
    "train.global_batch=6",
    "eval.views=2",
    "eval.video_aggregate=max",
    "data.num_actors=1",
    "data.object_store_mb=128",
]


def _dumped(folder, rank):
    with open(os.path.join(folder, f"rank{rank}.json")) as f:
        reported = json.load(f)
    with np.load(os.path.join(folder, f"rank{rank}.npz")) as f:
        return reported, metrics.Scores(**{k: f[k] for k in f.files})


@pytest.mark.timeout(600)
def test_metrics_from_two_ranks_equal_metrics_on_the_union_in_one_process(tiny_dataset, tmp_path):
    overrides = RANKS_COMMON + [f"data.root={tiny_dataset}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    two = subprocess.run(
        [
            os.path.join(VENV_BIN, "horovodrun"),
            "-np",
            "2",
            "-H",
            "localhost:2",
            "--gloo",
            sys.executable,
            HELPER,
            str(tmp_path / "two"),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
    )
    assert two.returncode == 0, two.stdout[-4000:] + two.stderr[-4000:]
    (reported, mine0), (reported1, mine1) = _dumped(tmp_path / "two", 0), _dumped(tmp_path / "two", 1)
    assert reported == reported1  # every rank reports the same numbers

    # Exactly the union's metrics, computed here in one process from the clips each rank scored.
    union = metrics.Scores.concatenate([mine0, mine1])
    assert metrics.flat(metrics.report(union, "max")) == reported
    # Every held-out clip counted once (no padding, no duplicate), and gathering mattered: a video's views
    # were split between the ranks, and averaging per-rank metrics would have given other numbers.
    assert len(set(zip(union.records, union.views))) == len(union.labels) == reported["clips"] == 2 * reported["videos"]
    assert set(mine0.records) & set(mine1.records)
    per_rank = [metrics.flat(metrics.report(part, "max")) for part in (mine0, mine1)]
    assert any(abs(np.mean([r[k] for r in per_rank]) - reported[k]) > 1e-3 for k in ("roc_auc", "video_roc_auc"))

    # One process scoring all the clips itself reports the same (to float round-off of different batches).
    one = subprocess.run(
        [sys.executable, HELPER, str(tmp_path / "one"), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-4000:]
    single, alone = _dumped(tmp_path / "one", 0)
    np.testing.assert_array_equal(alone.records, union.records)
    np.testing.assert_array_equal(alone.views, union.views)
    np.testing.assert_allclose(alone.probabilities, union.probabilities, rtol=1e-5, atol=1e-6)
    assert single.keys() == reported.keys()
    for key, value in reported.items():
        assert single[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_export_is_the_best_checkpoint_and_export_last_the_model_as_it_ends(tmp_path):
    """WORKDIR/export serves the weights saved in WORKDIR/best, export_last the final ones; the model keeps its own."""
    import keras

    from twostream.trainer import config as config_lib
    from twostream.trainer import dist
    from twostream.trainer.engine.checkpoint import Checkpoints
    from twostream.trainer.video.export import load
    from twostream.trainer.video.video_task import export_best_and_last

    dist.init()
    config = config_lib.load("tiny")
    inputs = {
        "rgb": keras.Input(config.clip.rgb_shape, name="rgb"),
        "flow": keras.Input(config.clip.flow_shape, name="flow"),
    }
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling3D()(inputs[k]) for k in ("rgb", "flow")])
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    Checkpoints(str(tmp_path), model, None).save_best(step=3)
    best = [w.numpy() for w in model.weights]
    rng = np.random.default_rng(1)
    for weight in model.weights:
        weight.assign(weight.numpy() + rng.normal(size=weight.shape).astype("float32"))
    last = [w.numpy() for w in model.weights]
    export_best_and_last(model, str(tmp_path), config, ["real", "fake"])
    for got, expected in zip(model.weights, last):
        np.testing.assert_array_equal(got.numpy(), expected)

    rgb = np.random.default_rng(0).integers(0, 2, (2, *config.clip.rgb_shape), dtype=np.uint8)  # unsaturated
    flow = np.full((2, *config.clip.flow_shape), 1, np.uint8)
    loaded = {name: load(str(tmp_path / name))[0] for name in ("export", "export_last")}  # kept alive: see load
    served = {name: model.serve(rgb, flow)["probabilities"].numpy() for name, model in loaded.items()}
    for weights, name in ((best, "export"), (last, "export_last")):
        for weight, value in zip(model.weights, weights):
            weight.assign(value)
        expected = keras.ops.softmax(model({"rgb": rgb.astype("float32"), "flow": flow.astype("float32")})).numpy()
        np.testing.assert_allclose(served[name], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(served["export"], served["export_last"])
