"""Data pipeline benchmark: Ray+tf.data (1, 2, ... actors) vs a tight loop and vs tf.data py_function; where the
Ray path's CPU per clip goes; cache; memory.

Usage: python benchmarks/data_pipeline.py [--videos 64] [--frames 24] [--size 64] [--actors 1,2] [--epochs 8]
                                          [--clips-per-call 4[,8,...]] [--batch 4] [--opencv-threads]
                                          [--copied-batches]
Every variant does the same decode+flow work on the same generated videos with OpenCV single-threaded (the
decode actors' setting, so a variant's parallelism is its workers). Variants run interleaved, one epoch each
per round, in a rotating order, so a busy neighbour slows them alike. Rates are medians over the rounds after
the first (warm-up), and each variant's fastest round, the one least slowed by others.

CPU per clip is user+system time of the processes a variant uses, split in three groups: `driver` (this
process), `workers` (the decode actors, or the fresh tight-loop processes) and `ray daemons` (every other
process this one started: GCS, raylet, dashboard, idle workers; counted for Ray's variants only). The tight
loop runs twice: in a fresh process that imports only the decoder (`tight loop`, the baseline of the ratios)
and in this process, which has imported TensorFlow and Ray and built tf.data generators (`tight loop, this
process`: TensorFlow then has set glibc's mmap threshold to 128 KiB, so its decoding faults pages in again; the
trainer process decodes nothing, and reuses its batch arrays: data/distributed/batch_buffers.py). For N > 1 actors the
fresh tight loop also runs in N processes at once (`tight loop xN, at once`): N decoders sharing the machine, as N
actors do, so that ratio leaves out what sharing the cores costs and keeps what Ray and tf.data add. The breakdown runs
the 1-actor pool three ways: results only (`Ray map`), plus batching (`Ray EpochStream`), plus the tf.data
bridge (`Ray+tf.data`); the differences in driver CPU are what each stage costs. The actors write their clips into
shared memory (data/distributed/shared_slots.py); a further pool of the fewest actors returns them through Ray's
object store instead (`..., object store`), for comparison. A local batch of one call's clips is a view of the call's
slot (EpochStream); `--copied-batches` adds the fewest actors with every batch filled with copies instead. A busy
machine changes CPU per clip far less than rates. Ratios are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import ray  # noqa: E402
import tensorflow as tf  # noqa: E402

from twostream.data.decode.clip_spec import ClipSpec  # noqa: E402
from twostream.data.decode.clips import ClipLoader  # noqa: E402
from twostream.data.decode.flow_cache import FlowCache  # noqa: E402
from twostream.data.decode.sampling import TrainView  # noqa: E402
from twostream.data.distributed import pipeline  # noqa: E402
from twostream.data.distributed.actors import DecoderPool  # noqa: E402
from twostream.data.distributed.batch_buffers import BATCH_BUFFERS  # noqa: E402
from twostream.data.distributed.bridge import to_dataset  # noqa: E402
from twostream.data.distributed.pipeline import EpochStream, clip_seed  # noqa: E402
from twostream.data.distributed.sharding import plan_epoch  # noqa: E402
from twostream.data.distributed.shared_slots import slots_per_actor  # noqa: E402
from twostream.data.make.synthetic import SynthSpec, synthesize  # noqa: E402
from twostream.data.manifest import from_folder  # noqa: E402
from twostream.trainer.config import DataConfig  # noqa: E402
from twostream.trainer.runtime.ray_node import start_ray  # noqa: E402

GROUPS = ("driver", "workers", "ray daemons")
FRESH_WORKER = """
import json, sys, cv2
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import TrainView
cv2.setNumThreads(1)
loader = ClipLoader(ClipSpec(**json.loads(sys.argv[1])))
for line in sys.stdin:
    clips = json.loads(line)
    for path, seed in clips:
        loader.load(path, TrainView(seed))
    print(len(clips), flush=True)
