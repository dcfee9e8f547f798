"""Test helper: a tiny regression job on `fit` whose faults (SIGKILL, NaN, a host added) happen at a scheduled step.

Usage: fault_job.py --workdir W [--steps 8 --epochs 3 --global-batch 4] [--elastic] [--kill-rank R --kill-at S]
       [--nan-rank R --nan-at S] [--signal-rank R|all --signal-at S [--starve]]
       [--add-host NAME:SLOTS --discovery-file F --add-at S] [--ids-dir D] [--set K=V]
--signal-*: that rank (or every rank) sends itself SIGTERM before step S, as a scheduler preempting the job would;
the job then exits with preemption.EXIT_CODE. --starve: after its signal a rank gets no batch after step S (it
waits forever), as when SLURM's SIGTERM has also stopped the node's Ray decoders.
Until an added host has joined, steps are slowed (0.5 s each). Every scheduled event fires once per job (a marker file
in the workdir's parent remembers it), so a rank
that is restarted, or a job that is started again, does not repeat it. Each process writes the record ids
of every batch it trains on to IDS_DIR/ids-<pid>.jsonl, so a test can check what each rank read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from twostream.data.distributed.sharding import local_batch_size  # noqa: E402
from twostream.trainer import config as config_lib  # noqa: E402
from twostream.trainer import dist  # noqa: E402
from twostream.trainer.engine.loop import fit  # noqa: E402
from twostream.trainer.engine.runlog import setup_logging  # noqa: E402
from twostream.trainer.runtime.preemption import EXIT_CODE, Preempted  # noqa: E402


def once(args, event: str) -> bool:
    """True the first time `event` is asked for in this job (and its restarts), False afterwards."""
    marker = os.path.join(os.path.dirname(os.path.abspath(args.workdir)), f".{event}.done")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


starving: list[int] = []  # the step before which this process sent itself its signal, with --starve


def scheduled(args, step: int):
    """Fires this process's events scheduled for global step `step` (1-based), before it is trained."""
    if step == args.kill_at and dist.rank() == args.kill_rank and once(args, "kill"):
        print(f"FAULT rank {dist.rank()} (pid {os.getpid()}) SIGKILLs itself before step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if step == args.stop_at and dist.rank() == args.stop_rank and once(args, "stop"):
        print(f"FAULT rank {dist.rank()} (pid {os.getpid()}) SIGSTOPs itself (hangs) before step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    if step == args.signal_at and args.signal_rank in ("all", str(dist.rank())) and once(args, f"signal{dist.rank()}"):
        print(f"FAULT rank {dist.rank()} (pid {os.getpid()}) sends itself SIGTERM before step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        starving.append(step)
    if starving and step > starving[0] and args.starve:
        print(f"FAULT rank {dist.rank()} gets no batch for step {step}: its data source is gone", flush=True)
        threading.Event().wait()
    if step == args.add_at and dist.rank() == 0 and once(args, "add"):
        with open(args.discovery_file, "a") as f:
            f.write(args.add_host + "\n")
        print(f"FAULT host {args.add_host} added before step {step}", flush=True)
    if args.add_at > 0 and step >= args.add_at and dist.size() == 1:
        time.sleep(0.5)  # slow until the added rank has joined, so it joins before the job ends


def make_batches(args, x, y):
    """batches(epoch, from_step): this rank's column of every global batch, by the CURRENT rank and size."""
    steps, global_batch = args.steps, args.global_batch

    def batches(epoch: int, from_step: int):
        rank, size = dist.rank(), dist.size()
        local = local_batch_size(global_batch, size)
        order = np.random.default_rng([0, epoch]).permutation(len(x))
        log = open(os.path.join(args.ids_dir, f"ids-{os.getpid()}.jsonl"), "a") if args.ids_dir else None
        for step in range(from_step, steps):
            ids = order[step * global_batch : (step + 1) * global_batch][rank * local : (rank + 1) * local]
            global_step = epoch * steps + step + 1
            scheduled(args, global_step)
            labels = y[ids].copy()
            if global_step == args.nan_at and rank == args.nan_rank:
                labels[0] = np.nan  # one rank's loss only (a NaN input can vanish in a ReLU, leaving the loss finite)
            if log:
                log.write(
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "rank": rank,
                            "size": size,
                            "epoch": epoch,
                            "step": global_step,
                            "ids": ids.tolist(),
                        }
                    )
                    + "\n"
                )
                log.flush()
            yield tf.constant(x[ids]), tf.constant(labels)

    return batches


def squared_error(labels, outputs, weights):
    return tf.reduce_sum(tf.square(outputs[:, 0] - labels) * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="steps per epoch")
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--elastic", action="store_true")
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--stop-rank", type=int, default=-1)
    parser.add_argument("--stop-at", type=int, default=-1)
    parser.add_argument("--nan-rank", type=int, default=-1)
    parser.add_argument("--nan-at", type=int, default=-1)
    parser.add_argument("--signal-rank", default="")
    parser.add_argument("--signal-at", type=int, default=-1)
    parser.add_argument("--starve", action="store_true")
    parser.add_argument("--add-host", default="")
    parser.add_argument("--add-at", type=int, default=-1)
    parser.add_argument("--discovery-file", default="")
    parser.add_argument("--ids-dir", default="")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="train.KEY=VALUE")
    args = parser.parse_args()

    dist.init()
    setup_logging(dist.is_chief())
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.steps * args.global_batch, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32")).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    train = config_lib.load(
        overrides=[
            f"train.epochs={args.epochs}",
            f"train.global_batch={args.global_batch}",
            "train.optimizer=sgd",
            "train.lr=0.01",
            f"train.elastic={args.elastic}",
            *args.overrides,
        ]
    ).train
    try:
        metrics = fit(model, train, args.workdir, make_batches(args, x, y), args.steps, loss=squared_error)
    except Preempted as stopped:
        print(f"PREEMPTED rank {dist.rank()} step {stopped.step}", flush=True)
        raise SystemExit(EXIT_CODE) from None
    weights = [float(np.asarray(w).sum()) for w in model.weights]
    print(
        "DONE",
        json.dumps({"rank": dist.rank(), "size": dist.size(), "metrics": metrics, "weights": weights}),
        flush=True,
    )


if __name__ == "__main__":
    main()
