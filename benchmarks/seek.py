"""CPU per clip on long-GOP videos: the frame-index seek (data/decode/video.py) vs the GOP-plus-clip floor vs the old
OpenCV path.

Writes 30 s test videos with ffmpeg (imageio-ffmpeg's binary; a noisy test pattern so frames cost what real
footage costs to decode): H.264 with B-frames in MP4 and MPEG-4 Part 2 in AVI, keyframes every --gop frames,
at 640x480 and 1280x720. Then, per video and in interleaved rounds, CPU ms (this process, all threads) per
clip of --frames frames plus the next one (what online flow reads), for:
  new    decode_selected with the video's frame index already built (it is built once per video and kept);
  floor  the sequential decode of the GOP before the clip plus the clip's frames: seek to the keyframe
         (known from the file), decode forward, convert only the clip's frames; no index, no checks;
  old    data/decode/video.py as of --old-commit (OpenCV: CAP_PROP_POS_FRAMES seek, timestamp check, whole-video
         fallback), loaded from git history.
Prints medians, the ratios new/floor and old/new, frames decoded per clip, and the index's one-off cost.

    .venv/bin/python benchmarks/seek.py [--clips 12] [--rounds 3] [--seconds 30] [--folder /tmp/twostream-seek]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import av
import cv2
import numpy as np

from twostream.data.decode import video
from twostream.data.decode.frame_index import FrameIndexes
from twostream.data.decode.video import build_index, decode_index, decode_selected

CODECS = {
    "h264": (".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-pix_fmt", "yuv420p"]),
    "mpeg4": (".avi", ["-c:v", "mpeg4", "-q:v", "5"]),
}
SIZES = {"480p": "640x480", "720p": "1280x720"}


def write_video(folder: str, codec: str, size: str, seconds: int, gop: int) -> str:
    """A noisy moving test pattern, 30 fps, keyframes every `gop` frames exactly; reused when already written."""
    ext, options = CODECS[codec]
    path = os.path.join(folder, f"{codec}_{size}_{seconds}s_g{gop}{ext}")
    if not os.path.exists(path):
        import imageio_ffmpeg

        source = f"testsrc2=size={SIZES[size]}:rate=30:duration={seconds},noise=alls=8:allf=t"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i", source]
            + options
            + ["-g", str(gop), "-sc_threshold", "1000000000", path + ".tmp" + ext],
            check=True,
        )
        os.replace(path + ".tmp" + ext, path)
    return path


def old_decoder(commit: str):
    """data/decode/video.py as of `commit`, as a module (None when git cannot show it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shown = subprocess.run(["git", "-C", root, "show", f"{commit}:data/video.py"], capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    handle, path = tempfile.mkstemp(suffix="_old_video.py")
    with os.fdopen(handle, "w") as f:
        f.write(shown.stdout)
    spec = importlib.util.spec_from_file_location("old_video", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(path)
    return module


def floor_clip(path: str, keyframe_pts: int, wanted_pts: list[int], size: int) -> int:
    """Seek to the keyframe, decode forward to the last wanted frame, convert the wanted ones; returns frames
    decoded."""
    decoded, wanted = 0, set(wanted_pts)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = video.DECODE_THREADS
        container.seek(keyframe_pts, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            decoded += 1
            if frame.pts in wanted:
                cv2.resize(frame.to_ndarray(format="rgb24"), (size, size), interpolation=cv2.INTER_AREA)
            if frame.pts >= wanted_pts[-1]:
                return decoded
    return decoded


def cpu_ms(run) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) * 1000.0


def measure(path: str, args, old) -> dict:
    indexes = FrameIndexes()
    index_ms = cpu_ms(lambda: indexes.get(path, build_index))
    index = indexes.get(path, build_index)
    decoded_index_ms = cpu_ms(lambda: decode_index(path))
    rng = np.random.default_rng(0)
    length = args.frames + 1
    starts = rng.integers(0, len(index) - length, size=args.clips)
    times = {"new": [], "floor": [], "old": []}
    frames = {"new": [], "floor": []}
    for _ in range(args.rounds):
        for start in starts:
            wanted = np.arange(start, start + length)
            before = video.counter.frames
            times["new"].append(cpu_ms(lambda: decode_selected(path, args.size, lambda n: wanted, indexes=indexes)))
            frames["new"].append(video.counter.frames - before)
            keyframe = index.keyframe_before(int(start))
            decoded = []
            times["floor"].append(
                cpu_ms(
                    lambda: decoded.append(
                        floor_clip(path, int(index.pts[keyframe]), [int(p) for p in index.pts[wanted]], args.size)
                    )
                )
            )
            frames["floor"].append(decoded[0])
            if old is not None:
                times["old"].append(cpu_ms(lambda: old.decode_selected(path, args.size, lambda n: wanted)))
    return {
        "frames": len(index),
        "index_ms": index_ms,
        "decoded_index_ms": decoded_index_ms,
        **{f"{k}_ms": float(np.median(v)) for k, v in times.items() if v},
        **{f"{k}_frames": float(np.mean(v)) for k, v in frames.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12, help="clips per video per round (random starts, seeded)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (one more is read for flow)")
    parser.add_argument("--size", type=int, default=112, help="decode size, pixels")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--gop", type=int, default=48, help="frames from one keyframe to the next")
    parser.add_argument("--old-commit", default="b4601b8~1", help="git commit whose data/video.py is the old path")
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "twostream-seek"))
    parser.add_argument("--codecs", default="h264,mpeg4")
    parser.add_argument("--sizes", default="480p,720p")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    cv2.setNumThreads(1)  # as in every decode actor
    old = old_decoder(args.old_commit)
    if old is None:
        print(f"(old path left out: git cannot show data/decode/video.py at {args.old_commit})", file=sys.stderr)
    print(
        f"{args.frames}+1-frame clips at {args.size} px, {args.clips} clips x {args.rounds} rounds, GOP {args.gop}, "
        f"CPU ms per clip (median), {args.seconds} s videos"
    )
    print(
        f"{'video':<12}{'frames':>7}{'index ms':>10}{'decode-idx ms':>14}{'floor':>9}{'new':>9}{'old':>9}"
        f"{'new/floor':>10}{'old/new':>9}{'frames new/floor':>18}"
    )
    for codec in args.codecs.split(","):
        for size in args.sizes.split(","):
            path = write_video(args.folder, codec, size, args.seconds, args.gop)
            r = measure(path, args, old)
            old_ms = r.get("old_ms", float("nan"))
            print(
                f"{codec + ' ' + size:<12}{r['frames']:>7}{r['index_ms']:>10.1f}{r['decoded_index_ms']:>14.0f}"
                f"{r['floor_ms']:>9.1f}{r['new_ms']:>9.1f}{old_ms:>9.1f}{r['new_ms'] / r['floor_ms']:>10.2f}"
                f"{old_ms / r['new_ms']:>9.2f}{r['new_frames']:>10.1f}/{r['floor_frames']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