"""


class FreshTightLoop:
    """The tight loop in a fresh interpreter that imports only the decoder: no TensorFlow, no Ray."""

    def __init__(self, spec: ClipSpec):
        fields = {"num_frames": spec.num_frames, "size": spec.size}
        self.process = subprocess.Popen(
            [sys.executable, "-c", FRESH_WORKER, json.dumps(fields)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid

    def epoch(self, records, spec, epoch: int) -> int:
        self.send(epoch_clips(records, epoch))
        return self.receive()

    def send(self, clips: list) -> None:
        self.process.stdin.write(json.dumps(clips) + "\n")
        self.process.stdin.flush()

    def receive(self) -> int:
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def epoch_clips(records, epoch: int) -> list[tuple[str, int]]:
    return [(record.path, clip_seed(0, epoch, slot)) for slot, record in enumerate(records)]


def tight_loops_at_once(loops: list[FreshTightLoop], records, spec, epoch: int) -> int:
    """The fresh tight loop in several processes at once, the epoch's clips dealt out in turn: what each clip's
    decode costs when that many decoders share this machine, as that many actors do."""
    clips = epoch_clips(records, epoch)
    for k, loop in enumerate(loops):
        loop.send(clips[k :: len(loops)])
    return sum(loop.receive() for loop in loops)


def cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.Error:  # a process that ended meanwhile
        return 0.0


def group_cpu_s(worker_pids: set[int], others: set[int]) -> dict[str, float]:
    """CPU seconds used so far by this process, by the workers, and by every other process it started except
    `others` (the other variants' actors and tight loop, idle meanwhile: no part of this variant's cost)."""
    me = psutil.Process()
    used = {"driver": cpu_s(me), "workers": 0.0, "ray daemons": 0.0}
    for child in me.children(recursive=True):
        if child.pid in worker_pids:
            used["workers"] += cpu_s(child)
        elif child.pid not in others:
            used["ray daemons"] += cpu_s(child)
    return used


def tight_loop(records, spec, epoch: int) -> int:
    """The same decode+flow work in this process, no Ray, no tf.data."""
    loader = ClipLoader(spec)
    for slot, record in enumerate(records):
        loader.load(record.path, TrainView(clip_seed(0, epoch, slot)))
    return len(records)


def tight_loop_default_threads(records, spec, epoch: int) -> int:
    """For reference only: the tight loop with OpenCV's own threading (it then uses more than one core)."""
    cv2.setNumThreads(-1)  # OpenCV's default: one thread per core
    try:
        return tight_loop(records, spec, epoch)
    finally:
        cv2.setNumThreads(1)


def py_function_epoch(records, spec, batch: int, epoch: int) -> int:
    """The usual alternative: tf.data map(tf.py_function(load), num_parallel_calls=AUTOTUNE)."""
    local = threading.local()  # one loader per tf.data thread: an OpenCV flow estimator is not thread-safe

    def load(path, slot):
        if not hasattr(local, "loader"):
            local.loader = ClipLoader(spec)
        return local.loader.load(path.numpy().decode(), TrainView(clip_seed(0, epoch, int(slot))))

    def mapped(path, slot):
        rgb, flow = tf.py_function(load, [path, slot], [tf.uint8, tf.uint8])
        return tf.ensure_shape(rgb, spec.rgb_shape), tf.ensure_shape(flow, spec.flow_shape)

    data = tf.data.Dataset.from_tensor_slices(([r.path for r in records], np.arange(len(records))))
    data = data.map(mapped, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)
    # The same tf.data options as to_dataset: autotune off (AUTOTUNE then runs one call per core), which spares
    # this variant the same end-of-epoch stall and measured as fast as autotune on (83 vs 79 clips/s, 2 cores).
    options = tf.data.Options()
    options.autotune.enabled = False
    return sum(int(rgb.shape[0]) for rgb, _ in data.with_options(options))


def _stream(records, pool, batch: int, epoch: int) -> EpochStream:
    plan = plan_epoch(len(records), batch, 0, 1, seed=0, epoch=epoch, train=True)
    return EpochStream(records, pool, plan, seed=0, epoch=epoch, train=True)


def ray_epoch(records, spec, pool, batch: int, epoch: int) -> int:
    """End to end through the Ray actors and the tf.data bridge, as the trainer reads an epoch."""
    return sum(int(b[1].shape[0]) for b in to_dataset(_stream(records, pool, batch, epoch), spec, batch))


def ray_copied_epoch(records, spec, pool, batch: int, epoch: int) -> int:
    """ray_epoch with every local batch filled with copies of its clips, none read in place from a call's slot."""

    def copies(first, local_batch: int):
        take = BATCH_BUFFERS.take
        return take((local_batch, *first.rgb.shape)), take((local_batch, *first.flow.shape)), None

    in_place, pipeline._new_batch = pipeline._new_batch, copies
    try:
        return ray_epoch(records, spec, pool, batch, epoch)
    finally:
        pipeline._new_batch = in_place


def ray_stream_epoch(records, spec, pool, batch: int, epoch: int) -> int:
    """Breakdown: the actors' results made into local batches (EpochStream), no tf.data."""
    return sum(int(b[2].shape[0]) for b in _stream(records, pool, batch, epoch))


