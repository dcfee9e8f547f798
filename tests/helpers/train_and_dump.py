"""Test helper: runs twostream's train() in this process (one rank), then saves this rank's weights.

Usage: train_and_dump.py RANK_DIRS_ROOT OUT_PREFIX [--stop-after-step N] [SECTION.KEY=VALUE ...]
                          [--then OUT_PREFIX2 [SECTION.KEY=VALUE ...]] ...
Each rank works in RANK_DIRS_ROOT/rank<R> with the relative workdir "run", as ranks on separate machines
without a shared filesystem would: whatever a rank writes lands in its own folder.
Each --then trains again in the same processes (one start-up of Python, TensorFlow, Horovod and Ray for several
runs), from scratch in workdir "run2", "run3", ..., with only its own overrides, and saves to its OUT_PREFIX.
Every run seeds again right before its model is built (seed_before_building), so that it starts from the
same weights whether or not it is the first run of its process.
--stop-after-step N kills the run (exit code 3, no weights written) right after the checkpoint of step N,
as a preempted job would stop; N must be a multiple of train.checkpoint_every. The product has no such
hook: this helper wraps the loop's Checkpoints.save from outside.
"""

import os
import sys

import keras
import numpy as np

from twostream.models import registry
from twostream.trainer import config as config_lib
from twostream.trainer.engine import loop
from twostream.trainer.video import video_task

STOPPED = 3  # exit code of a run stopped by --stop-after-step


def stop_after_step(stop_step: int) -> None:
    """Makes the loop's checkpoint saves end the process right after the one at `stop_step`."""

    class StoppingCheckpoints(loop.Checkpoints):
        def save(self, step: int, state: dict | None = None) -> None:
            super().save(step, state)
            if step == stop_step:
                print("STOPPED after step", step, flush=True)
                os._exit(STOPPED)  # no clean-up at all: like a killed job

    loop.Checkpoints = StoppingCheckpoints


def seed_before_building(seed: int) -> None:
    """Makes train() seed Python, NumPy, TensorFlow and Keras again right before it builds the model. train()
    seeds first thing, but starting Ray (only the first run of a process starts it) then draws from Python's
    `random`, from which Keras seeds the initialisers: without this a second run would start elsewhere."""

    def build_model(*args, **kwargs):
        keras.utils.set_random_seed(seed)
        return registry.build_model(*args, **kwargs)

    video_task.build_model = build_model


def runs(args: list[str]) -> list[tuple[str, list[str]]]:
    """[OUT_PREFIX, K=V ..., --then, OUT_PREFIX2, K=V ...] -> [(OUT_PREFIX, [K=V ...]), (OUT_PREFIX2, [...])]."""
    found, group = [], []
    for arg in [*args, "--then"]:
        if arg == "--then":
            found.append((group[0], group[1:]))
            group = []
        else:
            group.append(arg)
    return found


def main() -> None:
    root, *args = sys.argv[1:]
    if args[1:2] == ["--stop-after-step"]:
        stop_after_step(int(args[2]))
        args = args[:1] + args[3:]
    rank = int(os.environ.get("HOROVOD_RANK", "0"))
    os.makedirs(os.path.join(root, f"rank{rank}"), exist_ok=True)
    os.chdir(os.path.join(root, f"rank{rank}"))
    for number, (out_prefix, overrides) in enumerate(runs(args), 1):
        config = config_lib.load("tiny", overrides=overrides)
        seed_before_building(config.train.seed)
        metrics, model = video_task.train(config, "run" if number == 1 else f"run{number}")
        np.savez(f"{out_prefix}_rank{rank}.npz", *[np.asarray(v) for v in model.weights])
        print("METRICS", rank, metrics, flush=True)


if __name__ == "__main__":
    main()
