"""Starts Ray as `twostream train` does (start_ray, then a decoder pool) and prints, as JSON, every listening
TCP socket of this process and its descendants ([[pid, process name, address, port], ...]), where the decode
actors run, and which of Ray's processes a SIGUSR1 (SLURM's warning signal reaches every process) killed."""

import json
import signal
import sys
import time

import psutil
import ray

from twostream.data.distributed.actors import DecoderPool
from twostream.trainer import config as config_lib
from twostream.trainer.runtime.ray_node import start_ray

start_ray(sys.argv[1] if len(sys.argv) > 1 else None, num_cpus=1, object_store_mb=128)
pool = DecoderPool(config_lib.load("tiny").clip, num_actors=1, clips_per_call=1)
listening = []
for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
    try:
        name = " ".join(process.cmdline())[:200]
        listening += [
            [process.pid, name, c.laddr.ip, c.laddr.port]
            for c in process.net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        ]
    except psutil.Error:  # a process that ended meanwhile
        pass
killed = []
if len(sys.argv) == 1:  # a private Ray: its processes are this one's descendants
    time.sleep(3)  # the worker Ray starts with the driver ends after 1 s idle (PRIVATE_RAY_CONFIG): not a signal
    names = {}
    for child in psutil.Process().children(recursive=True):
        try:
            names[child] = " ".join(child.cmdline())[:200]
        except psutil.Error:
            pass
    for child in names:
        child.send_signal(signal.SIGUSR1)
    time.sleep(2)
    killed = [name for child, name in names.items() if not child.is_running()]
print(
    json.dumps({"listening": listening, "node": pool.node, "actor_nodes": pool.actor_nodes, "killed_by_usr1": killed})
)
pool.shutdown()
ray.shutdown()
