"""Decoded frame -> RGB: PyAV's default conversion (threads=0) against one thread (data/decode/video.py frame_rgb).

PyAV 18's `to_ndarray(format="rgb24")` scales with threads=0 by default: FFmpeg then starts a pool of slice threads,
one per core, for every frame and stops it afterwards. Per video (a 64x64 MJPEG as `twostream synth` writes, a
640x480 and a 1280x720 H.264), in interleaved rounds, converts the same decoded frames both ways and prints CPU ms
(this process, all threads) and wall ms per frame, and the ratios default / one thread; once on an idle machine and
once beside a busy process per core (what a training step does to a decode actor).

    .venv/bin/python benchmarks/frame_convert.py [--frames 120] [--rounds 5] [--folder /tmp/twostream-convert]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import av
from lavfi_video import write_pattern  # benchmarks/, the script's folder

VIDEOS = {
    "mjpeg_64": ("64x64", ".avi", ["-c:v", "mjpeg", "-q:v", "3"]),
    "h264_480p": ("640x480", ".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]),
    "h264_720p": ("1280x720", ".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]),
}


def write_video(folder: str, name: str, frames: int) -> str:
    size, ext, options = VIDEOS[name]
    path = os.path.join(folder, f"{name}_{frames}{ext}")
    if not os.path.exists(path):
        write_pattern(path, f"testsrc2=size={size}:rate=30,noise=alls=8:allf=t", list(options), frames)
    return path


def decoded(path: str) -> list:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        return list(container.decode(stream))


def per_frame_ms(frames: list, threads: int | None) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame to convert `frames` to RGB; threads None is PyAV's default."""
    kwargs = {} if threads is None else {"threads": threads}
    cpu, wall = time.process_time(), time.perf_counter()
    for frame in frames:
        frame.to_ndarray(format="rgb24", **kwargs)
    return ((time.process_time() - cpu) * 1e3 / len(frames), (time.perf_counter() - wall) * 1e3 / len(frames))


def spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def measure(videos: dict, rounds: int) -> None:
    for name, frames in videos.items():
        figures: dict[str, list] = {"default": [], "one thread": []}
        for _ in range(rounds):
            for label, threads in (("default", None), ("one thread", 1)):
                figures[label].append(per_frame_ms(frames, threads))
        (cpu_d, wall_d), (cpu_1, wall_1) = (
            [statistics.median(column) for column in zip(*figures[label])] for label in ("default", "one thread")
        )
        print(
            f"  {name:10s} default cpu {cpu_d:6.3f} wall {wall_d:6.3f} | one thread cpu {cpu_1:6.3f} "
            f"wall {wall_1:6.3f} ms/frame | default / one thread: cpu {cpu_d / cpu_1:4.1f}x "
            f"wall {wall_d / wall_1:4.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", default="/tmp/twostream-convert")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    videos = {name: decoded(write_video(args.folder, name, args.frames)) for name in VIDEOS}
    print(f"{os.cpu_count()} cores; libswscale {av.library_versions['libswscale']}; medians of {args.rounds} rounds")
    print("idle machine:")
    measure(videos, args.rounds)
    stop = multiprocessing.Event()
    busy = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(os.cpu_count() or 1)]
    for process in busy:
        process.start()
    try:
        print(f"beside {len(busy)} busy processes:")
        measure(videos, args.rounds)
    finally:
        stop.set()
        for process in busy:
            process.join()


if __name__ == "__main__":
    main()
