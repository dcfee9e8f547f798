"""Flow cache formats side by side: stored bytes per pixel per frame pair, CPU to read a clip's flow, exactness.

Flow (DIS fast, bound 20, uint8) of three kinds of video, each stored in every format of data/decode/flow_cache.py:
the demo's synthetic set (64 px), the realistic synthetic set (`twostream synth --realistic`, 112 px) and a
noisy 640x480 H.264 test pattern (112 and 224 px; the hardest to compress). Per format: bytes on disk per
pixel per frame pair, CPU ms (this process) to read an 8-pair clip's flow from a warm page cache (median over
seeded random clips, rounds interleaved), CPU ms to write a video's entry per frame pair against the CPU
to compute that pair's flow, and the largest difference from the flow as computed (0 = bit-exact); ratios
against "raw", the uncompressed format.

    .venv/bin/python benchmarks/flow_cache.py [--clips 40] [--rounds 3] [--folder /tmp/twostream-flow-cache]
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time

import cv2
import numpy as np
from lavfi_video import write_pattern  # benchmarks/, the script's folder

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FORMATS, FlowCache

CLIP = 8  # frame pairs per clip


def sets(folder: str) -> list[tuple[str, list[str], int]]:
    """(name, video paths, size): written once into `folder`, reused afterwards."""
    from twostream.data.make.synthetic import SynthSpec, synthesize
    from twostream.data.make.synthetic_scenes import SceneSpec, synthesize_scenes

    demo, scenes = os.path.join(folder, "demo"), os.path.join(folder, "scenes")
    if not os.path.isdir(demo):
        synthesize(demo, SynthSpec(num_videos=12, frames=20))
    if not os.path.isdir(scenes):
        synthesize_scenes(scenes, SceneSpec(num_videos=12))
    noisy = os.path.join(folder, "noisy_480p.mp4")
    if not os.path.exists(noisy):
        source = "testsrc2=size=640x480:rate=30:duration=4,noise=alls=8:allf=t"
        write_pattern(noisy, source, ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"])
    return [
        ("demo set", sorted(glob.glob(os.path.join(demo, "*", "*.avi"))), 64),
        ("realistic set", sorted(glob.glob(os.path.join(scenes, "*", "*.avi"))), 112),
        ("noisy H.264", [noisy], 112),
        ("noisy H.264", [noisy], 224),
    ]


def cpu_ms(run) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) * 1000.0


def measure(paths: list[str], size: int, folder: str, args) -> dict:
    spec = ClipSpec(size=size)
    loader = ClipLoader(spec)
    flow_ms = []
    flows = {}
    for path in paths:
        flow_ms.append(cpu_ms(lambda: flows.__setitem__(path, loader.video_flow(path))) / len(flows[path]))
    pairs = sum(len(f) for f in flows.values())
    pixels = sum(f.shape[0] * f.shape[1] * f.shape[2] for f in flows.values())  # stored: the frame's short side at
    #                                                                            `size`, its aspect kept
    caches = {
        fmt: FlowCache(os.path.join(folder, f"{fmt}_{size}"), 1 << 40, spec.flow_params(), fmt) for fmt in FORMATS
    }
    result = {"flow_ms": float(np.median(flow_ms))}
    for fmt, cache in caches.items():
        cache.clear()
        write = sum(cpu_ms(lambda: cache.put(path, flow)) for path, flow in flows.items()) / pairs
        error = max(int(np.abs(cache.get(p)[np.arange(len(f))].astype(int) - f).max()) for p, f in flows.items())
        result[fmt] = {
            "bytes": cache.total_bytes() / pixels,
            "write_ms": write,
            "error": error,
            "read_ms": [],
        }
    rng = np.random.default_rng(0)
    clips = [(paths[int(rng.integers(len(paths)))], rng) for _ in range(args.clips)]
    for _ in range(args.rounds):
        for path, _ in clips:
            start = int(rng.integers(0, len(flows[path]) - CLIP + 1)) if len(flows[path]) >= CLIP else 0
            wanted = np.arange(start, start + CLIP) % len(flows[path])
            for fmt, cache in caches.items():
                result[fmt]["read_ms"].append(cpu_ms(lambda: np.asarray(cache.get(path)[wanted])))
    for fmt in FORMATS:
        result[fmt]["read_ms"] = float(np.median(result[fmt]["read_ms"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "twostream-flow-cache"))
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in every decode actor
    os.makedirs(args.folder, exist_ok=True)
    print(
        f"{'video':<15}{'px':>5}{'format':>8}{'B/px/pair':>11}{'/raw':>7}{'read ms/clip':>14}{'/raw':>7}"
        f"{'write ms/pair':>15}{'/flow':>7}{'max err':>9}"
    )
    for name, paths, size in sets(args.folder):
        r = measure(paths, size, args.folder, args)
        raw = r["raw"]
        for fmt in FORMATS:
            f = r[fmt]
            print(
                f"{name:<15}{size:>5}{fmt:>8}{f['bytes']:>11.3f}{f['bytes'] / raw['bytes']:>7.3f}"
                f"{f['read_ms']:>14.3f}{f['read_ms'] / raw['read_ms']:>7.1f}{f['write_ms']:>15.3f}"
                f"{f['write_ms'] / r['flow_ms']:>7.2f}{f['error']:>9d}",
                flush=True,
            )
        print(f"{'':<20}flow (DIS fast) {r['flow_ms']:.2f} CPU ms per pair, median over videos")


if __name__ == "__main__":
    main()