def ray_map_epoch(records, spec, pool, batch: int, epoch: int) -> int:
    """Breakdown: the actors' results only (DecoderPool.map over the epoch's requests), no batching."""
    stream = _stream(records, pool, batch, epoch)
    plan = stream.plan
    requests = (stream._request(int(i), int(p)) for i, p in zip(plan.indices.reshape(-1), plan.positions.reshape(-1)))
    return sum(1 for _ in pool.map(requests, in_place=True))  # as EpochStream reads them


def measure(run, args, epoch: int, worker_pids: set[int], others: set[int]) -> tuple[float, dict[str, float]]:
    """(clips/s, {group: CPU ms per clip}) of one run."""
    before, start = group_cpu_s(worker_pids, others), time.perf_counter()
    clips = run(*args, epoch)
    seconds = time.perf_counter() - start
    after = group_cpu_s(worker_pids, others)
    return clips / seconds, {g: (after[g] - before[g]) / clips * 1000 for g in GROUPS}


def cache_epochs(records, spec, folder) -> tuple[float, float, float]:
    """(first-epoch flow seconds, cached-epoch flow seconds, stored bytes per pixel per frame pair)."""
    loader = ClipLoader(spec, FlowCache(folder, 1 << 30, spec.flow_params()))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for record in records:
            flow = loader.video_flow(record.path)
            np.asarray(flow[: spec.num_frames]).sum()  # touch a clip's worth, as a training read would
        times.append(time.perf_counter() - start)
    stored = loader.cache.total_bytes()
    pairs = sum(len(loader.video_flow(r.path)) for r in records)
    return times[0], times[1], stored / (pairs * spec.size * spec.size)


def actor_pids(pool) -> list[int]:
    return ray.get([actor.pid.remote() for actor in pool.actors])


def rss_mb(pool) -> float:
    """Resident memory now of this process plus the pool's actor processes, MiB."""
    return sum(psutil.Process(pid).memory_info().rss for pid in [os.getpid(), *actor_pids(pool)]) / (1 << 20)


def ray_name(n: int) -> str:
    return f"Ray+tf.data {n} actor{'s' * (n > 1)}"


def per_call_name(n: int, clips_per_call: int) -> str:
    return f"{ray_name(n)}, {clips_per_call}/call"


def object_store_name(n: int) -> str:
    return f"{ray_name(n)}, object store"


def copied_name(n: int) -> str:
    return f"{ray_name(n)}, copied batches"


def at_once_name(n: int) -> str:
    return f"tight loop x{n}, at once"


def variants(
    records, spec, pools: dict, loops: list[FreshTightLoop], batch: int, opencv_threads: bool, copied_batches: bool
) -> dict:
    """{name: (function, args, worker pids, counts Ray's daemons)}."""
    smallest = pools[min(pools)]
    table = {
        "tight loop": (loops[0].epoch, (records, spec), {loops[0].pid}, False),
        **{
            at_once_name(n): (tight_loops_at_once, (loops[:n], records, spec), {loop.pid for loop in loops[:n]}, False)
            for n in pools
            if n > 1
        },
        "tight loop, this process": (tight_loop, (records, spec), set(), False),
        "tf.data py_function": (py_function_epoch, (records, spec, batch), set(), False),
    }
    if opencv_threads:
        table["tight loop, OpenCV threads"] = (tight_loop_default_threads, (records, spec), set(), False)
    table.update(
        {
            ray_name(n): (ray_epoch, (records, spec, pool, batch), set(actor_pids(pool)), True)
            for n, pool in pools.items()
        }
    )
    if copied_batches:
        table[copied_name(min(pools))] = (
            ray_copied_epoch,
            (records, spec, smallest, batch),
            set(actor_pids(smallest)),
            True,
        )
    for stage, run in (("Ray map", ray_map_epoch), ("Ray EpochStream", ray_stream_epoch)):
        table[f"{stage} ({min(pools)} actor)"] = (
            run,
            (records, spec, smallest, batch),
            set(actor_pids(smallest)),
            True,
        )
    return table


def trainer_slots(clips_per_call: int, batch: int) -> int:
    """The slots per actor the trainer gives a pool at data.calls_in_flight's and data.prefetch's defaults."""
    defaults = DataConfig()
    return slots_per_actor(defaults.calls_in_flight, defaults.prefetch, clips_per_call, batch)


