"""Test videos from raw frames: BGR arrays piped into the ffmpeg binary of imageio-ffmpeg (a test dependency)."""

import subprocess

import numpy as np
import pytest


def ffmpeg_exe() -> str:
    """imageio-ffmpeg's ffmpeg binary; the test is skipped, saying what to install, where there is none."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        pytest.skip(f"no ffmpeg binary to write test videos ({error}); install requirements-dev.txt (imageio-ffmpeg)")


def encode_frames(path, frames_bgr: np.ndarray, options: list[str], rate: str = "25", pts: str | None = None) -> str:
    """Writes FRAMES_BGR (n, height, width, 3 uint8) to PATH with the encoder OPTIONS (e.g. ["-c:v", "libx264"]) at
    RATE frames per second, or at the per-frame timestamps of the setpts expression PTS (every frame kept). The
    test is skipped where this ffmpeg cannot write it."""
    height, width = frames_bgr.shape[1:3]
    command = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24"]
    command += ["-s", f"{width}x{height}", "-framerate", rate, "-i", "-"]
    if pts:  # commas escaped for the filter graph; passthrough keeps every frame
        command += ["-vf", "setpts=" + pts.replace(",", "\\,"), "-fps_mode", "passthrough"]
    done = subprocess.run(command + options + [str(path)], input=frames_bgr.tobytes(), capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this ffmpeg cannot write {path}: {done.stderr.decode(errors='replace')[-300:]}")
    return str(path)
