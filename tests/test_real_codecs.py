"""Clips from files with the properties of real videos whose seeks disagree with a read from the start: each frame
checked.

The properties, found on Debian's sample videos (benchmarks/real_codecs.py, docs/data.md):
- an MPEG-4 Part 2 AVI with packed B-frames (DivX "packed bitstream": opencv-doc's Megamind.avi): the decoder
  gives its frames' timestamps out of order (1, 3, 2, 5, 4, ...), so no timestamp tells which frame came out;
- an MPEG-2 program stream with small frames, several to a 2 KiB pack (devede's DVD menus, k3b's VCDs): a seek
  to its first keyframe lands frames later.
The files are written here with the tests' ffmpeg (test_seek.py's frame-number code in every frame), the
packed AVI by packing ffmpeg's MPEG-4 stream as DivX does. A clip must hold exactly the frames of a read from
the start, and a file that needed the sequential path is marked so on disk and counted. When the Debian
corpus exists (scripts/real_video_corpus.sh, TWOSTREAM_REAL_VIDEOS=DIR), every file in it is checked too.
"""

import contextlib
import fractions
import os
import re

import av
import numpy as np
import pytest
from test_seek import HEIGHT, WIDTH, read_code, write_coded

from twostream.data.decode import video
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.frame_index import FrameIndexes
from twostream.data.decode.video import build_index, decode_selected, iter_frames

FRAMES = 60
GOP = 12
VOP_START = b"\x00\x00\x01\xb6"
B_VOP = 2  # vop_coding_type of a B-frame (top 2 bits after the start code)
DIVX_PACKED = b"\x00\x00\x01\xb2DivX503b1393p"  # user data that tells the decoder B-frames are packed ('p')
NOT_CODED_P_VOP = VOP_START + b"\x50\x4f"  # P, time increment 0 (5 bits at 25 fps), vop_coded 0, stuffing


def pack_divx(elementary: str, path: str) -> str:
    """An AVI of an MPEG-4 Part 2 stream (decoding order) with each B-frame packed into the packet before it and
    a not-coded frame in its place, as DivX 5 writes them; one packet per frame time, as AVI stores them."""
    stream_bytes = open(elementary, "rb").read()
    starts = [m.start() for m in re.finditer(re.escape(VOP_START), stream_bytes)]
    header = stream_bytes[: starts[0]]
    vops = [stream_bytes[a:b] for a, b in zip(starts, starts[1:] + [len(stream_bytes)])]
    kinds = [vop[4] >> 6 for vop in vops]
    packets, i = [], 0
    while i < len(vops):
        if i + 1 < len(vops) and kinds[i + 1] == B_VOP:
            packets += [(vops[i] + vops[i + 1], kinds[i] == 0), (NOT_CODED_P_VOP, False)]
            i += 2
        else:
            packets.append((vops[i], kinds[i] == 0))
            i += 1
    packets[0] = (header + DIVX_PACKED + packets[0][0], True)
    with av.open(path, "w", format="avi") as output:
        stream = output.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = fractions.Fraction(1, 25)
        for number, (data, key) in enumerate(packets):
            packet = av.Packet(data)
            packet.pts = packet.dts = number
            packet.time_base, packet.stream, packet.is_keyframe = stream.time_base, stream, key
            output.mux(packet)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real_codecs")
    elementary = write_coded(
        folder / "packed.m4v",
        FRAMES,
        ["-c:v", "mpeg4", "-q:v", "4", "-bf", "1", "-g", str(GOP), "-sc_threshold", "1000000000", "-f", "m4v"],
    )
    return {
        "packed_b_frames_avi": pack_divx(elementary, str(folder / "packed.avi")),
        # 200 kb/s: several frames share a 2 KiB program-stream pack, as in a DVD menu's still frames
        "mpeg2_program_stream": write_coded(
            folder / "menu.mpg",
            FRAMES,
            ["-c:v", "mpeg2video", "-b:v", "200k", "-bf", "2", "-g", str(GOP), "-f", "mpeg"],
        ),
    }


