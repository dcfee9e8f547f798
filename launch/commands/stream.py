"""`twostream predict --stream SOURCE`: a live feed scored in sliding windows of the model's clip, a JSON line each.

SOURCE is anything FFmpeg reads as it arrives: a URL (`udp://127.0.0.1:5000`, `rtsp://...`, `http://...`), a
v4l2 device (`/dev/video0`), or `-` for a pipe on standard input. A reader thread decodes the feed into a ring of
the last window of frames (memory: one window); each time `hop` new frames have arrived, the newest window is
scored as `predict` scores a clip (the model's clip settings, the centre crop, flow computed here). When scoring
is slower than the feed, windows are skipped, not queued: a line's `frames_dropped` counts the frames that
arrived beyond its hop. The feed ends when it says so or when no frame comes for `timeout_s`; Ctrl-C stops at
once. Each line: `time_s` (the window's last frame, on the feed's clock), `frame` (its number), `scores`,
`frames_dropped`, `latency_ms` (from that frame leaving the decoder to its score); with --detect-faces, `face` (the
followed face's box on the last frame, or null: the window was scored on the whole frame). With --explain, the best
windows are kept as they come and their pictures written once the feed stops (launch/commands/explain_cmd.py).
"""

from __future__ import annotations

import collections
import statistics
import sys
import threading
import time

import av
import numpy as np

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.video import frame_rgb
from twostream.launch.commands.predict import PredictError, load_model
from twostream.launch.records import print_record
from twostream.trainer.video.explain import cut

STOP_WAIT_S = 2.0  # how long a stop waits for the reader: a live feed's next frame comes within a frame's time


class FeedReader(threading.Thread):
    """Decodes a feed into a ring of its last `window` frames (RGB, with each one's stream time and arrival)."""

    def __init__(self, source: str, window: int, timeout_s: float):
        super().__init__(daemon=True, name="feed-reader")
        self.source, self.timeout_s = source, timeout_s
        self.ring: collections.deque = collections.deque(maxlen=window)  # (rgb, time_s, arrived)
        self.count = 0  # frames decoded so far
        self.ended = False
        self.error = ""  # why the feed could not be read, when it never gave a frame
        self.changed = threading.Condition()
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            with open_feed(self.source, self.timeout_s) as container:
                for frame in container.decode(video=0):
                    if self._stopping.is_set():
                        break
                    rgb = frame_rgb(frame)
                    with self.changed:
                        self.ring.append((rgb, float(frame.time or 0.0), time.perf_counter()))
                        self.count += 1
                        self.changed.notify_all()
        except (av.FFmpegError, OSError) as error:  # the end of a live feed: it stops, or no frame within timeout
            if not self.count:
                self.error = f"no frame from {self.source} within {self.timeout_s:g} s: is the feed sending? ({error})"
        finally:
            with self.changed:
                self.ended = True
                self.changed.notify_all()

    def stop(self) -> None:
        """Ends the reading at the feed's next frame (its container closed in this thread), waiting at most
        STOP_WAIT_S: a process that ends while this thread is inside FFmpeg can crash in its exit (SIGSEGV, seen
        once in about 45 Ctrl-C stops of a live UDP feed). A silent feed holds the read until its timeout: left."""
        self._stopping.set()
        self.join(STOP_WAIT_S)

    def wait_for(self, count: int):
        """(frames of the newest window, the number of frames decoded), once `count` frames have been decoded;
        None when the feed ended first."""
        with self.changed:
            self.changed.wait_for(lambda: self.count >= count or self.ended)
            if self.count < count:
                return None
            return list(self.ring), self.count


def open_feed(source: str, timeout_s: float):
    """The container of a feed: `-` is standard input, /dev/video* a v4l2 device, anything else a URL or file."""
    if source == "-":
        return av.open(sys.stdin.buffer, timeout=timeout_s)
    if source.startswith("/dev/video"):
        return av.open(source, format="v4l2", timeout=timeout_s)
    return av.open(source, timeout=(timeout_s, timeout_s))


