"""A live feed piped into `twostream predict --stream -`, started once predict has loaded its model: what a pipe
held from before predict read it would be dropped as stale (a live reader keeps up), and the windows scored
would then depend on how long the model took to load."""

import os
import subprocess

from conftest import VENV_BIN
from helpers.raw_video import ffmpeg_exe


def wait_until_reading(predict: subprocess.Popen) -> list[str]:
    """stderr lines up to predict's "reading SOURCE" line (the model is loaded, the feed about to be opened)."""
    lines = []
    while not lines or "reading" not in lines[-1]:
        line = predict.stderr.readline()
        assert line, f"predict ended before reading its feed: {''.join(lines)}"
        lines.append(line)
    return lines


def predict_piped(feed_args: list[str], predict_args: list[str], timeout_s: float) -> tuple[int, str, str]:
    """(predict's exit code, stdout, stderr) of `twostream predict --stream - PREDICT_ARGS` reading what
    `ffmpeg FEED_ARGS` writes to its stdout, the feed started on predict's "reading" line."""
    read_end, write_end = os.pipe()
    argv = [os.path.join(VENV_BIN, "twostream"), "predict", "--stream", "-", *predict_args]
    predict = subprocess.Popen(argv, stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(read_end)
    feed = None
    try:
        try:
            head = wait_until_reading(predict)
            feed = subprocess.Popen([ffmpeg_exe(), "-nostdin", "-loglevel", "error", *feed_args], stdout=write_end)
        finally:
            os.close(write_end)  # the pipe is the feed's alone now: its end is the feed's end
        out, err = predict.communicate(timeout=timeout_s)
        feed.wait(timeout=timeout_s)
    finally:
        predict.kill()
        if feed is not None:
            feed.kill()
    return predict.returncode, out, "".join(head) + err