def test_the_files_have_the_failing_properties(files):
    """Packed: decoded timestamps out of order, every other packet a tiny not-coded frame. Program stream: a seek
    to the first keyframe does not give the first frame."""
    with av.open(files["packed_b_frames_avi"]) as container:
        stamps = [frame.pts for frame in container.decode(container.streams.video[0])]
    assert len(stamps) == FRAMES and stamps != sorted(stamps)
    with av.open(files["mpeg2_program_stream"]) as container:
        stream = container.streams.video[0]
        first = next(container.decode(stream)).pts
    with av.open(files["mpeg2_program_stream"]) as container:
        stream = container.streams.video[0]
        container.seek(first, stream=stream, backward=True, any_frame=False)
        assert next(container.decode(stream)).pts != first


@pytest.mark.parametrize("kind", ["packed_b_frames_avi", "mpeg2_program_stream"])
def test_every_clip_is_the_frames_of_a_read_from_the_start(files, kind):
    path = files[kind]
    everything = list(iter_frames(path))
    assert [read_code(frame) for frame in everything] == list(range(FRAMES))  # the decoder's order is the truth
    indexes = FrameIndexes()
    for start in [0, 1, 5, GOP - 1, GOP, 2 * GOP + 3, FRAMES - 9]:
        wanted = np.arange(start, start + 9)
        frames, count = decode_selected(path, None, lambda n: wanted, indexes=indexes)
        assert count == FRAMES
        for position in wanted:
            assert np.array_equal(frames[position], everything[position]), (kind, start, position)


def test_a_file_read_sequentially_is_marked_on_disk_and_counted(files, tmp_path):
    path = files["packed_b_frames_avi"]
    first = FrameIndexes(str(tmp_path / "index"))
    decode_selected(path, None, lambda n: np.arange(30, 39), indexes=first)
    assert first.get(path, build_index).sequential and first.sequential_paths == {os.path.abspath(path)}
    later = FrameIndexes(str(tmp_path / "index"))  # a new process: no seek is tried again
    seeks = video.counter.seeks
    frames, _ = decode_selected(path, 32, lambda n: np.arange(40, 49), indexes=later)
    assert video.counter.seeks == seeks and [read_code(frames[i]) for i in range(40, 49)] == list(range(40, 49))
    assert later.sequential_paths == {os.path.abspath(path)}
    normal = FrameIndexes()
    decode_selected(files["mpeg2_program_stream"], None, lambda n: np.arange(30, 39), indexes=normal)
    assert normal.sequential_paths == set()  # it seeks fine past its first keyframe


def _corpus_files() -> list[str]:
    folder = os.environ.get("TWOSTREAM_REAL_VIDEOS", "")
    return sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names) if folder else []


@pytest.mark.skipif(
    not _corpus_files(),
    reason="no real-video corpus: set TWOSTREAM_REAL_VIDEOS=DIR (scripts/real_video_corpus.sh DIR builds one)",
)
@pytest.mark.parametrize("path", _corpus_files(), ids=os.path.basename)
def test_real_corpus_clips_match_a_read_from_the_start(path):
    everything = list(iter_frames(path))
    indexes = FrameIndexes()
    for start in sorted({int(s) for s in np.linspace(0, max(0, len(everything) - 9), 4)}):
        wanted = np.arange(start, min(start + 9, len(everything)))
        frames, _ = decode_selected(path, None, lambda n: wanted, indexes=indexes)
        assert all(np.array_equal(frames[i], everything[i]) for i in wanted), (path, start)


