"""Test helper: one rank of `horovodrun -np N` builds its inputs as `twostream train` does (Inputs: the node's
shared Ray, its own decoder pool), reads one training batch, closes, and writes OUT/rank<R>.json: its Ray's
address and node, the batch's shape, and the processes it started.

Usage: node_ray_inputs.py OUT_DIR [SECTION.KEY=VALUE ...]
"""

import json
import os
import sys

import psutil
import ray

from twostream.trainer import config as config_lib
from twostream.trainer import dist
from twostream.trainer.runtime import ray_node
from twostream.trainer.video.inputs import Inputs


def main() -> None:
    out, *overrides = sys.argv[1:]
    config = config_lib.load("tiny", overrides=overrides)
    dist.init()
    inputs = Inputs(config, dist.rank(), dist.size(), dist.local_size())
    rgb = next(iter(inputs.train_epoch(0)[0]))[0]["rgb"]
    seen = {
        "rank": dist.rank(),
        "local_rank": dist.local_rank(),
        "pid": os.getpid(),
        "gcs": ray.get_runtime_context().gcs_address,
        "node": inputs.pool.node,
        "batch": list(rgb.shape),
        "descendants": [(p.pid, p.name()) for p in psutil.Process().children(recursive=True)],
        "folder": ray_node._node_ray.folder,
    }  # where the node's ranks met
    inputs.close()
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"rank{dist.rank()}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main()
