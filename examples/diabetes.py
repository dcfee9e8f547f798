"""The generic loop on a non-video task: a regressor on scikit-learn's diabetes data, held-out MAE reported.

Usage: python examples/diabetes.py --workdir runs/diabetes [--epochs 60]
       horovodrun -np 2 -H localhost:2 --gloo python examples/diabetes.py --workdir runs/diabetes2
The same `fit` that trains the two-stream network (Horovod averaging, lr x world size, checkpoints and
resume, NaN guard, metrics.jsonl) trains a Keras MLP here; scikit-learn is needed only for this example.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402  (bundled with scikit-learn: no download)

from twostream.data.distributed.sharding import local_batch_size  # noqa: E402
from twostream.trainer import dist  # noqa: E402
from twostream.trainer.config import TrainConfig  # noqa: E402
from twostream.trainer.engine.loop import fit  # noqa: E402
from twostream.trainer.engine.runlog import setup_logging  # noqa: E402
from twostream.trainer.runtime.preemption import EXIT_CODE, Preempted  # noqa: E402


def split(seed: int = 0, held_out: float = 0.2):
    """Standardised features; targets in their own units (a disease-progression score, about 25..346)."""
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - held_out))
    train, test = order[:cut], order[cut:]
    mean, std = x[train].mean(0), x[train].std(0)
    return (
        ((x[train] - mean) / std).astype("float32"),
        y[train].astype("float32"),
        ((x[test] - mean) / std).astype("float32"),
        y[test].astype("float32"),
    )


def squared_error(target_mean: float, target_std: float):
    """Mean squared error of the standardised target, over the examples of weight 1."""

    def loss(labels, outputs, weights):
        error = outputs[:, 0] - (labels - target_mean) / target_std
        return tf.reduce_sum(tf.square(error) * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    return loss


def rank_batches(x, y, global_batch: int, seed: int):
    """batches(epoch, from_step): a seeded shuffle per epoch, each rank its column of every global batch."""
    steps = len(x) // global_batch
    local = local_batch_size(global_batch, dist.size())

    def batches(epoch: int, from_step: int) -> tf.data.Dataset:
        order = np.random.default_rng([seed, epoch]).permutation(len(x))[: steps * global_batch]
        mine = order.reshape(steps, global_batch)[from_step:, dist.rank() * local : (dist.rank() + 1) * local]
        return tf.data.Dataset.from_tensor_slices((x[mine.reshape(-1)], y[mine.reshape(-1)])).batch(local)

    return batches, steps


def held_out_mae(model, x, y, target_mean: float, target_std: float) -> dict:
    """MAE in target units over the held-out examples, exact across ranks (each rank scores every rank-th one)."""
    mine = slice(dist.rank(), None, dist.size())
    predicted = model(x[mine], training=False).numpy()[:, 0] * target_std + target_mean
    (totals,) = dist.sum_over_ranks([tf.constant([np.abs(predicted - y[mine]).sum(), len(predicted)], tf.float64)])
    error_sum, count = totals.numpy()
    return {"mae": float(error_sum / count), "examples": int(count)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)

    dist.init()
    setup_logging(dist.is_chief())
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = split()
    target_mean, target_std = float(y_train.mean()), float(y_train.std())
    model = keras.Sequential(
        [keras.Input((x_train.shape[1],)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)]
    )
    train = TrainConfig(
        global_batch=args.global_batch,
        epochs=args.epochs,
        lr=args.lr,
        optimizer="adamw",
        schedule="cosine",
        weight_decay=1e-4,
        keep_checkpoints=1,
        select_metric="val_mae",
    )  # the best epoch (lowest held-out MAE) is kept in WORKDIR/best
    batches, steps_per_epoch = rank_batches(x_train, y_train, args.global_batch, seed=0)
    try:
        metrics = fit(
            model,
            train,
            args.workdir,
            batches,
            steps_per_epoch,
            loss=squared_error(target_mean, target_std),
            evaluate=lambda: held_out_mae(model, x_test, y_test, target_mean, target_std),
        )
    except Preempted as stopped:  # SIGTERM / SIGUSR1: checkpoint saved; run again to resume
        print(stopped)
        raise SystemExit(EXIT_CODE) from None
    metrics["baseline_mae"] = float(np.abs(y_test - target_mean).mean())  # always predicting the training mean
    if dist.is_chief():
        print(json.dumps({"held_out": metrics}))
    return metrics


if __name__ == "__main__":
    main()
