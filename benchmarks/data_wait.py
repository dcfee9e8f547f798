"""Share of training time spent waiting for data in the main job (`make demo`'s `--preset demo`); goal <= 5%.

Usage: python benchmarks/data_wait.py [--out runs/data_wait] [--videos 600] [--epochs 3] [--flow-cache]
                                      [--set KEY=VALUE ...]
Runs the main job's commands (`twostream synth`, then `twostream train --preset demo`) with fewer epochs, in
a fresh workdir, and reads the loop's own measurement from metrics.jsonl: per epoch, the time the loop
spent in next(batch) over the epoch's wall time (evaluation excluded). The first epoch also carries the
step's tracing and the decode pool filling up; the figure to read is the median of the later epochs.
--flow-cache first fills the flow cache (`twostream prepare`) and trains from it, as README's "Flow cache"
describes; --set passes overrides to train (e.g. data.num_actors=2) to compare settings side by side.
Ray starts the decode actors at nice 15 unless RAY_worker_niceness is set in this command's environment
(docs/performance.md, "Data-wait share of the main job").
"""
from __future__ import annotations

import argparse
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
    parser.add_argument("--videos", type=int, default=600, help="synthetic videos (the demo's 600)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--flow-cache", action="store_true", help="precompute flow, then train from the cache")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()

    videos, workdir = os.path.join(args.out, "videos"), os.path.join(args.out, "workdir")
    if not os.path.isdir(videos):
        subprocess.run([TWOSTREAM, "synth", videos, "--num-videos", str(args.videos)], check=True)
    shutil.rmtree(workdir, ignore_errors=True)   # a fresh run, not a resumed one
    overrides = [f"train.epochs={args.epochs}", *args.overrides]
    if args.flow_cache:
        cache = os.path.join(videos, ".flow_cache")
        subprocess.run([TWOSTREAM, "prepare", "--data", videos, "--preset", "demo"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        overrides.append(f"data.flow_cache_dir={cache}")
    subprocess.run([TWOSTREAM, "train", "--preset", "demo", "--data", videos, "--workdir", workdir,
                    *[a for o in overrides for a in ("--set", o)]], check=True, stdout=subprocess.DEVNULL)

    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    print(f"\n--preset demo, {args.videos} videos, overrides {overrides}")
    for record in epochs:
        print(f"epoch {record['epoch']}: data wait {record['data_wait_share']:.1%} of the epoch, "
              f"{record['clips_per_s']:.1f} clips/s")
    later = [r["data_wait_share"] for r in epochs[1:]] or [epochs[0]["data_wait_share"]]
    print(f"data-wait share, median of epochs 2..{len(epochs)}: {statistics.median(later):.1%} (goal <= 5%)")


if __name__ == "__main__":
    main()
