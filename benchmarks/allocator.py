"""CPU per clip in a fresh decoding process: glibc's default allocator settings against keep_freed_buffers().

data/decode/allocator.py sets glibc's mmap and trim thresholds when a ClipLoader starts. Per size, in interleaved
rounds, a fresh interpreter loads the same clips (ClipLoader.load, decode + DIS flow online, 8 frames, OpenCV on
one thread) with the setting (`kept`) and with the process's allocator restored to glibc's defaults first
(`default`), and prints user, system and total CPU ms per clip, minor page faults per clip, and default / kept.
The videos are `twostream synth` demo videos at each size (MJPEG, 32 frames).

    .venv/bin/python benchmarks/allocator.py [--sizes 112,224] [--videos 40] [--rounds 3] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = """
import glob, json, resource, sys
import cv2
from twostream.data.decode import allocator
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.sampling import TrainView
folder, size, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if variant == "default":   # the loader sets the thresholds once per process: mark it done, leave glibc's defaults
    allocator.keep_freed_buffers = lambda: False
    import twostream.data.decode.clips as clips
    clips.keep_freed_buffers = allocator.keep_freed_buffers
from twostream.data.decode.clips import ClipLoader
cv2.setNumThreads(1)
loader = ClipLoader(ClipSpec(num_frames=8, size=size))
paths = sorted(glob.glob(folder + "/*/*.avi"))
for path in paths[:4]:
    loader.load(path, TrainView(0))   # warm-up: imports, first allocations
before = resource.getrusage(resource.RUSAGE_SELF)
for seed, path in enumerate(paths):
    loader.load(path, TrainView(seed))
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"user": (after.ru_utime - before.ru_utime) * 1e3 / len(paths),
                  "system": (after.ru_stime - before.ru_stime) * 1e3 / len(paths),
                  "faults": (after.ru_minflt - before.ru_minflt) / len(paths)}))
"""


def videos(folder: str, size: int, count: int) -> str:
    path = os.path.join(folder, f"demo_{size}px_{count}")
    if not os.path.isdir(path):
        twostream = os.path.join(os.path.dirname(sys.executable), "twostream")
        subprocess.run(
            [twostream, "synth", path, "--size", str(size), "--num-videos", str(count), "--frames", "32"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return path


def one_run(folder: str, size: int, variant: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, folder, str(size), variant], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="112,224")
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", default="/tmp/twostream-alloc")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {args.videos} clips per run, a fresh process per run; medians of {args.rounds}")
    for size in map(int, args.sizes.split(",")):
        folder = videos(args.folder, size, args.videos)
        runs: dict[str, list[dict]] = {"default": [], "kept": []}
        for _ in range(args.rounds):
            for variant in runs:
                runs[variant].append(one_run(folder, size, variant))
        medians = {
            variant: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for variant, rows in runs.items()
        }
        for variant, m in medians.items():
            print(
                f"  {size} px {variant:8s} user {m['user']:6.2f}  system {m['system']:5.2f}  total "
                f"{m['user'] + m['system']:6.2f} CPU ms/clip, {m['faults']:7.0f} page faults/clip"
            )
        totals = {variant: m["user"] + m["system"] for variant, m in medians.items()}
        print(f"  {size} px default / kept, CPU per clip: {totals['default'] / totals['kept']:.2f}")


if __name__ == "__main__":
    main()
