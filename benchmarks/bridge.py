"""The tf.data bridge's throughput (to_dataset) against a bare copy of the same bytes, at one local batch of clips.

Usage: python benchmarks/bridge.py [--batch 16] [--frames 8] [--size 224] [--batches 40] [--rounds 5]
Variants, each moving `--batches` local batches of rgb (batch, frames, size, size, 3) and flow (.., 2) uint8 per
round, interleaved in a rotating order, from clips already decoded (no Ray, no decoding):
  np.copy                       copy a whole batch (rgb and flow) into new arrays: the bare copy of the bytes
  np.stack                      stack the batch's clips into new arrays (what EpochStream did before)
  to_dataset                    to_dataset over ready batches as EpochStream makes them (64-byte aligned)
  to_dataset, unaligned batches the same over batches from np.empty (what it got before)
  EpochStream + to_dataset      the driver's whole path from per-clip results: fill each local batch, bridge it
Throughput is bytes delivered per second of wall time; CPU is this process's (all its threads). Each epoch's start
(the bridge's iterator built on first use, then kept; the stream handed over and its first batch read) is timed apart,
as ms per epoch.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from twostream.data.decode.clip_spec import ClipSpec  # noqa: E402
from twostream.data.distributed.actors import ClipResult  # noqa: E402
from twostream.data.distributed.batch_buffers import aligned_empty  # noqa: E402
from twostream.data.distributed.bridge import to_dataset  # noqa: E402
from twostream.data.distributed.pipeline import EpochStream  # noqa: E402
from twostream.data.distributed.sharding import plan_epoch  # noqa: E402
from twostream.data.manifest import VideoRecord  # noqa: E402

READY = 4  # distinct ready batches, cycled (together larger than any CPU cache at 224 px)


class ReadyBatches:
    """Stands in for an EpochStream: yields ready batches as EpochStream does."""

    def __init__(self, batches: list, count: int):
        self.batches, self.count = batches, count

    def __iter__(self):
        for i in range(self.count):
            yield self.batches[i % len(self.batches)]


class ReadyClips:
    """Stands in for a DecoderPool: yields per-clip results, views into decoded batches as Ray's reads are."""

    actors: list = []  # EpochStream reports the pool's actors: none here

    def __init__(self, batches: list):
        self.clips = [(rgb[i], flow[i]) for rgb, flow, *_ in batches for i in range(len(rgb))]

    def map(self, requests, stats=None, then=None, in_place=False):
        for i, request in enumerate(requests):
            rgb, flow = self.clips[i % len(self.clips)]
            yield ClipResult(rgb, flow, None, request.path)


def ready_batches(spec: ClipSpec, batch: int, make) -> list:
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(READY):
        rgb, flow = make((batch, *spec.rgb_shape)), make((batch, *spec.flow_shape))
        rgb[:], flow[:] = rng.integers(0, 256, rgb.shape, np.uint8), rng.integers(0, 256, flow.shape, np.uint8)
        batches.append(
            (rgb, flow, np.zeros(batch, np.int32), np.ones(batch, np.float32), np.zeros((batch, 2), np.int32))
        )
    return batches


def copy_batches(batches: list, count: int) -> int:
    for i in range(count):
        rgb, flow, *_ = batches[i % len(batches)]
        np.copy(rgb), np.copy(flow)
    return count


def stack_batches(batches: list, count: int) -> int:
    for i in range(count):
        rgb, flow, *_ = batches[i % len(batches)]
        np.stack(list(rgb)), np.stack(list(flow))
    return count


def bridged(stream, spec: ClipSpec, batch: int):
    """An iterator over the epoch's elements, with its first batch taken: (iterator, CPU seconds of that start)."""
    cpu = time.process_time()
    elements = iter(to_dataset(stream, spec, batch))
    next(elements)
    return elements, time.process_time() - cpu


def drain(elements) -> int:
    return sum(1 for _ in elements)


def epoch_stream(batches: list, count: int, batch: int) -> EpochStream:
    clips = (count + 1) * batch  # one more batch: bridged() takes the first
    records = [VideoRecord(f"clip{i}.avi", 0, f"clip{i}") for i in range(clips)]
    plan = plan_epoch(clips, batch, 0, 1, seed=0, epoch=0, train=False)
    return EpochStream(records, ReadyClips(batches), plan, seed=0, epoch=0, train=False)


def rounds(spec: ClipSpec, batch: int, count: int, repeats: int) -> tuple[dict, dict]:
    """{variant: [(bytes per wall second, CPU ms per batch) per round]}, {variant: [epoch start CPU ms per round]}."""
    aligned, unaligned = ready_batches(spec, batch, aligned_empty), ready_batches(spec, batch, np.empty)
    variants = {
        "np.copy": lambda: (copy_batches, aligned, count),
        "np.stack": lambda: (stack_batches, aligned, count),
        "to_dataset": lambda: (drain, *bridged(ReadyBatches(aligned, count + 1), spec, batch)),
        "to_dataset, unaligned batches": lambda: (drain, *bridged(ReadyBatches(unaligned, count + 1), spec, batch)),
        "EpochStream + to_dataset": lambda: (drain, *bridged(epoch_stream(aligned, count, batch), spec, batch)),
    }
    nbytes = aligned[0][0].nbytes + aligned[0][1].nbytes
    names = list(variants)
    rates, setups = {name: [] for name in names}, {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            run, *args = variants[name]()
            if name.startswith(("to_dataset", "EpochStream")):
                setups[name].append(args.pop() * 1000)
            cpu, start = time.process_time(), time.perf_counter()
            done = run(*args)
            seconds = time.perf_counter() - start
            rates[name].append((done * nbytes / seconds, (time.process_time() - cpu) / done * 1000))
    return rates, setups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="clips per local batch")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=40, help="batches per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = ClipSpec(num_frames=args.frames, size=args.size)
    rates, setups = rounds(spec, args.batch, args.batches, args.rounds)
    nbytes = args.batch * (int(np.prod(spec.rgb_shape)) + int(np.prod(spec.flow_shape)))
    print(
        f"local batch {args.batch} x {args.frames} frames x {args.size}x{args.size} "
        f"(rgb + flow: {nbytes / 1e6:.1f} MB), {args.batches} batches x {args.rounds} rounds; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'variant':30s} {'GB/s':>6s} {'CPU ms/batch':>13s} {'start ms/epoch':>16s}   GB/s per round")
    median = {name: np.median(runs[1:] or runs, axis=0) for name, runs in rates.items()}  # round 1 warms up
    for name, runs in rates.items():
        setup = f"{np.median(setups[name]):16.1f}" if setups[name] else f"{'-':>16s}"
        print(
            f"{name:30s} {median[name][0] / 1e9:6.2f} {median[name][1]:13.2f} {setup}   "
            f"{[round(r / 1e9, 2) for r, _ in runs]}"
        )
    print("RATIOS (medians of rounds 2..; bytes per second)")
    for name in ("to_dataset", "to_dataset, unaligned batches"):
        print(f"  {name} / np.copy = {median[name][0] / median['np.copy'][0]:.2f}  (goal >= 0.8)")
    print(
        f"  EpochStream + to_dataset / np.stack = {median['EpochStream + to_dataset'][0] / median['np.stack'][0]:.2f}"
    )


if __name__ == "__main__":
    main()
