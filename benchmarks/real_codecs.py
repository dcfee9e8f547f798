"""Decodes every video in a folder of real files both ways, checks clip frames against a read from the start, and
costs them.

Per file (any file FFmpeg opens with a video stream, searched recursively): codec, resolution, frames (a
read from the start: the truth), whether the file needed the sequential path (its seeks disagree with that
read, so data/decode/video.py marked its index sequential), CPU ms (this process) per clip of --frames frames plus
the next one (what online flow reads) for
  indexed     decode_selected with the file's frame index already built (seek to a keyframe, decode on);
  from start  decoding from the start up to the clip's last frame, converting only the clip's frames
              (what a clip of a sequential file costs at least);
and errors: a clip that raised, or a clip frame whose pixels differ from the same frame of the read from
the start (checked by an MD5 of every RGB frame at native resolution). --clips clips spread evenly over the
video. Prints a Markdown table and one summary line (files, codecs, sequential files, failures); exits 1
when any file failed.

    .venv/bin/python benchmarks/real_codecs.py DIR [--clips 6] [--frames 8] [--json results.json]

A corpus of real videos from Debian packages: scripts/real_video_corpus.sh DIR (docs/data.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import av
import numpy as np

from twostream.data.decode.frame_index import FrameIndexes
from twostream.data.decode.video import DECODE_THREADS, VideoError, build_index, decode_selected, iter_frames


def video_files(folder: str) -> list[str]:
    """Every file under `folder` that FFmpeg opens with a video stream, sorted."""
    found = []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            try:
                with av.open(path) as container:
                    if container.streams.video:
                        found.append(path)
            except (av.FFmpegError, UnicodeDecodeError, OSError):
                continue
    return sorted(found)


def describe_stream(path: str) -> tuple[str, str]:
    """(codec name, WIDTHxHEIGHT) from the stream header."""
    with av.open(path) as container:
        context = container.streams.video[0].codec_context
        return context.name, f"{context.width}x{context.height}"


def frame_digests(path: str) -> list[str]:
    """MD5 of every frame of a read from the start (native RGB), in order."""
    return [hashlib.md5(frame.tobytes()).hexdigest() for frame in iter_frames(path)]


def clip_starts(count: int, clips: int, length: int) -> list[int]:
    """`clips` first frames spread evenly over a video of `count` frames, each clip `length` frames long."""
    return sorted({int(s) for s in np.linspace(0, max(0, count - length), clips)})


def cpu_ms(work) -> tuple[object, float]:
    """(work(), CPU ms it took in this process, all threads)."""
    start = time.process_time()
    result = work()
    return result, (time.process_time() - start) * 1000.0


def sequential_clip(path: str, wanted: np.ndarray) -> dict[int, np.ndarray]:
    """The wanted frames by decoding from the start up to the last of them, only those converted to RGB."""
    frames, chosen = {}, set(int(i) for i in wanted)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = DECODE_THREADS
        for position, frame in enumerate(container.decode(stream)):
            if position in chosen:
                frames[position] = frame.to_ndarray(format="rgb24")
            if position >= int(wanted.max()):
                break
    return frames


def measure(path: str, clips: int, length: int) -> dict:
    """One row of the table: codec, resolution, frames, sequential, ms per clip both ways, errors."""
    codec, resolution = describe_stream(path)
    row = {
        "file": path,
        "codec": codec,
        "resolution": resolution,
        "frames": 0,
        "sequential": False,
        "indexed_ms": None,
        "sequential_ms": None,
        "errors": [],
    }
    try:
        truth = frame_digests(path)
    except VideoError as error:
        row["errors"].append(f"read from the start: {error}")
        return row
    row["frames"] = len(truth)
    indexes = FrameIndexes()
    try:
        indexes.get(path, build_index)  # built once per video, as a loader keeps it
    except VideoError as error:
        row["errors"].append(f"index: {error}")
        return row
    indexed, sequential = [], []
    for start in clip_starts(len(truth), clips, length + 1):
        wanted = np.arange(start, min(start + length + 1, len(truth)))
        try:
            (frames, _), spent = cpu_ms(lambda: decode_selected(path, None, lambda n: wanted, indexes=indexes))
        except VideoError as error:
            row["errors"].append(f"clip at {start}: {error}")
            continue
        indexed.append(spent)
        sequential.append(cpu_ms(lambda: sequential_clip(path, wanted))[1])
        wrong = [
            int(i)
            for i in wanted
            if int(i) not in frames or hashlib.md5(frames[int(i)].tobytes()).hexdigest() != truth[int(i)]
        ]
        if wrong:
            row["errors"].append(f"clip at {start}: frames {wrong} differ from the read from the start")
    row["sequential"] = os.path.abspath(path) in indexes.sequential_paths
    row["indexed_ms"] = float(np.median(indexed)) if indexed else None
    row["sequential_ms"] = float(np.median(sequential)) if sequential else None
    return row


def table(rows: list[dict], folder: str) -> str:
    """The Markdown table, files named relative to `folder`."""
    lines = [
        "| file | codec | resolution | frames | sequential | indexed ms/clip | from-start ms/clip | errors |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for row in rows:
        costs = ["-" if row[key] is None else f"{row[key]:.1f}" for key in ("indexed_ms", "sequential_ms")]
        lines.append(
            f"| {os.path.relpath(row['file'], folder)} | {row['codec']} | {row['resolution']} | "
            f"{row['frames']} | {'yes' if row['sequential'] else 'no'} | {costs[0]} | {costs[1]} | "
            f"{'; '.join(row['errors']) or 0} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    codecs = sorted({row["codec"] for row in rows})
    failed = sum(bool(row["errors"]) for row in rows)
    return (
        f"{len(rows)} files, {len(codecs)} codecs ({', '.join(codecs)}), "
        f"{sum(row['sequential'] for row in rows)} read sequentially, {failed} failures"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", metavar="DIR", help="folder of real videos (searched recursively)")
    parser.add_argument("--clips", type=int, default=6, help="clips per video, spread evenly (default 6)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip, plus the next one (default 8)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"{args.folder}: no such folder (build a corpus with scripts/real_video_corpus.sh DIR)")
    av.logging.set_level(av.logging.PANIC)  # real files log decoder complaints per frame; errors are counted here
    rows = [measure(path, args.clips, args.frames) for path in video_files(args.folder)]
    print(table(rows, args.folder))
    print(summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
