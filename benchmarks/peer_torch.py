"""The peer a user would pick instead: PyTorch's DataLoader (num_workers) vs Ray+tf.data vs tf.data py_function.

Usage (torch is installed beside .venv, never into it; see benchmarks/requirements-peer.txt):
    .venv/bin/pip install --target .venv-peer -r benchmarks/requirements-peer.txt
    .venv/bin/python benchmarks/peer_torch.py [--videos 32] [--frames 32] [--sizes 112,224] [--workers 1,2]
                                              [--epochs 8] [--clips-per-call 8] [--peer-path .venv-peer]
Every variant does the same work on the same generated videos with the same seeds: the project's
ClipLoader.load per clip (decode + DIS flow, OpenCV single-threaded), batches of 4. The variants:
  tight loop             one process, no framework (the reference: the work alone);
  tf.data py_function    benchmarks/data_pipeline.py's map(tf.py_function, AUTOTUNE) pipeline;
  Ray+tf.data N actors   the product's DecoderPool, EpochStream and to_dataset, as the trainer reads an epoch;
  DataLoader N workers   torch.utils.data.DataLoader(num_workers=N, persistent_workers=True), default
                         collation into torch tensors, a set_epoch sampler for the seeds (the loader behind
                         mmaction2, PySlowFast and DeepfakeBench; fork start, as on Linux by default).
Variants run interleaved, one epoch each per round in a rotating order; medians of the rounds after the first.
CPU per clip is process-tree CPU time: Ray's variants count this process and everything it started (actors
and Ray's daemons, which are Ray's cost); the others count this process and its forked children (the
DataLoader's workers) but not Ray's daemons, which run beside them only because this benchmark holds Ray.
Ratios are printed at the end of each size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import psutil
from data_pipeline import py_function_epoch, ray_epoch, tight_loop, trainer_slots  # benchmarks/data_pipeline.py

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import TrainView
from twostream.data.distributed.actors import DecoderPool
from twostream.data.distributed.pipeline import clip_seed
from twostream.data.make.synthetic import SynthSpec, synthesize
from twostream.data.manifest import from_folder
from twostream.trainer.runtime.ray_node import start_ray

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_torch(peer_path: str):
    """torch from the benchmark's own install folder, appended after .venv's packages so theirs win."""
    sys.path.append(os.path.abspath(peer_path))
    try:
        import torch
        import torch.utils.data
    except ImportError as error:
        sys.exit(
            f"peer_torch: cannot import torch from {peer_path!r} ({error}); install it there with "
            f"`.venv/bin/pip install --target .venv-peer -r benchmarks/requirements-peer.txt` "
            f"(a CPU-only torch build is enough), or pass --peer-path"
        )
    return torch


class EpochSampler:
    """Yields (epoch, slot) per clip, so persistent workers seed each clip as the other variants do."""

    def __init__(self, count: int):
        self.count, self.epoch = count, 0

    def __iter__(self):
        return ((self.epoch, slot) for slot in range(self.count))

    def __len__(self) -> int:
        return self.count


class ClipDataset:
    """A map-style torch dataset over the records; each worker builds its own ClipLoader on first use."""

    def __init__(self, records, spec: ClipSpec):
        self.paths, self.spec, self.loader = [r.path for r in records], spec, None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: tuple[int, int]):
        epoch, slot = index
        if self.loader is None:
            self.loader = ClipLoader(self.spec)
        return self.loader.load(self.paths[slot], TrainView(clip_seed(0, epoch, slot)))


def single_threaded_worker(_worker_id: int) -> None:
    cv2.setNumThreads(1)  # as in every decode actor (torch already sets its own threads to 1 in workers)


def make_dataloader(torch, records, spec: ClipSpec, workers: int, batch: int):
    sampler = EpochSampler(len(records))
    loader = torch.utils.data.DataLoader(
        ClipDataset(records, spec),
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=True,
        worker_init_fn=single_threaded_worker,
    )
    return loader, sampler


def dataloader_epoch(loader_and_sampler, epoch: int) -> int:
    loader, sampler = loader_and_sampler
    sampler.epoch = epoch
    return sum(int(rgb.shape[0]) for rgb, _ in loader)


def forked_tree(me: psutil.Process) -> list[psutil.Process]:
    """This process and its descendants running the same command line (forked workers), Ray's daemons left out."""
    mine = [me]
    for child in me.children(recursive=True):
        try:
            if child.cmdline() == me.cmdline():
                mine.append(child)
        except psutil.Error:
            pass
    return mine


def cpu_s(processes) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # ended meanwhile
            pass
    return total


