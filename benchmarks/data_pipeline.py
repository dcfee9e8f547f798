"""Data pipeline benchmark: Ray+tf.data (1, 2, ... actors) vs a tight loop and vs tf.data py_function; cache; memory.

Usage: python benchmarks/data_pipeline.py [--videos 64] [--frames 24] [--size 64] [--actors 1,2] [--epochs 8]
                                          [--clips-per-call 4]
Every variant does the same decode+flow work on the same generated videos with OpenCV single-threaded (the
decode actors' setting, so a variant's parallelism is its workers). Variants run interleaved, one epoch each
per round, in a rotating order, so a busy neighbour slows them alike. Rates are medians over the rounds after
the first (warm-up), and each variant's fastest round, the one least slowed by others. CPU per clip counts
this process and all it started (actors, Ray's daemons); a busy machine changes it far less than rates.
Ratios are printed at the end.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
import tensorflow as tf  # noqa: E402

from twostream.data.actors import DecoderPool  # noqa: E402
from twostream.data.ray_node import start_ray  # noqa: E402
from twostream.data.clips import ClipLoader, ClipSpec  # noqa: E402
from twostream.data.flow_cache import FlowCache  # noqa: E402
from twostream.data.manifest import from_folder  # noqa: E402
from twostream.data.pipeline import EpochStream, clip_seed, to_dataset  # noqa: E402
from twostream.data.sharding import plan_epoch  # noqa: E402
from twostream.data.synthetic import SynthSpec, synthesize  # noqa: E402

BATCH = 4


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and every process it started (Ray's actors and daemons)."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:   # a process that ended meanwhile
            pass
    return total


def tight_loop(records, spec, epoch: int) -> int:
    """The same decode+flow work in one process, no Ray, no tf.data."""
    loader = ClipLoader(spec)
    for slot, record in enumerate(records):
        loader.load(record.path, clip_seed(0, epoch, slot))
    return len(records)


def tight_loop_default_threads(records, spec, epoch: int) -> int:
    """For reference only: the tight loop with OpenCV's own threading (it then uses more than one core)."""
    cv2.setNumThreads(-1)   # OpenCV's default: one thread per core
    try:
        return tight_loop(records, spec, epoch)
    finally:
        cv2.setNumThreads(1)


