"""The whole path in one process: train, checkpoint, auto-resume, evaluate and export, via the CLI."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import copy_workdir, run_cli

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_train_resume_evaluate_export(trained, tiny_dataset, tmp_path):
    """The session's one-epoch `twostream train` (eval.views=2), then more epochs on a copy of its workdir."""
    workdir = copy_workdir(trained.workdir, str(tmp_path / "run"))
    final = json.loads(trained.stdout.strip().splitlines()[-1])["final"]
    from twostream.data.manifest import load_manifest, split_by_video

    held_out = split_by_video(load_manifest(tiny_dataset), 0.2)[1].records
    assert final["clips"] == 2 * len(held_out) > 0  # eval.views=2: two clips per video
    assert final["accuracy"] * final["clips"] == pytest.approx(round(final["accuracy"] * final["clips"]))
    for name in [
        "config.yaml",
        "metrics.jsonl",
        "checkpoints",
        "best",
        "export/saved_model.pb",
        "export/twostream.json",
        "export_last/saved_model.pb",
        "tensorboard",
    ]:
        assert os.path.exists(os.path.join(workdir, name)), name
    epochs = [r for r in _jsonl(os.path.join(workdir, "metrics.jsonl")) if r["kind"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["clips_failed"] == 0
    assert epochs[0]["val_accuracy"] == final["accuracy"]
    # where the epoch's time went: the step's time, the actors' and the driver's shares, the calls in flight
    assert epochs[0]["step_ms"] > 0 and 0 < epochs[0]["actor_busy_share"] <= 1 and epochs[0]["actor_cpu_share"] > 0
    assert all(0 <= epochs[0][k] <= 1 for k in ("data_wait_share", "driver_share", "driver_wait_share"))
    assert epochs[0]["calls_in_flight_min"] is None or epochs[0]["calls_in_flight_min"] >= 0
    assert all(isinstance(e["calls_without_slot"], int) and e["calls_without_slot"] >= 0 for e in epochs)
    steps_per_epoch = epochs[0]["step"]

    # Started again with more epochs on the same workdir: it resumes after epoch 1, not from scratch.
    second = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        workdir,
        "--set",
        "train.epochs=2",
        "--set",
        "eval.views=2",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"(step {steps_per_epoch})" in second.stderr
    epochs = [r for r in _jsonl(os.path.join(workdir, "metrics.jsonl")) if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[1]["step"] == 2 * steps_per_epoch
    # The best epoch by train.select_metric (default val_loss, lowest), over both runs.
    best = json.loads(second.stdout.strip().splitlines()[-1])["final"]["best"]
    losses = [r["val_loss"] for r in epochs]
    assert best == {"epoch": 1 + int(np.argmin(losses)), "metric": "val_loss", "value": min(losses)}

    evaluated = run_cli("evaluate", "--workdir", workdir)  # the best checkpoint by default
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])["eval"]
    assert (report["checkpoint"], report["step"]) == ("best", best["epoch"] * steps_per_epoch)
    assert report["loss"] == pytest.approx(best["value"], rel=1e-4) and report["clips"] == final["clips"]
    assert json.load(open(os.path.join(workdir, "eval.json")))["accuracy"] == report["accuracy"]
    latest = run_cli("evaluate", "--workdir", workdir, "--checkpoint", "latest")
    report = json.loads(latest.stdout.strip().splitlines()[-1])["eval"]
    assert (report["checkpoint"], report["step"]) == ("latest", 2 * steps_per_epoch)
    assert report["loss"] == pytest.approx(losses[1], rel=1e-4)

    # The exported model serves raw uint8 clips and returns class probabilities.
    serve = tf.saved_model.load(os.path.join(workdir, "export")).signatures["serve"]
    meta = json.load(open(os.path.join(workdir, "export", "twostream.json")))
    clip = meta["clip"]
    rgb = tf.zeros((3, clip["num_frames"], clip["size"], clip["size"], 3), tf.uint8)
    flow = tf.fill((3, clip["num_frames"], clip["size"], clip["size"], 2), tf.constant(128, tf.uint8))
    probabilities = serve(rgb=rgb, flow=flow)["probabilities"].numpy()
    assert probabilities.shape == (3, len(meta["class_names"]))
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_clear_errors_instead_of_tracebacks(tmp_path, tiny_dataset):
    missing = run_cli("train", "--preset", "tiny", "--data", str(tmp_path / "none"), "--workdir", str(tmp_path / "w"))
    assert missing.returncode == 2 and "twostream synth" in missing.stderr and "Traceback" not in missing.stderr
    bad_key = run_cli(
        "train", "--preset", "tiny", "--data", tiny_dataset, "--workdir", str(tmp_path / "w"), "--set", "train.epoch=2"
    )
    assert bad_key.returncode == 2 and "train accepts" in bad_key.stderr
    bad_batch = run_cli(
        "train",
        "--preset",
        "tiny",
        "--data",
        tiny_dataset,
        "--workdir",
        str(tmp_path / "w"),
        "--set",
        "train.global_batch=1000",
    )
    assert bad_batch.returncode == 2 and "global_batch" in bad_batch.stderr


def test_a_first_epoch_that_waited_for_data_says_why_and_what_to_change():
    from twostream.trainer.video.video_task import slow_data_advice

    record = {"epoch": 1, "data_wait_share": 0.4, "decode_clips_per_s": 100.0, "step_ms": 80.0}  # steps: 200 clips/s
    advice = slow_data_advice(record, global_batch=16, actors=1, flow_cached=False)
    assert "waited for data 40%" in advice and "make 100 clips/s" in advice and "take 200" in advice
    assert "data.num_actors (1 per rank" in advice and "twostream prepare" in advice
    assert "twostream prepare" not in slow_data_advice(record, 16, 1, flow_cached=True)
    fast_actors = slow_data_advice(record | {"decode_clips_per_s": 300.0}, 16, 1, flow_cached=False)
    assert "in the hand-off" in fast_actors and "num_actors" not in fast_actors
    assert slow_data_advice(record | {"data_wait_share": 0.05}, 16, 1, flow_cached=False) == ""
