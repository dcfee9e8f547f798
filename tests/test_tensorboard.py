"""TensorBoard sample images: flow colours (direction = hue, magnitude = value), and a training run's image events."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow import quantize
from twostream.data.decode.sampling import TrainView
from twostream.data.distributed.pipeline import clip_seed
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.manifest import load_manifest, split_by_video
from twostream.trainer import config as config_lib
from twostream.trainer.video.visualize import clip_images, flow_to_rgb

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

HELPER = os.path.join(REPO, "tests", "helpers", "train_and_dump.py")


def _colour(dx: float, dy: float, bound: float = 8.0) -> np.ndarray:
    return flow_to_rgb(quantize(np.array([[dx, dy]], np.float32), bound))[0].astype(int)


def test_flow_direction_is_hue_and_magnitude_is_value():
    assert np.all(_colour(0, 0) <= 2)  # no motion: black (up to quantisation)
    assert np.allclose(_colour(8, 0), [255, 0, 0], atol=3)  # right, at the bound: bright red
    assert np.allclose(_colour(-8, 0), [0, 255, 255], atol=3)  # left: cyan
    assert np.allclose(_colour(4, 0), [128, 0, 0], atol=3)  # half the bound: half the value
    up, down = _colour(0, -8), _colour(0, 8)  # image y points down
    assert up[2] > up[1] and down[1] > down[2] and not np.allclose(up, down, atol=20)


def test_clip_images_are_filmstrips_of_the_first_clips():
    rng = np.random.default_rng(0)
    inputs = {
        "rgb": rng.integers(0, 256, (5, 4, 8, 6, 3), dtype=np.uint8),
        "flow": rng.integers(0, 256, (5, 4, 8, 6, 2), dtype=np.uint8),
    }
    images = clip_images((inputs, np.zeros(5, np.int32), np.ones(5, np.float32)))
    assert images["samples/rgb"].shape == images["samples/flow"].shape == (3, 8, 4 * 6, 3)
    np.testing.assert_array_equal(images["samples/rgb"][1, :, 12:18], inputs["rgb"][1, 2])  # clip 1, frame 2
    assert images["samples/flow"].dtype == np.uint8


def _image_events(logdir):
    """{(tag, step): (decoded images)} of every image summary under logdir."""
    found = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    blobs = tf.make_ndarray(value.tensor)  # [width, height, png, png, ...]
                    found[(value.tag, event.step)] = [tf.io.decode_png(b).numpy() for b in blobs[2:]]
    return found


def test_training_writes_sample_frames_and_flow_at_each_epoch_start(tiny_dataset, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            HELPER,
            str(tmp_path),
            str(tmp_path / "weights"),
            "train.epochs=2",
            f"data.root={tiny_dataset}",
            "data.num_actors=1",
            "data.object_store_mb=128",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = _image_events(tmp_path / "rank0" / "run" / "tensorboard")
    # tiny preset: 4 frames of 32x32, 4 clips per step, 22 training clips -> 5 steps per epoch
    assert sorted(events) == [("samples/flow", 0), ("samples/flow", 5), ("samples/rgb", 0), ("samples/rgb", 5)]
    for images in events.values():
        assert [image.shape for image in images] == [(32, 4 * 32, 3)] * 3
    # step 0's images are the first 3 clips of epoch 1's first batch, exactly (PNG is lossless)
    config = config_lib.load("tiny", overrides=[f"data.root={tiny_dataset}"])
    train_records = split_by_video(load_manifest(tiny_dataset), config.data.val_fraction)[0].records
    first = plan_epoch(len(train_records), config.train.global_batch, 0, 1, seed=0, epoch=0, train=True).indices[0]
    loader = ClipLoader(config.clip)
    clips = [
        loader.load(train_records[i].path, TrainView(clip_seed(0, 0, position))) for position, i in enumerate(first)
    ]
    expected = clip_images(({"rgb": np.stack([c[0] for c in clips]), "flow": np.stack([c[1] for c in clips])},))
    for tag in ("samples/rgb", "samples/flow"):
        np.testing.assert_array_equal(np.stack(events[(tag, 0)]), expected[tag])
    assert np.stack(events[("samples/flow", 0)]).max() > 16  # the synthetic clips move: not a black strip
