"""What one decode call's return costs by the way its clips travel: Ray's object store or a shared-memory slot.

Usage: python benchmarks/transport.py [--mb 8] [--calls 300] [--rounds 2]
One actor answers calls with `--mb` MB of ready bytes (no decoding), two calls in flight as DecoderPool keeps them;
the driver copies each call's bytes out, as EpochStream copies clips into its batches. Variants, interleaved:
  object store, 1 buffer     the bytes returned as one array (Ray copies a buffer over 1 MiB on 6 threads)
  object store, 16 buffers   the same bytes as 16 arrays, each under 1 MiB (Ray copies each on its own thread)
  shared-memory slot         the actor copies the bytes into a slot of data/distributed/shared_slots.py and
                             returns the slot's number
CPU is user+system time per call of the driver, the actor and Ray's daemons (every other process Ray started).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import psutil
import ray

from twostream.data.distributed import shared_slots
from twostream.data.distributed.shared_slots import SlotLayout, SlotRef
from twostream.trainer.runtime.ray_node import start_ray

SLOTS = 4  # two calls in flight, the one being read, one spare


@ray.remote
class Sender:
    """Returns `nbytes` ready bytes per call, as arrays or written into a slot."""

    def __init__(self, nbytes: int):
        self.bytes = np.ones(nbytes, np.uint8)
        self.opened: dict = {}

    def pid(self) -> int:
        return os.getpid()

    def send(self, pieces: int, slot: SlotRef | None):
        if slot is not None:
            rgb, _ = shared_slots.open_ref(slot, self.opened).arrays(slot.index, 1)
            rgb.reshape(-1)[:] = self.bytes
            return slot.index
        return np.split(self.bytes, pieces)


def cpu_by_group(me: psutil.Process, actor: int) -> dict[str, float]:
    used = {"driver": 0.0, "actor": 0.0, "daemons": 0.0}
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        group = "driver" if process.pid == me.pid else "actor" if process.pid == actor else "daemons"
        used[group] += times.user + times.system
    return used


def run(sender, slot_file, pieces: int, calls: int, out: np.ndarray, actor: int) -> tuple[dict[str, float], float]:
    """({group: CPU ms per call}, calls per second) of `calls` calls, two in flight."""
    me, number = psutil.Process(), 0

    def send():
        nonlocal number
        number += 1
        return sender.send.remote(pieces, slot_file.ref(number % SLOTS) if slot_file is not None else None)

    pending = [send(), send()]
    before, start = cpu_by_group(me, actor), time.perf_counter()
    for _ in range(calls):
        result = ray.get(pending.pop(0))
        if slot_file is not None:
            out[:] = slot_file.arrays(result, 1)[0].reshape(-1)
        else:
            np.concatenate(result, out=out)
        del result
        pending.append(send())
    seconds = time.perf_counter() - start
    after = cpu_by_group(me, actor)
    ray.get(pending)
    return {g: (after[g] - before[g]) / calls * 1000 for g in after}, calls / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=8, help="MB per call (8: 16 clips of 8 frames at 112 px)")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    nbytes = args.mb << 20
    start_ray(None, num_cpus=1, object_store_mb=256)
    sender = Sender.remote(nbytes)
    actor = ray.get(sender.pid.remote())
    slot_file = shared_slots.create(SlotLayout(SLOTS, 1, (nbytes,), (0,)))
    assert slot_file is not None, "no room in /dev/shm"
    out = np.empty(nbytes, np.uint8)
    variants = {
        "object store, 1 buffer": (None, 1),
        "object store, 16 buffers": (None, 16),
        "shared-memory slot": (slot_file, 1),
    }
    results: dict[str, list] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (slots, pieces) in variants.items():
            run(sender, slots, pieces, 20, out, actor)  # warm-up
            results[name].append(run(sender, slots, pieces, args.calls, out, actor))
    print(f"{args.mb} MB per call, {args.calls} calls x {args.rounds} rounds; {os.cpu_count()} cores")
    print(f"{'variant':26s} {'CPU ms/call':>12s} {'driver':>7s} {'actor':>7s} {'daemons':>8s} {'calls/s':>8s}")
    total = {}
    for name, runs in results.items():
        cpu = {g: float(np.median([r[0][g] for r in runs])) for g in runs[0][0]}
        total[name] = sum(cpu.values())
        rate = float(np.median([r[1] for r in runs]))
        print(
            f"{name:26s} {total[name]:12.2f} {cpu['driver']:7.2f} {cpu['actor']:7.2f} {cpu['daemons']:8.2f} {rate:8.0f}"
        )
    slot = total["shared-memory slot"]
    print(
        f"RATIOS: object store, 1 buffer / slot = {total['object store, 1 buffer'] / slot:.2f}; "
        f"16 buffers / slot = {total['object store, 16 buffers'] / slot:.2f}"
    )


if __name__ == "__main__":
    main()