def run_rounds(table: dict, largest_pool, epochs: int) -> tuple[dict, list]:
    """{variant: [(clips/s, {group: CPU ms/clip}) per round]} and the RSS after each round of the largest pool."""
    names = list(table)
    everyone = set().union(*(entry[2] for entry in table.values()))  # every variant's worker processes
    results, rss = {name: [] for name in names}, []
    for epoch in range(epochs):
        for name in names[epoch % len(names) :] + names[: epoch % len(names)]:  # rotate who goes first
            run, args, workers, _ = table[name]
            results[name].append(measure(run, args, epoch, workers, everyone - workers))
        rss.append(rss_mb(largest_pool))
    return results, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts, measured side by side")
    parser.add_argument("--epochs", type=int, default=8, help="rounds; each variant reads one epoch per round")
    parser.add_argument(
        "--clips-per-call",
        default="4",
        help="clips per actor call (data.clips_per_call); more than one, e.g. 8,16,32: the first for every pool, "
        "each other one as a further pool of the fewest actors, measured side by side",
    )
    parser.add_argument("--batch", type=int, default=4, help="local batch of the tf.data variants")
    parser.add_argument("--opencv-threads", action="store_true", help="also the tight loop with OpenCV's threads")
    parser.add_argument(
        "--copied-batches",
        action="store_true",
        help="also the fewest actors with every local batch a copy of its clips, none read in place from a slot",
    )
    args = parser.parse_args()
    actor_counts = sorted({int(n) for n in args.actors.split(",")})
    per_call, *other_per_call = [int(n) for n in args.clips_per_call.split(",")]
    spec = ClipSpec(num_frames=8, size=args.size)
    cv2.setNumThreads(1)  # as in every decode actor
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        synthesize(os.path.join(folder, "data"), SynthSpec(num_videos=args.videos, frames=args.frames, size=args.size))
        records = from_folder(os.path.join(folder, "data")).records
        few = actor_counts[0]
        cpus = sum(actor_counts) + few * (len(other_per_call) + 1)
        start_ray(None, num_cpus=cpus, object_store_mb=256)  # every pool at once
        pools = {n: DecoderPool(spec, n, per_call, slots=trainer_slots(per_call, args.batch)) for n in actor_counts}
        per_call_pools = {c: DecoderPool(spec, few, c, slots=trainer_slots(c, args.batch)) for c in other_per_call}
        store_pool = DecoderPool(spec, few, clips_per_call=per_call, shared_memory=False)
        loops = [FreshTightLoop(spec) for _ in range(max(actor_counts))]
        table = variants(records, spec, pools, loops, args.batch, args.opencv_threads, args.copied_batches)
        for name, pool in [(object_store_name(few), store_pool)] + [
            (per_call_name(few, calls), pool) for calls, pool in per_call_pools.items()
        ]:
            table[name] = (ray_epoch, (records, spec, pool, args.batch), set(actor_pids(pool)), True)
        results, rss = run_rounds(table, pools[max(pools)], args.epochs)
        for loop in loops:
            loop.close()
        for pool in [*pools.values(), *per_call_pools.values(), store_pool]:
            pool.shutdown()
        first, cached, bytes_per_pixel = cache_epochs(records, spec, os.path.join(folder, "cache"))
    counts_daemons = {name: entry[3] for name, entry in table.items()}
    report(
        results,
        counts_daemons,
        rss,
        actor_counts,
        (first, cached, bytes_per_pixel),
        (load_before, os.getloadavg()[0]),
        args,
    )


