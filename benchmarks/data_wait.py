"""Share of training time spent waiting for data in the main job (`make demo`'s `--preset demo`); goal <= 5%.

Usage: python benchmarks/data_wait.py [--out runs/data_wait] [--kind demo] [--videos 600] [--epochs 3] [--flow-cache]
                                      [--set KEY=VALUE ...] [--profile runs/data_wait/profile.txt]
Runs the main job's commands (`twostream synth`, then `twostream train --preset demo`) with fewer epochs, in
a fresh workdir, and reads the loop's own measurement from metrics.jsonl: per epoch, the time the loop
spent in next(batch) over the epoch's wall time (evaluation excluded). The first epoch also carries the
step's tracing and the decode pool filling up; the figure to read is the median of the later epochs.
--flow-cache first fills the flow cache (`twostream prepare`) and trains from it, as README's "Flow cache"
describes; --set passes overrides to train (e.g. data.num_actors=2) to compare settings side by side. --kind
realistic trains on `twostream synth --kind realistic` (160x120 scenes) instead. Each epoch's line also gives where
its time went (the epoch record's step_ms, actor_*, driver_* and calls_in_flight_* fields: docs/training.md).
--profile FILE runs train under py-spy (`pip install py-spy`, requirements-dev.txt): all its processes, idle
threads included, as py-spy's raw (collapsed) stacks in FILE, and prints the decode actors' and the driver's
heaviest stacks, so time a thread spends asleep (a lock, a condition variable) shows where it is.
The Ray that train starts runs the decode actors at nice 0 (trainer/runtime/ray_node.py; Ray's own default is 15).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys

TWOSTREAM = os.path.join(os.path.dirname(sys.executable), "twostream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/data_wait", help="videos/ (kept for reruns) and the workdir")
    parser.add_argument("--kind", choices=("demo", "realistic"), default="demo", help="twostream synth --kind")
    parser.add_argument("--videos", type=int, default=0, help="synthetic videos (default: synth's own, 600 for demo)")
    parser.add_argument("--profile", metavar="FILE", help="py-spy's collapsed stacks of every process of train")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--flow-cache", action="store_true", help="precompute flow, then train from the cache")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()

    videos, workdir = os.path.join(args.out, "videos"), os.path.join(args.out, "workdir")
    if not os.path.isdir(videos):
        count = ["--num-videos", str(args.videos)] if args.videos else []
        subprocess.run([TWOSTREAM, "synth", videos, "--kind", args.kind, *count], check=True)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resumed one
    overrides = [f"train.epochs={args.epochs}", *args.overrides]
    if args.flow_cache:
        cache = os.path.join(videos, ".flow_cache")
        subprocess.run(
            [
                TWOSTREAM,
                "prepare",
                "--data",
                videos,
                "--preset",
                "demo",  # the clip settings train uses
                *[a for o in args.overrides for a in ("--set", o)],
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        overrides.append(f"data.flow_cache_dir={cache}")
    train = [
        TWOSTREAM,
        "train",
        "--preset",
        "demo",
        "--data",
        videos,
        "--workdir",
        workdir,
        *[a for o in overrides for a in ("--set", o)],
    ]
    if args.profile:
        py_spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        train = [
            py_spy,
            "record",
            "--subprocesses",
            "--idle",
            "--rate",
            "100",
            "--format",
            "raw",
            "-o",
            args.profile,
            "--",
            *train,
        ]
    subprocess.run(train, check=True, stdout=subprocess.DEVNULL)

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    print(f"\n--preset demo on {args.kind} videos, overrides {overrides}")
    for record in epochs:
        print(
            f"epoch {record['epoch']}: data wait {record['data_wait_share']:.1%} of the epoch, "
            f"{record['clips_per_s']:.1f} clips/s; step {record['step_ms']:.1f} ms; actors busy "
            f"{record['actor_busy_share']:.0%} (on a CPU {record['actor_cpu_share']:.0%} of that); driver "
            f"{record['driver_share']:.0%}, waiting on actors {record['driver_wait_share']:.0%}; calls in flight "
            f"mean {record['calls_in_flight_mean']} min {record['calls_in_flight_min']}"
        )
    later = [r["data_wait_share"] for r in epochs[1:]] or [epochs[0]["data_wait_share"]]
    print(f"data-wait share, median of epochs 2..{len(epochs)}: {statistics.median(later):.1%} (goal <= 5%)")
    if args.profile:
        print_heaviest(args.profile)


def print_heaviest(path: str, top: int = 8) -> None:
    """The decode actors' and the driver's batch generator's heaviest stacks (innermost frames) in py-spy's raw
    output: samples where the thread was inside ClipDecoder.load or EpochStream._batches."""
    stacks: dict[str, collections.Counter] = {
        "ClipDecoder.load": collections.Counter(),
        "EpochStream._batches": collections.Counter(),
    }
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = [frame.split(" (")[0] for frame in stack.split(";")]
            for name, counter in stacks.items():
                if name in frames:
                    counter[";".join(frames[frames.index(name) + 1 :][-4:])] += int(count)
    for name, counter in stacks.items():
        total = sum(counter.values()) or 1
        print(f"\n{name}: {total} samples (100 per second), heaviest innermost frames:")
        for stack, count in counter.most_common(top):
            print(f"  {count / total:5.1%}  {stack}")


if __name__ == "__main__":
    main()