def measure(run, args, whole_tree: bool) -> tuple[float, float]:
    """(clips/s, CPU ms per clip) of one epoch; the processes are listed after the run so new workers count."""
    me = psutil.Process()
    choose = (lambda: [me, *me.children(recursive=True)]) if whole_tree else (lambda: forked_tree(me))
    before = {p.pid: cpu_s([p]) for p in choose()}
    start = time.perf_counter()
    clips = run(*args)
    seconds = time.perf_counter() - start
    used = sum(cpu_s([p]) - before.get(p.pid, 0.0) for p in choose())
    return clips / seconds, used / clips * 1000


def run_size(torch, size: int, args, worker_counts: list[int]) -> dict:
    spec = ClipSpec(num_frames=8, size=size)
    with tempfile.TemporaryDirectory() as folder:
        synthesize(os.path.join(folder, "data"), SynthSpec(num_videos=args.videos, frames=args.frames, size=size))
        records = from_folder(os.path.join(folder, "data")).records
        slots = trainer_slots(args.clips_per_call, args.batch)
        pools = {n: DecoderPool(spec, n, args.clips_per_call, slots=slots) for n in worker_counts}
        loaders = {n: make_dataloader(torch, records, spec, n, args.batch) for n in worker_counts}
        variants = {
            "tight loop": (tight_loop, (records, spec), False),
            "tf.data py_function": (py_function_epoch, (records, spec, args.batch), False),
        }
        for n in worker_counts:
            variants[f"Ray+tf.data {n} actor(s)"] = (ray_epoch, (records, spec, pools[n], args.batch), True)
            variants[f"DataLoader {n} worker(s)"] = (dataloader_epoch, (loaders[n],), False)
        names = list(variants)
        results = {name: [] for name in names}
        for epoch in range(args.epochs):
            for name in names[epoch % len(names) :] + names[: epoch % len(names)]:  # rotate who goes first
                run, run_args, whole_tree = variants[name]
                results[name].append(measure(run, (*run_args, epoch), whole_tree))
        for pool in pools.values():
            pool.shutdown()
        del loaders  # ends the persistent workers
    return results


def report(size: int, results: dict, worker_counts: list[int], load: tuple[float, float], args) -> None:
    measured = {name: np.asarray(runs[1:] or runs) for name, runs in results.items()}  # round 1 warms up
    median = {name: np.median(runs, axis=0) for name, runs in measured.items()}
    print(
        f"\n{args.videos} videos x {args.frames} frames at {size}px, clips of 8 frames, batch {args.batch}, "
        f"{args.clips_per_call} clips per actor call, {args.epochs} rounds; {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after"
    )
    print(f"{'variant':26s} {'clips/s':>8s} {'CPU ms/clip':>12s}   clips/s per round")
    for name, runs in results.items():
        print(f"{name:26s} {median[name][0]:8.1f} {median[name][1]:12.1f}   {[round(r, 1) for r, _ in runs]}")
    rate = {name: m[0] for name, m in median.items()}
    cpu = {name: m[1] for name, m in median.items()}
    print("RATIOS (medians): clips/s a / b; CPU per clip a / b")
    tight = "tight loop"
    for n in worker_counts:
        ray, torch_n = f"Ray+tf.data {n} actor(s)", f"DataLoader {n} worker(s)"
        for a, b, scale in (
            (ray, torch_n, 1),
            (ray, "tf.data py_function", 1),
            (torch_n, "tf.data py_function", 1),
            (ray, tight, n),
            (torch_n, tight, n),
        ):
            print(
                f"  {a} / {b}{f' x {n}' if scale > 1 else ''}: clips/s {rate[a] / (rate[b] * scale):.2f}; "
                f"CPU per clip {cpu[a] / cpu[b]:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--sizes", default="112", help="comma-separated clip sizes in pixels, run one after another")
    parser.add_argument("--workers", default="1,2", help="comma-separated actor and DataLoader worker counts")
    parser.add_argument("--epochs", type=int, default=8, help="rounds; each variant reads one epoch per round")
    parser.add_argument("--clips-per-call", type=int, default=8, help="clips per actor call (data.clips_per_call)")
    parser.add_argument("--batch", type=int, default=4, help="local batch of every variant")
    parser.add_argument("--peer-path", default=os.path.join(ROOT, ".venv-peer"), help="where torch is installed")
    args = parser.parse_args()
    torch = import_torch(args.peer_path)
    worker_counts = sorted({int(n) for n in args.workers.split(",")})
    cv2.setNumThreads(1)  # as in every decode actor
    torch.set_num_threads(1)
    start_ray(None, num_cpus=sum(worker_counts), object_store_mb=256)  # logical CPUs: every pool fits at once
    print(f"torch {torch.__version__}; OpenCV {cv2.__version__}")
    for size in (int(s) for s in args.sizes.split(",")):
        load_before = os.getloadavg()[0]
        results = run_size(torch, size, args, worker_counts)
        report(size, results, worker_counts, (load_before, os.getloadavg()[0]), args)


if __name__ == "__main__":
    main()
