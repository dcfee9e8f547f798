"""Evaluation over a whole split with metrics that are exact across ranks (statistics summed, then divided)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from twostream.trainer import dist


def evaluate(eval_step, dataset) -> dict:
    """Runs eval_step over every batch and returns {"loss", "accuracy", "clips"} over all ranks' clips."""
    totals = np.zeros(3)
    for inputs, labels, weights in dataset:
        totals += [float(t) for t in eval_step(inputs, labels, weights)]
    (summed,) = dist.sum_over_ranks([tf.constant(totals, tf.float64)])
    loss_sum, correct, count = (float(t) for t in summed.numpy())
    return {"loss": loss_sum / max(count, 1.0), "accuracy": correct / max(count, 1.0), "clips": int(count)}


def evaluate_workdir(workdir: str, overrides: list[str] = ()) -> dict:
    """`twostream evaluate`: the latest checkpoint of WORKDIR on its config's held-out split; writes eval.json."""
    import json
    import os

    from twostream.models.registry import build_model
    from twostream.trainer import config as config_lib
    from twostream.trainer.checkpoint import Checkpoints
    from twostream.trainer.inputs import Inputs
    from twostream.trainer.step import make_eval_step

    config_path = os.path.join(workdir, "config.yaml")
    if not os.path.isfile(config_path):
        raise config_lib.ConfigError(f"{workdir!r} holds no config.yaml: is it the --workdir of a `twostream train` run?")
    config = config_lib.load(path=config_path, overrides=list(overrides))
    dist.init()
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    model = build_model(config.model, len(inputs.class_names), config.clip.rgb_shape, config.clip.flow_shape)
    checkpoints = Checkpoints(workdir, model, optimizer=None)
    if dist.is_chief() and checkpoints.latest is None:
        raise config_lib.ConfigError(f"{workdir!r} has no checkpoint yet; train first")
    step = checkpoints.restore_or_initialize()
    metrics = evaluate(make_eval_step(model, eager=config.train.eager), inputs.eval_epoch()[0])
    metrics["step"] = step
    inputs.close()
    if dist.is_chief():
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics
