"""Share of training time spent waiting for data in the main job (`make demo`'s `--preset demo`); goal <= 5%.

Usage: python benchmarks/data_wait.py [--out runs/data_wait] [--kind demo] [--videos 600] [--epochs 3] [--flow-cache]
                                      [--set KEY=VALUE ...] [--profile runs/data_wait/profile.txt]
                                      [--variant 'KEY=VALUE ...' --variant ... [--rounds 3]]
Runs the main job's commands (`twostream synth`, then `twostream train --preset demo`) with fewer epochs, in
a fresh workdir, and reads the loop's own measurement from metrics.jsonl: per epoch, the time the loop
spent in next(batch) over the epoch's wall time (evaluation excluded). The first epoch also carries the
step's tracing and the decode pool filling up; the figure to read is the median of the later epochs.
--flow-cache first fills the flow cache (`twostream prepare`) and trains from it, as README's "Flow cache"
describes; --set passes overrides to train (e.g. data.num_actors=2). To compare settings side by side, each
--variant names one's overrides (space-separated): the variants train in turn, --rounds times, each round in a
rotated order so that a busy neighbour slows them alike, and a table gives each one's data wait and clips/s per
round and its clips/s against the first variant's, round by round. --kind realistic trains on `twostream synth
--kind realistic` (160x120 scenes) instead. Each epoch's line also gives where its time went (the epoch record's
step_ms, actor_*, driver_*, calls_in_flight_* and calls_without_slot fields: docs/training.md).
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
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        metavar="'KEY=VALUE [KEY=VALUE ...]'",
        help="overrides of one variant (repeat for each); the variants train in turn, each round in a rotated order",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant")
    args = parser.parse_args()

    videos = os.path.join(args.out, "videos")
    if not os.path.isdir(videos):
        count = ["--num-videos", str(args.videos)] if args.videos else []
        subprocess.run([TWOSTREAM, "synth", videos, "--kind", args.kind, *count], check=True)
    overrides = [f"train.epochs={args.epochs}", *args.overrides]
    if args.flow_cache:
        overrides.append(f"data.flow_cache_dir={fill_flow_cache(videos, args.overrides)}")
    variants = args.variants or [""]
    waits: dict[str, list[float]] = {v: [] for v in variants}
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants[round_ % len(variants) :] + variants[: round_ % len(variants)]:
            epochs = train(args, videos, overrides + variant.split())
            print(f"\n--preset demo on {args.kind} videos, overrides {overrides + variant.split()}")
            for record in epochs:
                print(describe(record))
            later = epochs[1:] or epochs  # the first epoch also traces the step and fills the decode pool
            waits[variant].append(statistics.median(r["data_wait_share"] for r in later))
            rates[variant].append(statistics.median(r["clips_per_s"] for r in later))
            print(f"data-wait share, median of epochs 2..{len(epochs)}: {waits[variant][-1]:.1%} (goal <= 5%)")
    if len(variants) > 1 or args.rounds > 1:
        summarize(variants, waits, rates)
    if args.profile:
        print_heaviest(args.profile)


def fill_flow_cache(videos: str, overrides: list[str]) -> str:
    """Fills the flow cache for the demo preset's clip settings (`twostream prepare`); returns its folder."""
    cache = os.path.join(videos, ".flow_cache")
    prepare = [
        TWOSTREAM,
        "prepare",
        "--data",
        videos,
        "--preset",
        "demo",
        *[a for o in overrides for a in ("--set", o)],
    ]
    subprocess.run(prepare, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cache


def train(args, videos: str, overrides: list[str]) -> list[dict]:
    """One fresh `twostream train --preset demo` (under py-spy with --profile); its epoch records."""
    workdir = os.path.join(args.out, "workdir")
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resumed one
    command = [
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
        py_spy_args = ["record", "--subprocesses", "--idle", "--rate", "100", "--format", "raw", "-o", args.profile]
        command = [py_spy, *py_spy_args, "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "epoch"]


def describe(record: dict) -> str:
    return (
        f"epoch {record['epoch']}: data wait {record['data_wait_share']:.1%} of the epoch, "
        f"{record['clips_per_s']:.1f} clips/s; step {record['step_ms']:.1f} ms; actors busy "
        f"{record['actor_busy_share']:.0%} (on a CPU {record['actor_cpu_share']:.0%} of that); driver "
        f"{record['driver_share']:.0%}, waiting on actors {record['driver_wait_share']:.0%}; calls in flight "
        f"mean {record['calls_in_flight_mean']} min {record['calls_in_flight_min']}; "
        f"{record['calls_without_slot']} calls without a slot"
    )


def summarize(variants: list[str], waits: dict, rates: dict) -> None:
    """Each variant's data wait and clips/s over its rounds (each round's median of epochs 2..N), and its clips/s
    against the first variant's in the same rounds."""
    print(f"\n{'variant':40s} {'data wait, per round':>28s} {'clips/s, per round':>28s} {'clips/s vs first':>17s}")
    for variant in variants:
        ratio = statistics.median(a / b for a, b in zip(rates[variant], rates[variants[0]]))
        print(
            f"{variant or '(no override)':40s} {str([f'{w:.1%}' for w in waits[variant]]):>28s} "
            f"{str([round(r) for r in rates[variant]]):>28s} {ratio:17.2f}"
        )


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
