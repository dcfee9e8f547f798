"""Test helper: evaluates a freshly initialised `tiny` model on the held-out videos as one rank, then saves what
this rank reports (metrics over every rank's clips) and the clips it scored itself.

Usage: eval_and_dump.py OUT_DIR [SECTION.KEY=VALUE ...]
Writes OUT_DIR/rank<R>.json (the reported metrics) and OUT_DIR/rank<R>.npz (this rank's own scored clips).
"""

import dataclasses
import json
import os
import sys

import keras
import numpy as np

from twostream.models.registry import build_model
from twostream.trainer import config as config_lib
from twostream.trainer import dist
from twostream.trainer.engine.step import make_eval_step
from twostream.trainer.video.evaluate import local_scores, over_ranks
from twostream.trainer.video.inputs import Inputs


def main() -> None:
    out, *overrides = sys.argv[1:]
    config = config_lib.load("tiny", overrides=overrides)
    dist.init()
    keras.utils.set_random_seed(config.train.seed)
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    model = build_model(config.model, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
    dist.broadcast_variables(model.weights)  # every rank scores with rank 0's weights
    local = local_scores(make_eval_step(model), inputs.eval_epoch()[0])
    reported = over_ranks(local, config.eval.video_aggregate)
    inputs.close()
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, f"rank{dist.rank()}.npz"), **dataclasses.asdict(local))
    with open(os.path.join(out, f"rank{dist.rank()}.json"), "w") as f:
        json.dump(reported, f)


if __name__ == "__main__":
    main()
