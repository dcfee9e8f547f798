"""CPU an idle private Ray uses with one decode actor: the settings a job's Ray starts with against Ray's defaults.

Usage: python benchmarks/ray_idle.py [--rounds 4] [--seconds 20] [--actors 1]

Each variant runs in a fresh process that starts a private Ray as `twostream train` does
(trainer/runtime/ray_node.py `start_private_ray`), builds a DecoderPool of `--actors` actors, waits 5 s, then
counts the CPU time (user+system) of itself and every process it started over `--seconds` of doing nothing:
  ours             PRIVATE_RAY_CONFIG (no workers started ahead, no metrics collection, workers at nice 0), and
                   neither the autoscaler monitor nor the log monitor (ray_node._without_monitors)
  Ray's defaults   the same Ray with only worker_niceness 0 (the actors' priority, kept alike for comparison) and
                   both monitors, as `ray.init` starts them
Rounds alternate the two in a rotating order; medians, per process kind, and the ratio are printed at the end.
Idle CPU matters because the decode actors' CPU per clip carries it: the fewer clips a second, the more it weighs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

VARIANTS = {"ours": None, "Ray's defaults": {"worker_niceness": 0}}
CHILD = """
import contextlib, json, sys, time
import psutil
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.distributed.actors import DecoderPool
from twostream.trainer.runtime import ray_node
config, actors, seconds = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
if config is not None:
    ray_node.PRIVATE_RAY_CONFIG = config
    ray_node._without_monitors = contextlib.nullcontext
ray_node.start_private_ray(2, 256)
pool = DecoderPool(ClipSpec(num_frames=8, size=112), actors, clips_per_call=8)
time.sleep(5)  # past the actors' start-up


def kind(process):
    if process.pid == me.pid:
        return "this process"
    name, words = process.name(), process.cmdline()
    if name.startswith("ray::"):
        return name
    path = next(w for w in words[1:] if not w.startswith("-")) if name.startswith("python") else words[0]
    return path.rsplit("/", 1)[-1]


def cpu_by_kind():
    used = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            times, key = process.cpu_times(), kind(process)
        except psutil.Error:
            continue
        used[key] = used.get(key, 0.0) + times.user + times.system
    return used


me = psutil.Process()
before = cpu_by_kind()
time.sleep(seconds)
after = cpu_by_kind()
print(json.dumps({key: (after[key] - before.get(key, 0.0)) / seconds * 1000 for key in after}))
pool.shutdown()
"""


def run(config, actors: int, seconds: float) -> dict[str, float]:
    """{process kind: CPU ms per second} of one idle Ray."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config), str(actors), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--actors", type=int, default=1)
    args = parser.parse_args()
    names = list(VARIANTS)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names[round_ % 2 :] + names[: round_ % 2]:
            results[name].append(run(VARIANTS[name], args.actors, args.seconds))
            print(f"round {round_ + 1} {name}: {sum(results[name][-1].values()):.1f} ms/s", flush=True)
    totals = {name: statistics.median(sum(r.values()) for r in runs) for name, runs in results.items()}
    for name, runs in results.items():
        kinds = sorted({key for r in runs for key in r})
        parts = ", ".join(f"{key} {statistics.median(r.get(key, 0.0) for r in runs):.1f}" for key in kinds)
        print(f"{name}: {totals[name]:.1f} ms CPU per second (medians: {parts})")
    print(f"RATIO ours / Ray's defaults = {totals['ours'] / totals[names[1]]:.2f}")


if __name__ == "__main__":
    main()
