"""FFmpeg's lavfi test patterns written as video files for the benchmarks (imageio-ffmpeg's ffmpeg binary)."""

from __future__ import annotations

import subprocess


def write_pattern(path: str, source: str, options: list[str], frames: int | None = None) -> str:
    """Writes lavfi `source` (e.g. "testsrc2=size=340x256:rate=30:duration=4,noise=alls=8:allf=t") to `path` with
    the encoder `options`, `frames` frames if given (else the source's duration); returns `path`."""
    import imageio_ffmpeg

    count = ["-frames:v", str(frames)] if frames else []
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i", source]
    subprocess.run([*command, *count, *options, path], check=True)
    return path