def report(results, counts_daemons, rss, actor_counts, cache, load, args) -> None:
    measured = {name: runs[1:] or runs for name, runs in results.items()}  # round 1 warms up
    rate = {name: np.median([r for r, _ in runs]) for name, runs in measured.items()}
    fastest = {name: max(r for r, _ in runs) for name, runs in measured.items()}  # the round least slowed by others
    cpu = {name: {g: np.median([c[g] for _, c in runs]) for g in GROUPS} for name, runs in measured.items()}
    total = {name: sum(cpu[name][g] for g in GROUPS if g != "ray daemons" or counts_daemons[name]) for name in cpu}
    per_round = {  # CPU ms per clip of each measured round, every group the variant counts
        name: [sum(c[g] for g in GROUPS if g != "ray daemons" or counts_daemons[name]) for _, c in runs]
        for name, runs in measured.items()
    }
    print(
        f"{args.videos} videos x {args.frames} frames at {args.size}px, clips of 8 frames, batch {args.batch}, "
        f"{args.clips_per_call} clips per actor call, {args.epochs} rounds; {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    print(
        f"{'variant':32s} {'clips/s':>8s} {'fastest':>8s} {'CPU ms/clip':>12s} {'driver':>7s} {'workers':>8s} "
        f"{'daemons':>8s}   clips/s per round; CPU ms/clip per measured round"
    )
    for name, runs in results.items():
        daemons = f"{cpu[name]['ray daemons']:8.2f}" if counts_daemons[name] else f"{'-':>8s}"
        print(
            f"{name:32s} {rate[name]:8.1f} {fastest[name]:8.1f} {total[name]:12.2f} {cpu[name]['driver']:7.2f} "
            f"{cpu[name]['workers']:8.2f} {daemons}   {[round(r, 1) for r, _ in runs]}; "
            f"{[round(c, 2) for c in per_round[name]]}"
        )
    first, cached, bytes_per_pixel = cache
    print(
        f"flow, first epoch {first:.3f}s vs cached epoch {cached:.3f}s; stored {bytes_per_pixel:.2f} bytes/pixel/frame"
    )
    print(
        f"RSS (driver + {max(actor_counts)} actors) after epoch 1 {rss[0]:.0f} MiB, epoch {len(rss)} {rss[-1]:.0f} MiB"
    )
    breakdown(cpu, total, min(actor_counts))
    print("RATIOS (medians; in brackets, from each variant's fastest round, or the median of each round's own ratio)")
    tight = "tight loop"

    def paired(name: str, base: str = tight) -> str:
        """The median of the rounds' own CPU ratios: a round's tight loop ran beside its Ray epoch, minutes
        apart from the other rounds', so the machine's drift between rounds cancels out."""
        return f"{np.median([a / b for a, b in zip(per_round[name], per_round[base])]):.2f}"

    for n in actor_counts:
        name = ray_name(n)

        def ratio(other, scale=1, name=name):
            return f"{rate[name] / (rate[other] * scale):.2f} [{fastest[name] / (fastest[other] * scale):.2f}]"

        print(
            f"  {n} actor(s): Ray+tf.data / (tight loop x {n}) = {ratio(tight, n)}  (target >= 0.95);  "
            f"/ py_function = {ratio('tf.data py_function')}  (target >= 1.5 on 2 cores);  "
            f"CPU per clip, Ray / tight = {total[name] / total[tight]:.2f} [by round: {paired(name)}]  "
            "(target <= 1.10)"
        )
        if n > 1:  # the tight loop's CPU per clip when as many decoders share the machine
            together = at_once_name(n)
            print(
                f"  {n} actor(s): CPU per clip, Ray / {together} = {total[name] / total[together]:.2f} "
                f"[by round: {paired(name, together)}];  {together} / tight loop = {total[together] / total[tight]:.2f}"
            )
    for name in (name for name in total if "/call" in name or "object store" in name or "copied" in name):
        print(
            f"  {name}: CPU per clip, Ray / tight = {total[name] / total[tight]:.2f} [by round: {paired(name)}], "
            f"clips/s {rate[name]:.1f}"
        )
    few, store = ray_name(min(actor_counts)), object_store_name(min(actor_counts))
    print(f"  {few}: CPU per clip, object store / shared memory = {total[store] / total[few]:.2f}")
    print(
        f"  tight loop, this process / fresh process, CPU per clip = "
        f"{total['tight loop, this process'] / total[tight]:.2f}"
    )
    print(f"  flow first epoch / cached epoch = {first / cached:.1f}   (target >= 5)")
    print(f"  RSS after epoch {len(rss)} / epoch 1 = {rss[-1] / rss[0]:.3f}   (target <= 1.10)")


def breakdown(cpu, total, n: int) -> None:
    """Where the Ray path's CPU per clip goes beyond the fresh tight loop's, in ms per clip (medians)."""
    full, stream, bare = ray_name(n), f"Ray EpochStream ({n} actor)", f"Ray map ({n} actor)"
    tight = total["tight loop"]
    print(f"BREAKDOWN, CPU ms per clip, {n} actor (medians; each stage's driver CPU less the previous stage's):")
    print(f"  tight loop (fresh process)                 {tight:7.2f}")
    print(f"  actor process beyond it (calls, pickling)  {cpu[full]['workers'] - tight:7.2f}")
    print(f"  Ray's daemons                              {cpu[full]['ray daemons']:7.2f}")
    print(f"  driver: Ray calls and results              {cpu[bare]['driver']:7.2f}")
    print(f"  driver: batching (EpochStream)             {cpu[stream]['driver'] - cpu[bare]['driver']:7.2f}")
    print(f"  driver: tf.data bridge                     {cpu[full]['driver'] - cpu[stream]['driver']:7.2f}")
    print(f"  = Ray+tf.data                              {total[full]:7.2f}  ({total[full] / tight:.2f}x)")


if __name__ == "__main__":
    main()