@pytest.mark.tensorflow
def test_prepare_and_predict_count_the_videos_read_sequentially(files, tmp_path, monkeypatch, capsys):
    from twostream.data.decode.flow_cache import FlowCache
    from twostream.data.make.prepare import prepare
    from twostream.data.manifest import VideoRecord
    from twostream.launch.commands import predict as predict_lib

    spec = ClipSpec(num_frames=4, size=32, resize="squash")
    records = [VideoRecord(path, 0, name) for name, path in sorted(files.items())]
    summary = prepare(records, spec, FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params()), progress=False)
    assert summary["computed"] == 2 and summary["failed"] == [] and summary["sequential"] == 1

    class Model:  # stands in for an exported SavedModel: two classes, equal probabilities
        @staticmethod
        def serve(rgb, flow):
            return {"probabilities": type("T", (), {"numpy": lambda self: np.full((len(rgb), 2), 0.5)})()}

    meta = {"class_names": ["real", "fake"], "clip": {"num_frames": 4, "size": 32, "resize": "squash"}}
    monkeypatch.setattr(predict_lib, "load_model", lambda folder: (Model(), meta))
    assert predict_lib.run([files["packed_b_frames_avi"], files["mpeg2_program_stream"]], model="unused") == 0
    printed = capsys.readouterr()
    assert printed.out.count("\treal\t") == 2
    assert "1 of 2 videos read from the start" in printed.err


@pytest.mark.tensorflow
def test_an_epoch_record_counts_the_videos_its_actors_read_from_the_start(files, ray_session):
    """Through the decode actors and the epoch stream: the packed AVI (seek disagrees) is counted, the program
    stream (its seeks agree past the first keyframe) is not, and both clips are the frames a read from the start
    gives."""
    from twostream.data.distributed.actors import DecoderPool
    from twostream.data.distributed.pipeline import EpochStream
    from twostream.data.distributed.sharding import plan_epoch
    from twostream.data.manifest import VideoRecord

    spec = ClipSpec(num_frames=4, size=32, resize="squash")
    records = [
        VideoRecord(files[name], label, name)
        for label, name in enumerate(["packed_b_frames_avi", "mpeg2_program_stream"])
    ]
    pool = DecoderPool(spec, num_actors=1, clips_per_call=2, cpus_per_actor=0)
    try:
        stream = EpochStream(
            records, pool, plan_epoch(6, 2, 0, 1, seed=0, epoch=0, train=False), seed=0, epoch=0, train=False, views=3
        )
        batches = list(stream)
    finally:
        pool.shutdown()
    assert stream.report.sequential == {files["packed_b_frames_avi"]} and stream.report.failed == []
    assert sum(len(batch[0]) for batch in batches) == 6


class _SeekCorrupts:
    """A container whose frames after a seek come out black and marked corrupt, as cockatoo.mp4's (python3-imageio)
    H.264 4:4:4 IDR frames do after a seek, though whole when read from the start."""

    def __init__(self, container):
        self.container, self.seeked = container, False

    def seek(self, *args, **kwargs):
        self.seeked = True
        return self.container.seek(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.container, name)


class _CorruptFrame:
    def __init__(self, frame):
        self.frame, self.is_corrupt = frame, True

    def to_ndarray(self, **kwargs):
        return np.zeros_like(self.frame.to_ndarray(**kwargs))

    def __getattr__(self, name):
        return getattr(self.frame, name)


def test_frames_marked_corrupt_after_a_seek_are_read_from_the_start(tmp_path, monkeypatch):
    path = write_coded(
        tmp_path / "h264.mp4",
        FRAMES,
        ["-c:v", "libx264", "-bf", "2", "-g", str(GOP), "-sc_threshold", "0", "-pix_fmt", "yuv420p"],
    )
    everything = list(iter_frames(path))
    opened, decoded = video._opened, video._decoded

    @contextlib.contextmanager
    def opened_corrupting(name):
        with opened(name) as (container, stream):
            yield _SeekCorrupts(container), stream

    def decoded_corrupting(container, stream):
        for frame in decoded(container, stream):
            yield _CorruptFrame(frame) if getattr(container, "seeked", False) else frame

    monkeypatch.setattr(video, "_opened", opened_corrupting)
    monkeypatch.setattr(video, "_decoded", decoded_corrupting)
    indexes = FrameIndexes()
    wanted = np.arange(2 * GOP + 3, 2 * GOP + 12)  # past two keyframes: both seeks come out corrupt
    frames, _ = decode_selected(path, None, lambda n: wanted, indexes=indexes)
    assert all(np.array_equal(frames[i], everything[i]) for i in wanted)
    assert indexes.get(path, build_index).sequential
