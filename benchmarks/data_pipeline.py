"""Data pipeline benchmark: Ray+tf.data vs a tight loop and vs tf.data py_function, flow cache, and memory over epochs.

Usage: python benchmarks/data_pipeline.py [--videos 32] [--frames 24] [--size 64] [--actors 1] [--epochs 5]
All variants run in one process on the same generated videos; ratios are printed at the end.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from twostream.data.actors import DecoderPool, start_ray  # noqa: E402
from twostream.data.clips import ClipLoader, ClipSpec  # noqa: E402
from twostream.data.flow_cache import FlowCache  # noqa: E402
from twostream.data.manifest import from_folder  # noqa: E402
from twostream.data.pipeline import EpochStream, clip_seed, to_dataset  # noqa: E402
from twostream.data.sharding import plan_epoch  # noqa: E402
from twostream.data.synthetic import SynthSpec, synthesize  # noqa: E402

BATCH = 4


def tight_loop(records, spec) -> float:
    """clips/s of the same decode+flow work in one process, no Ray, no tf.data."""
    loader, start = ClipLoader(spec), time.perf_counter()
    for slot, record in enumerate(records):
        loader.load(record.path, clip_seed(0, 0, slot))
    return len(records) / (time.perf_counter() - start)


def ray_epoch(records, spec, pool, epoch: int) -> float:
    """clips/s end to end through the Ray actors and the tf.data bridge."""
    plan = plan_epoch(len(records), BATCH, 0, 1, seed=0, epoch=epoch, train=True)
    start = time.perf_counter()
    count = sum(int(b[1].shape[0]) for b in to_dataset(EpochStream(records, pool, plan, seed=0, epoch=epoch,
                                                                   train=True), spec, BATCH))
    return count / (time.perf_counter() - start)


def py_function_epoch(records, spec) -> float:
    """clips/s of the usual alternative: tf.data map(tf.py_function(load), num_parallel_calls=AUTOTUNE)."""
    import threading
    local = threading.local()   # one loader per tf.data thread: an OpenCV flow estimator is not thread-safe

    def load(path, slot):
        if not hasattr(local, "loader"):
            local.loader = ClipLoader(spec)
        return local.loader.load(path.numpy().decode(), clip_seed(0, 0, int(slot)))

    def mapped(path, slot):
        rgb, flow = tf.py_function(load, [path, slot], [tf.uint8, tf.uint8])
        return tf.ensure_shape(rgb, spec.rgb_shape), tf.ensure_shape(flow, spec.flow_shape)

    data = tf.data.Dataset.from_tensor_slices(([r.path for r in records], np.arange(len(records))))
    data = data.map(mapped, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).prefetch(2)
    start = time.perf_counter()
    count = sum(int(rgb.shape[0]) for rgb, _ in data)
    return count / (time.perf_counter() - start)


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
    """Resident memory now of this process plus the decode actors' processes, MiB."""
    import psutil
    import ray
    pids = ray.get([actor.__ray_call__.remote(lambda self: os.getpid()) for actor in pool.actors])
    return sum(psutil.Process(pid).memory_info().rss for pid in [os.getpid(), *pids]) / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    spec = ClipSpec(num_frames=8, size=args.size)
    with tempfile.TemporaryDirectory() as folder:
        synthesize(os.path.join(folder, "data"), SynthSpec(num_videos=args.videos, frames=args.frames, size=args.size))
        records = from_folder(os.path.join(folder, "data")).records
        tight = tight_loop(records, spec)
        py_function = py_function_epoch(records, spec)
        start_ray(None, num_cpus=max(2, args.actors), object_store_mb=256)
        pool = DecoderPool(spec, args.actors, clips_per_call=4)
        ray_rates, rss = [], []
        for epoch in range(args.epochs):
            ray_rates.append(ray_epoch(records, spec, pool, epoch))
            rss.append(rss_mb(pool))
        pool.shutdown()
        first, cached, bytes_per_pixel = cache_epochs(records, spec, os.path.join(folder, "cache"))
    ray_rate = float(np.median(ray_rates[1:] or ray_rates))   # epoch 1 includes actor warm-up
    print(f"tight loop (1 process):       {tight:8.1f} clips/s  (x {args.actors} actors = {tight * args.actors:.1f})")
    print(f"Ray + tf.data ({args.actors} actors):     {ray_rate:8.1f} clips/s  per epoch {[round(r, 1) for r in ray_rates]}")
    print(f"tf.data py_function AUTOTUNE: {py_function:8.1f} clips/s")
    print(f"flow, first epoch {first:.3f}s vs cached epoch {cached:.3f}s; stored {bytes_per_pixel:.2f} bytes/pixel/frame")
    print(f"RSS (driver + actors) after epoch 1 {rss[0]:.0f} MiB, epoch {len(rss)} {rss[-1]:.0f} MiB")
    print("RATIOS")
    print(f"  Ray+tf.data / (tight loop x actors) = {ray_rate / (tight * args.actors):.2f}   (target >= 0.95)")
    print(f"  Ray+tf.data / tf.data py_function   = {ray_rate / py_function:.2f}   (target >= 1.5 on 2 cores)")
    print(f"  flow first epoch / cached epoch      = {first / cached:.1f}   (target >= 5)")
    print(f"  RSS after epoch {len(rss)} / epoch 1       = {rss[-1] / rss[0]:.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
