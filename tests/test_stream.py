"""`twostream predict --stream`: a live MPEG-TS feed over UDP on loopback and through a pipe, scored window by window
with the session's trained model; the feed's end and Ctrl-C both stop it cleanly."""

import json
import os
import signal
import socket
import subprocess

import pytest
from conftest import VENV_BIN, run_cli
from helpers.live_feed import predict_piped, wait_until_reading
from helpers.raw_video import ffmpeg_exe

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

FPS, SECONDS = 25, 3
WAIT_S = 120  # a guard against a hang, not a measurement


def _pattern(seconds: float) -> list[str]:
    """ffmpeg's arguments for a moving test pattern sent as MPEG-TS at its real rate (-re), to a target after them."""
    source = f"testsrc2=size=160x120:rate={FPS}"
    return ["-re", "-f", "lavfi", "-i", source, "-t", str(seconds), "-f", "mpegts"]


def _feed(target: str, seconds: float) -> subprocess.Popen:
    """ffmpeg sending the test pattern to `target` (a URL)."""
    return subprocess.Popen([ffmpeg_exe(), "-nostdin", "-loglevel", "error", *_pattern(seconds), target])


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _predict(source: str, workdir: str, *extra: str) -> subprocess.Popen:
    argv = [os.path.join(VENV_BIN, "twostream"), "predict", "--stream", source, "--workdir", workdir, *extra]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_windows(lines: list[str], class_names: list[str], frames_sent: int) -> list[dict]:
    windows = [json.loads(line) for line in lines]
    assert len(windows) >= 5, lines
    for window in windows:
        assert set(window) == {"time_s", "frame", "scores", "frames_dropped", "latency_ms"}
        assert sorted(window["scores"]) == sorted(class_names)
        assert sum(window["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert window["latency_ms"] > 0 and window["frames_dropped"] >= 0
    frames = [w["frame"] for w in windows]
    assert frames == sorted(set(frames)) and frames[-1] < frames_sent
    times = [w["time_s"] for w in windows]
    assert times == sorted(times) and times[-1] - times[0] > 1.0  # the feed's own clock, over its seconds
    return windows


def test_a_udp_feed_is_scored_window_by_window_and_ends_with_a_summary(trained):
    class_names = json.load(open(os.path.join(trained.workdir, "export", "twostream.json")))["class_names"]
    url = f"udp://127.0.0.1:{_free_udp_port()}"
    predict = _predict(url, trained.workdir, "--hop", "3", "--stream-timeout", "3")
    try:
        wait_until_reading(predict)
        _feed(f"{url}?pkt_size=1316", SECONDS).wait(timeout=WAIT_S)
        out, err = predict.communicate(timeout=WAIT_S)
    finally:
        predict.kill()
    assert predict.returncode == 0, err
    windows = _check_windows(out.splitlines(), class_names, FPS * SECONDS)
    # every window is `hop` frames after the one before, plus those that arrived while it was scored
    assert all(b["frame"] - a["frame"] == 3 + b["frames_dropped"] for a, b in zip(windows, windows[1:]))
    summary = err.strip().splitlines()[-1]
    assert f"{url} ended:" in summary and f"{len(windows)} windows scored" in summary and "latency median" in summary
    assert "Traceback" not in err


def test_a_piped_feed_ends_with_its_pipe_and_ctrl_c_stops_a_live_one(trained):
    class_names = json.load(open(os.path.join(trained.workdir, "export", "twostream.json")))["class_names"]
    code, out, err = predict_piped([*_pattern(SECONDS), "-"], ["--workdir", trained.workdir], WAIT_S)
    assert code == 0, err
    _check_windows(out.splitlines(), class_names, FPS * SECONDS)

    url = f"udp://127.0.0.1:{_free_udp_port()}"
    predict = _predict(url, trained.workdir)
    live = None
    try:
        wait_until_reading(predict)
        live = _feed(f"{url}?pkt_size=1316", 60)
        assert json.loads(predict.stdout.readline())["scores"]  # a first window: the feed is being scored
        predict.send_signal(signal.SIGINT)
        _, err = predict.communicate(timeout=30)
    finally:
        predict.kill()
        if live is not None:
            live.kill()
            live.wait()
    assert predict.returncode == 130, err
    assert "stopped (Ctrl-C)" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_a_stopped_reader_of_a_live_feed_has_ended_when_stop_returns():
    """score_feed stops its reader before it returns (Ctrl-C included): no thread is inside FFmpeg while the
    process exits, which can crash the exit."""
    from twostream.launch.commands.stream import FeedReader

    url = f"udp://127.0.0.1:{_free_udp_port()}"
    reader = FeedReader(url, window=4, timeout_s=10)
    reader.start()
    live = _feed(f"{url}?pkt_size=1316", 60)
    try:
        assert reader.wait_for(4) is not None  # reading the live feed
        reader.stop()
        assert not reader.is_alive() and reader.ended
    finally:
        live.kill()
        live.wait()


def test_a_feed_that_sends_nothing_and_a_feed_beside_files_are_refused_in_one_line(trained, tmp_path):
    silent = run_cli(
        "predict",
        "--stream",
        f"udp://127.0.0.1:{_free_udp_port()}",
        "--workdir",
        trained.workdir,
        "--stream-timeout",
        "1",
    )
    assert silent.returncode == 2 and "no frame from udp://127.0.0.1:" in silent.stderr
    assert "is the feed sending?" in silent.stderr and "Traceback" not in silent.stderr
    both = run_cli("predict", "x.mp4", "--stream", "-", "--workdir", trained.workdir)
    assert both.returncode == 2 and both.stderr.strip() == (
        "twostream predict: error: give video files or --stream SOURCE, not both"
    )


MESSI = "/usr/share/doc/opencv-doc/examples/data/messi5.jpg"


@pytest.mark.skipif(not os.path.isfile(MESSI), reason="needs Debian's opencv-doc (scripts/test_system_deps.sh)")
def test_a_feed_of_a_face_is_scored_around_the_face_it_follows(trained, tmp_path):
    """A real face (messi5.jpg under a moving virtual camera, with a cut) piped as MPEG-TS: each window's line names
    the face's box on its last frame, where the face truly is."""
    import cv2
    import numpy as np

    from twostream.data.make.synthetic import write_video
    from twostream.data.make.virtual_camera import Shot, film

    shots = (Shot(20, (0.25, 0.15, 1.0), (-0.25, 0.0, 1.6)), Shot(16, (-0.2, -0.15, 1.3), (0.15, 0.1, 1.0)))
    footage = film(cv2.imread(MESSI)[..., ::-1].copy(), (224, 90, 40, 44), (384, 240), shots)
    video = str(tmp_path / "messi.mp4")
    write_video(video, footage.frames[..., ::-1], 25.0, "mp4v")
    feed = ["-re", "-i", video, "-f", "mpegts", "-"]
    code, out, err = predict_piped(feed, ["--workdir", trained.workdir, "--detect-faces", "--hop", "4"], WAIT_S)
    assert code == 0, err
    windows = [json.loads(line) for line in out.splitlines()]
    assert len(windows) >= 2 and "0 without a face" in err.strip().splitlines()[-1], err  # windows skipped under load
    for window in windows:
        x, y, w, h = window["face"]
        tx, ty, tw, th = footage.face[window["frame"]]
        assert abs(x + w / 2 - (tx + tw / 2)) < tw / 2 and abs(y + h / 2 - (ty + th / 2)) < th / 2, window
        assert 0.5 < np.sqrt(w * h / (tw * th)) < 2
