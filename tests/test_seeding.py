"""The first weights of a run depend on train.seed alone, not on whether this process already had a Ray running."""

import random

import numpy as np
import pytest

from twostream.trainer import config as config_lib
from twostream.trainer import dist
from twostream.trainer.video.video_task import VideoTask

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


def first_weights(config) -> list[np.ndarray]:
    task = VideoTask(config)
    try:
        return [np.array(w) for w in task.model.weights]
    finally:
        task.close()


def test_the_same_seed_builds_the_same_weights_with_ray_started_and_python_random_drawn(tiny_dataset, ray_session):
    dist.init()
    config = config_lib.load("tiny", overrides=[f"data.root={tiny_dataset}", "data.num_actors=1"])
    first = first_weights(config)
    random.random()  # what a Ray start does to Python's generator, which Keras seeds its initialisers from
    second = first_weights(config)
    assert len(first) == len(second) > 0
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
