"""Test helper: runs twostream's train() in this process (one rank), then saves this rank's weights.

Usage: train_and_dump.py RANK_DIRS_ROOT OUT_PREFIX [--stop-after-step N] [SECTION.KEY=VALUE ...]
Each rank works in RANK_DIRS_ROOT/rank<R> with the relative workdir "run", as ranks on separate machines
without a shared filesystem would: whatever a rank writes lands in its own folder.
--stop-after-step N kills the run (exit code 3, no weights written) right after the checkpoint of step N,
as a preempted job would stop; N must be a multiple of train.checkpoint_every. The product has no such
hook: this helper wraps the loop's Checkpoints.save from outside.
"""
import os
import sys

import numpy as np

from twostream.trainer import config as config_lib
from twostream.trainer import loop
from twostream.trainer.video_task import train

STOPPED = 3   # exit code of a run stopped by --stop-after-step


def stop_after_step(stop_step: int) -> None:
    """Makes the loop's checkpoint saves end the process right after the one at `stop_step`."""
    class StoppingCheckpoints(loop.Checkpoints):
        def save(self, step: int, state: dict | None = None) -> None:
            super().save(step, state)
            if step == stop_step:
                print("STOPPED after step", step, flush=True)
                os._exit(STOPPED)   # no clean-up at all: like a killed job
    loop.Checkpoints = StoppingCheckpoints


def main() -> None:
    root, out_prefix, *overrides = sys.argv[1:]
    if overrides[:1] == ["--stop-after-step"]:
        stop_after_step(int(overrides[1]))
        overrides = overrides[2:]
    rank = int(os.environ.get("HOROVOD_RANK", "0"))
    os.makedirs(os.path.join(root, f"rank{rank}"), exist_ok=True)
    os.chdir(os.path.join(root, f"rank{rank}"))
    config = config_lib.load("tiny", overrides=overrides)
    metrics, model = train(config, "run")
    np.savez(f"{out_prefix}_rank{rank}.npz", *[np.asarray(v) for v in model.weights])
    print("METRICS", rank, metrics, flush=True)


if __name__ == "__main__":
    main()