def py_function_epoch(records, spec, epoch: int) -> int:
    """The usual alternative: tf.data map(tf.py_function(load), num_parallel_calls=AUTOTUNE)."""
    local = threading.local()   # one loader per tf.data thread: an OpenCV flow estimator is not thread-safe

    def load(path, slot):
        if not hasattr(local, "loader"):
            local.loader = ClipLoader(spec)
        return local.loader.load(path.numpy().decode(), clip_seed(0, epoch, int(slot)))

    def mapped(path, slot):
        rgb, flow = tf.py_function(load, [path, slot], [tf.uint8, tf.uint8])
        return tf.ensure_shape(rgb, spec.rgb_shape), tf.ensure_shape(flow, spec.flow_shape)

    data = tf.data.Dataset.from_tensor_slices(([r.path for r in records], np.arange(len(records))))
    data = data.map(mapped, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(2)
    # The same tf.data options as to_dataset: autotune off (AUTOTUNE then runs one call per core), which spares
    # this variant the same end-of-epoch stall and measured as fast as autotune on (83 vs 79 clips/s, 2 cores).
    options = tf.data.Options()
    options.autotune.enabled = False
    return sum(int(rgb.shape[0]) for rgb, _ in data.with_options(options))


def ray_epoch(records, spec, pool, epoch: int) -> int:
    """End to end through the Ray actors and the tf.data bridge, as the trainer reads an epoch."""
    plan = plan_epoch(len(records), BATCH, 0, 1, seed=0, epoch=epoch, train=True)
    stream = EpochStream(records, pool, plan, seed=0, epoch=epoch, train=True)
    return sum(int(batch[1].shape[0]) for batch in to_dataset(stream, spec, BATCH))


def measure(run, *args) -> tuple[float, float]:
    """(clips/s, CPU ms per clip) of one run."""
    cpu, start = tree_cpu_s(), time.perf_counter()
    clips = run(*args)
    seconds = time.perf_counter() - start
    return clips / seconds, (tree_cpu_s() - cpu) / clips * 1000


def cache_epochs(records, spec, folder) -> tuple[float, float, float]:
    """(first-epoch flow seconds, cached-epoch flow seconds, stored bytes per pixel per frame pair)."""
    loader = ClipLoader(spec, FlowCache(folder, 1 << 30, spec.flow_params()))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for record in records:
            flow = loader.video_flow(record.path)
            np.asarray(flow[: spec.num_frames]).sum()   # touch a clip's worth, as a training read would
        times.append(time.perf_counter() - start)
    stored = loader.cache.total_bytes()
    pairs = sum(len(loader.video_flow(r.path)) for r in records)
    return times[0], times[1], stored / (pairs * spec.size * spec.size)


def rss_mb(pool) -> float:
    """Resident memory now of this process plus the pool's actor processes, MiB."""
    pids = ray.get([actor.__ray_call__.remote(lambda self: os.getpid()) for actor in pool.actors])
    return sum(psutil.Process(pid).memory_info().rss for pid in [os.getpid(), *pids]) / (1 << 20)


def run_rounds(records, spec, pools: dict, epochs: int) -> tuple[dict, list]:
    """{variant: [(clips/s, CPU ms/clip) per round]} and the RSS after each epoch of the largest pool."""
    variants = {"tight loop": (tight_loop, records, spec),
                "tight loop, OpenCV threads": (tight_loop_default_threads, records, spec),
                "tf.data py_function": (py_function_epoch, records, spec)}
    variants.update({f"Ray+tf.data {n} actor{'s' * (n > 1)}": (ray_epoch, records, spec, pool)
                     for n, pool in pools.items()})
    names, largest = list(variants), pools[max(pools)]
    results, rss = {name: [] for name in names}, []
    for epoch in range(epochs):
        for name in names[epoch % len(names):] + names[:epoch % len(names)]:   # rotate who goes first
            run, *args = variants[name]
            results[name].append(measure(run, *args, epoch))
        rss.append(rss_mb(largest))
    return results, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts, measured side by side")
    parser.add_argument("--epochs", type=int, default=8, help="rounds; each variant reads one epoch per round")
    parser.add_argument("--clips-per-call", type=int, default=4, help="clips per actor call (data.clips_per_call)")
    args = parser.parse_args()
    actor_counts = sorted({int(n) for n in args.actors.split(",")})
    spec = ClipSpec(num_frames=8, size=args.size)
    cv2.setNumThreads(1)   # as in every decode actor
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        synthesize(os.path.join(folder, "data"), SynthSpec(num_videos=args.videos, frames=args.frames, size=args.size))
        records = from_folder(os.path.join(folder, "data")).records
        start_ray(None, num_cpus=sum(actor_counts), object_store_mb=256)   # logical CPUs: every pool fits at once
        pools = {n: DecoderPool(spec, n, clips_per_call=args.clips_per_call) for n in actor_counts}
        results, rss = run_rounds(records, spec, pools, args.epochs)
        for pool in pools.values():
            pool.shutdown()
        first, cached, bytes_per_pixel = cache_epochs(records, spec, os.path.join(folder, "cache"))
    report(results, rss, actor_counts, (first, cached, bytes_per_pixel), (load_before, os.getloadavg()[0]), args)


def report(results, rss, actor_counts, cache, load, args) -> None:
    measured = {name: np.asarray(runs[1:] or runs) for name, runs in results.items()}   # round 1 warms up
    median = {name: np.median(runs, axis=0) for name, runs in measured.items()}
    fastest = {name: runs[:, 0].max() for name, runs in measured.items()}   # the round least slowed by neighbours
    print(f"{args.videos} videos x {args.frames} frames at {args.size}px, clips of 8 frames, batch {BATCH}, "
          f"{args.clips_per_call} clips per actor call, {args.epochs} rounds; {os.cpu_count()} cores, "
          f"load average {load[0]:.1f} before, {load[1]:.1f} after")
    print(f"{'variant':30s} {'clips/s':>8s} {'fastest':>8s} {'CPU ms/clip':>12s}   clips/s per round")
    for name, runs in results.items():
        print(f"{name:30s} {median[name][0]:8.1f} {fastest[name]:8.1f} {median[name][1]:12.1f}   "
              f"{[round(r, 1) for r, _ in runs]}")
    first, cached, bytes_per_pixel = cache
    print(f"flow, first epoch {first:.3f}s vs cached epoch {cached:.3f}s; stored {bytes_per_pixel:.2f} bytes/pixel/frame")
    print(f"RSS (driver + {max(actor_counts)} actors) after epoch 1 {rss[0]:.0f} MiB, epoch {len(rss)} {rss[-1]:.0f} MiB")
    print("RATIOS (medians; in brackets, from each variant's fastest round)")
    for n in actor_counts:
        ray_name = f"Ray+tf.data {n} actor{'s' * (n > 1)}"
        ratio = lambda other, scale=1: (f"{median[ray_name][0] / (median[other][0] * scale):.2f} "   # noqa: E731
                                        f"[{fastest[ray_name] / (fastest[other] * scale):.2f}]")
        print(f"  {n} actor(s): Ray+tf.data / (tight loop x {n}) = {ratio('tight loop', n)}  (target >= 0.95);  "
              f"/ py_function = {ratio('tf.data py_function')}  (target >= 1.5 on 2 cores);  "
              f"CPU per clip, tight / Ray = {median['tight loop'][1] / median[ray_name][1]:.2f}")
    print(f"  flow first epoch / cached epoch = {first / cached:.1f}   (target >= 5)")
    print(f"  RSS after epoch {len(rss)} / epoch 1 = {rss[-1] / rss[0]:.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
