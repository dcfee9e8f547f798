"""Step time of the loop with a host read of the loss every step vs every train.log_every steps vs several steps per
call.

Usage: python benchmarks/step_time.py [--preset demo] [--steps 30] [--rounds 3] [--batch 16]
       horovodrun -np 2 -H localhost:2 --gloo python benchmarks/step_time.py --steps 20 --rounds 2 --batch 8
What it measures: the real loop (`loop.fit`) training the preset's model on synthetic uint8 clips held in
memory (no decoding), each variant in a fresh workdir for 2 epochs of --steps steps; the time per step is
taken from the second epoch's record (clips_per_s, which covers the epoch's steps and host reads but not
its evaluation or checkpoint), so tracing in the first epoch does not count. Variants:
  every_step   train.log_every=1: the loss read back (a host sync) and TensorBoard written at every step,
               as the loop did before the losses were kept on the device;
  log_every    train.log_every=10 (the default): one read every 10 steps;
  per_call     train.log_every=10, train.steps_per_call=4: 4 steps per tf.function call.
The variants run in a rotating order for --rounds rounds; medians and ratios to every_step are printed.
Under horovodrun it also times the preemption agreement (dist.all_agree, one tiny allreduce) alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from twostream.data.distributed.sharding import local_batch_size  # noqa: E402
from twostream.models.registry import build_model  # noqa: E402
from twostream.trainer import config as config_lib  # noqa: E402
from twostream.trainer import dist  # noqa: E402
from twostream.trainer.engine.loop import fit  # noqa: E402

VARIANTS = {
    "every_step": ["train.log_every=1"],
    "log_every": ["train.log_every=10"],
    "per_call": ["train.log_every=10", "train.steps_per_call=4"],
}


def step_seconds(preset: str, overrides: list[str], steps: int, batch: int) -> float:
    """Seconds per step in the second epoch of a fresh 2-epoch run of the real loop."""
    import keras

    config = config_lib.load(
        preset, overrides=[f"train.global_batch={batch}", "train.epochs=2", "train.select_metric=", *overrides]
    )
    keras.utils.set_random_seed(0)
    model = build_model(config.model, 2, config.clip.rgb_shape, config.clip.flow_shape)
    rng = np.random.default_rng(dist.rank())
    local = local_batch_size(batch, dist.size())
    clips = (
        {
            "rgb": tf.constant(rng.integers(0, 256, (local, *config.clip.rgb_shape), dtype=np.uint8)),
            "flow": tf.constant(rng.integers(0, 256, (local, *config.clip.flow_shape), dtype=np.uint8)),
        },
        tf.constant(rng.integers(0, 2, local), tf.int32),
    )

    def batches(epoch: int, from_step: int):
        return (clips for _ in range(from_step, steps))

    with tempfile.TemporaryDirectory() as workdir:
        fit(model, config.train, workdir, batches, steps)
        if not dist.is_chief():
            return float("nan")  # rank 0 alone writes the records; the ranks ran in step
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            second = [r for r in map(json.loads, f) if r["kind"] == "epoch"][1]
    return batch / second["clips_per_s"]


def agree_seconds(repeats: int = 200) -> float:
    dist.all_agree(True)
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_agree(True)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    args = parser.parse_args()
    dist.init()
    import logging

    logging.disable(logging.WARNING)  # the loop's INFO lines would drown the table
    times = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotating order
            times[name].append(step_seconds(args.preset, VARIANTS[name], args.steps, args.batch))
    agree_s = agree_seconds() if dist.size() > 1 else None  # a collective: every rank
    if not dist.is_chief():
        return
    base = statistics.median(times["every_step"])
    print(
        f"{args.preset} model, global batch {args.batch}, {dist.size()} rank(s), {args.steps} steps per epoch, "
        f"{args.rounds} rounds"
    )
    print(f"{'variant':12s} {'median ms/step':>15s} {'best ms/step':>13s} {'ratio (median)':>15s}")
    for name, values in times.items():
        print(
            f"{name:12s} {statistics.median(values) * 1e3:15.1f} {min(values) * 1e3:13.1f} "
            f"{base / statistics.median(values):15.3f}"
        )
    print("ratio: every_step time / variant time (above 1: faster than reading the loss every step)")
    if agree_s is not None:
        print(f"preemption agreement (dist.all_agree): {agree_s * 1e3:.3f} ms per call")


if __name__ == "__main__":
    main()
