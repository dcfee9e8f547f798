"""Test helper: runs twostream's train() in this process (one rank), then saves this rank's weights.

Usage: train_and_dump.py RANK_DIRS_ROOT OUT_PREFIX [SECTION.KEY=VALUE ...]
Each rank works in RANK_DIRS_ROOT/rank<R> with the relative workdir "run", as ranks on separate machines
without a shared filesystem would: whatever a rank writes lands in its own folder.
"""
import os
import sys

import numpy as np

from twostream.trainer import config as config_lib
from twostream.trainer.loop import train


def main() -> None:
    root, out_prefix, *overrides = sys.argv[1:]
    rank = int(os.environ.get("HOROVOD_RANK", "0"))
    os.makedirs(os.path.join(root, f"rank{rank}"), exist_ok=True)
    os.chdir(os.path.join(root, f"rank{rank}"))
    config = config_lib.load("tiny", overrides=overrides)
    metrics, model = train(config, "run")
    np.savez(f"{out_prefix}_rank{rank}.npz", *[np.asarray(v) for v in model.weights])
    print("METRICS", rank, metrics, flush=True)


if __name__ == "__main__":
    main()