def score_feed(
    source: str,
    model_folder: str,
    hop: int = 0,
    timeout_s: float = 10.0,
    out=sys.stdout,
    explain=None,
    workdir: str | None = None,
    faces=None,
) -> int:
    """Scores the feed until it ends (0; 1 when it never gave a frame) or Ctrl-C (130); a summary on stderr.
    `explain` (explain_cmd.ExplainOptions): at the end, the feed's pictures as `feed.*` in its folder. `faces`
    (data/make/faces.LiveFaceTrack): each window cut around the face it follows, for a model trained on face regions."""
    loaded, meta = load_model(model_folder)
    class_names = meta["class_names"]
    loader = ClipLoader(ClipSpec(**meta["clip"]))
    explainer = evidence = None
    if explain is not None:  # the Keras model is built before the feed is read, not when it ends
        from twostream.launch.commands.explain_cmd import Explainer

        explainer = Explainer(loaded, meta, model_folder, workdir, explain)
        evidence = explainer.evidence()
    window = loader.window_frames()
    hop = loader.window_hop(hop)
    loaded.serve(*(np.zeros((1, *shape), np.uint8) for shape in (loader.spec.rgb_shape, loader.spec.flow_shape)))
    # ^ the first call builds the model's graph: done now, not on the feed's first window
    reader = FeedReader(source, window, timeout_s)
    print(f"twostream predict: reading {source} (windows of {window} frames, every {hop})", file=sys.stderr)
    reader.start()
    latencies: list[float] = []
    wanted, dropped = window, 0
    try:
        while (got := reader.wait_for(wanted)) is not None:
            frames, count = got
            skipped = count - wanted  # arrived while the previous window was scored
            native, first = [f[0] for f in frames], count - len(frames)
            track = faces.update(native, first) if faces is not None else None
            clip = cut(loader, native, first, (frames[0][1], frames[-1][1]), track)
            probabilities = loaded.serve(clip.rgb[None], clip.flow[None])["probabilities"]
            probabilities = probabilities.numpy()[0].astype(np.float64)
            if evidence is not None:
                evidence.add(clip, probabilities)
            _, time_s, arrived = frames[-1]
            latencies.append((time.perf_counter() - arrived) * 1e3)
            line = {
                "time_s": round(time_s, 3),
                "frame": count - 1,
                "scores": dict(zip(class_names, np.round(probabilities, 6).tolist())),
                "frames_dropped": skipped,
                "latency_ms": round(latencies[-1], 1),
            }
            if faces is not None:
                line["face"] = None if track is None else [round(v, 1) for v in track.boxes[-1]]  # x, y, w, h
            print_record(line, file=out)
            dropped += skipped
            wanted = count + hop
    except KeyboardInterrupt:
        summary(source, reader, latencies, dropped, "stopped (Ctrl-C)", faces)
        explained(explainer, evidence)
        return 130
    finally:
        reader.stop()
    if reader.error:
        raise PredictError(reader.error)
    summary(source, reader, latencies, dropped, "ended", faces)
    explained(explainer, evidence)
    return 0


def explained(explainer, evidence) -> None:
    """The feed's evidence pictures, once it has stopped (nothing when no window was scored)."""
    if explainer is not None and evidence.timeline:
        name = explainer.write(evidence, "feed")["name"]
        print(f"twostream predict: evidence pictures in {explainer.out_dir} ({name}.*)", file=sys.stderr)


def summary(source: str, reader: FeedReader, latencies: list[float], dropped: int, how: str, faces=None) -> None:
    latency = without_face = ""
    if latencies:
        latency = f", latency median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    if faces is not None:
        without_face = f", {faces.windows_without_face} without a face (scored on the whole frame)"
    print(
        f"twostream predict: {source} {how}: {reader.count} frames, {len(latencies)} windows scored{without_face}, "
        f"{dropped} frames dropped{latency}",
        file=sys.stderr,
    )
