"""One rank's part in its node's shared Ray, without Horovod: joins (or, as local rank 0, starts) the Ray of job KEY,
decodes one clip with a decoder pool of its own and prints, as JSON, what it saw; then, with --hold, waits to be
killed instead of leaving.

Usage: node_ray_rank.py LOCAL_RANK LOCAL_SIZE KEY VIDEO [--hold]
"""

import json
import os
import sys
import time

import psutil
import ray

from twostream.data.decode.sampling import TrainView
from twostream.data.distributed.actors import ClipRequest, DecoderPool
from twostream.trainer import config as config_lib
from twostream.trainer.runtime.ray_node import NodeRanks, start_ray, stop_ray

local_rank, local_size, key, video = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
start_ray(None, num_cpus=1, object_store_mb=100, node=NodeRanks(local_rank, local_size, key))
pool = DecoderPool(config_lib.load("tiny").clip, num_actors=1, clips_per_call=1)
clip = next(pool.map([ClipRequest(video, TrainView(local_rank))]))
descendants = [(p.pid, p.name()) for p in psutil.Process().children(recursive=True)]
listening = []  # every listening TCP socket of this process and the Ray processes it started
for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
    try:
        listening += [c.laddr.ip for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:  # a process that ended meanwhile
        pass
print(
    json.dumps(
        {
            "local_rank": local_rank,
            "pid": os.getpid(),
            "gcs": ray.get_runtime_context().gcs_address,
            "node": pool.node,
            "actor_pid": clip.pid,
            "error": clip.error,
            "rgb_shape": list(clip.rgb.shape) if clip.rgb is not None else None,
            "descendants": descendants,
            "listening": listening,
        }
    ),
    flush=True,
)
if "--hold" in sys.argv:
    time.sleep(600)
pool.shutdown()
stop_ray()
