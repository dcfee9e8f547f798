"""Frame-accurate clips from long-GOP codecs at the cost of their frames: content-checked, decode work counted.

The videos are written by ffmpeg (imageio-ffmpeg) with each frame's number drawn into it as a 4 x 4 grid
of black and white blocks (16 bits) that survives compression and resizing, so a test can read back
which frame it was given. Keyframes are placed every GOP frames exactly (scene-cut detection off), so
"the GOP before the clip" is known without asking the code under test.
"""

import os

import av
import numpy as np
import pytest
from helpers.raw_video import encode_frames

from twostream.data.decode import video
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.frame_index import FrameIndex, FrameIndexes
from twostream.data.decode.sampling import EvalView, TrainView, sample_frames
from twostream.data.decode.video import build_index, decode_by_time, decode_selected, frame_times

GOP = 24  # frames from one keyframe to the next
FRAMES = 120  # frames per test video (5 GOPs)
HEIGHT, WIDTH = 96, 128
SIZE = 32  # decode size: each code block is 8 x 8 pixels
GRID = 4  # the code is GRID x GRID blocks, one bit each
CODECS = {  # name -> (file name, ffmpeg output options)
    "h264_bframes_mp4": (
        "h264.mp4",
        ["-c:v", "libx264", "-bf", "3", "-g", str(GOP), "-sc_threshold", "0", "-pix_fmt", "yuv420p"],
    ),
    # a one-frame timestamp gap at the start: OpenCV's frame seek lands one frame early in such a file
    "mpeg4_avi": (
        "mpeg4.avi",
        ["-c:v", "mpeg4", "-q:v", "4", "-g", str(GOP), "-sc_threshold", "1000000000", "-output_ts_offset", "0.0334"],
    ),
}
SLOW, FAST = 10, 30  # the VFR file: SLOW frames 100 ms apart, then FAST frames 25 ms apart
VFR_TIMES_MS = np.concatenate([100.0 * np.arange(SLOW), 100.0 * SLOW - 75 + 25.0 * np.arange(FAST)])
VFR_PTS = f"if(lt(N,{SLOW}),N*0.1,{SLOW * 0.1 - 0.075}+(N-{SLOW})*0.025)/TB"


def coded_frame(number: int, rng: np.random.Generator) -> np.ndarray:
    """A BGR frame showing `number` as GRID x GRID blocks (white = 1), with mild noise for the encoder to work on."""
    bits = (number >> np.arange(GRID * GRID)) & 1
    blocks = np.where(bits.reshape(GRID, GRID), 230, 25).astype(np.int16)
    image = np.kron(blocks, np.ones((HEIGHT // GRID, WIDTH // GRID), np.int16))
    image = image + rng.integers(-15, 16, size=image.shape)
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def read_code(rgb: np.ndarray) -> int:
    """The number drawn by coded_frame, read from the centre of each block of a decoded frame."""
    height, width = rgb.shape[:2]
    centres_y = ((np.arange(GRID) + 0.5) * height / GRID).astype(int)
    centres_x = ((np.arange(GRID) + 0.5) * width / GRID).astype(int)
    bits = rgb.mean(axis=2)[np.ix_(centres_y, centres_x)].ravel() > 128
    return int(np.sum(bits.astype(np.int64) << np.arange(GRID * GRID)))


def write_coded(path, count: int, options: list[str], pts: str | None = None) -> str:
    rng = np.random.default_rng(count)
    frames = np.stack([coded_frame(i, rng) for i in range(count)])
    return encode_frames(path, frames, options, "1000" if pts else "30", pts)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seek")
    return {name: write_coded(folder / file, FRAMES, options) for name, (file, options) in CODECS.items()}


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    return write_coded(
        tmp_path_factory.mktemp("vfr") / "vfr.mp4",
        SLOW + FAST,
        ["-c:v", "libx264", "-bf", "3", "-g", "8", "-pix_fmt", "yuv420p"],
        pts=VFR_PTS,
    )


def _decoded_work(read) -> tuple[object, int]:
    """(what read() returns, frames the decoder produced meanwhile)."""
    before = video.counter.frames
    result = read()
    return result, video.counter.frames - before


def _cost_bound(wanted) -> int:
    """Frames from the keyframe at or before the first wanted frame to the last wanted frame."""
    return int(max(wanted)) - (int(min(wanted)) // GOP) * GOP + 1


def test_the_test_videos_have_the_failure_modes(videos):
    """B-frames reorder the H.264 packets; the AVI's timestamps skip one frame; keyframes every GOP frames."""
    for name, path in videos.items():
        with av.open(path) as container:
            packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        pts = [p.pts for p in packets]
        keyframes = sorted(np.argsort(np.argsort(pts))[[i for i, p in enumerate(packets) if p.is_keyframe]])
        assert len(packets) == FRAMES and keyframes == list(range(0, FRAMES, GOP)), name
        if name.startswith("h264"):
            assert pts != sorted(pts), "no B-frame reordering"
        else:
            assert pts[:3] == [0, 2, 3], pts[:3]


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("start", [0, 5, GOP - 1, GOP, 2 * GOP + 7, FRAMES - 9])
def test_a_clip_is_the_frames_asked_for_at_the_cost_of_its_gop(videos, codec, start):
    wanted = np.arange(start, start + 9)  # 8 frames and the successor of the last, as online flow reads them
    indexes = FrameIndexes()
    indexes.get(videos[codec], build_index)  # the index is built once per video, not per clip
    (frames, count), work = _decoded_work(
        lambda: decode_selected(videos[codec], SIZE, lambda n: wanted, indexes=indexes)
    )
    assert count == FRAMES
    assert [read_code(frames[i]) for i in wanted] == wanted.tolist()
    assert work <= _cost_bound(wanted), (work, _cost_bound(wanted))


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_scattered_frames_seek_per_gop_and_match_a_full_decode(videos, codec):
    path = videos[codec]
    wanted = np.array([3, 4, 30, 31, 70, 71, 118, 119])  # TSN-like: one pair in each of four GOPs
    indexes = FrameIndexes()
    indexes.get(path, build_index)
    (frames, _), work = _decoded_work(lambda: decode_selected(path, SIZE, lambda n: wanted, indexes=indexes))
    assert [read_code(frames[i]) for i in wanted] == wanted.tolist()
    assert work <= sum(_cost_bound(wanted[i : i + 2]) for i in range(0, len(wanted), 2))
    everything = video.decode_frames(path, SIZE)
    assert [read_code(f) for f in everything] == list(range(FRAMES))
    for index in wanted:
        assert np.array_equal(frames[index], everything[index]), index


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_loader_clips_online_and_cached(videos, codec, tmp_path):
    """ClipLoader returns the sampled frames; with a flow cache, a new loader reads the index from disk."""
    path = videos[codec]
    spec = ClipSpec(num_frames=8, size=SIZE, resize="squash")  # frame codes are read on the whole frame
    online = ClipLoader(spec)
    for seed in range(3):
        expected = sample_frames(FRAMES, 8, "dense", 1, np.random.default_rng(seed))
        (rgb, _), work = _decoded_work(lambda: online.load(path, TrainView(seed)))
        assert [read_code(f) for f in rgb] == expected.tolist()
        assert work <= _cost_bound(np.append(expected, expected[-1] + 1))
    cache = FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params())
    ClipLoader(spec, cache).video_flow(path)  # fills the cache; the same pass stores the decoded index
    assert os.listdir(tmp_path / "cache" / "index")
    later = ClipLoader(spec, FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params()))
    (rgb, flow), work = _decoded_work(lambda: later.load(path, EvalView()))
    centred = sample_frames(FRAMES, 8, "dense")
    assert [read_code(f) for f in rgb] == centred.tolist() and flow.shape == (8, SIZE, SIZE, 2)
    assert work <= _cost_bound(centred)


def _with_phantom_frame(index: FrameIndex, after: int) -> FrameIndex:
    """The index a file would give whose packets promise one more frame (after `after`) than decodes."""
    phantom = (index.pts[after] + index.pts[after + 1]) // 2
    return FrameIndex(np.insert(index.pts, after + 1, phantom), index.keyframes, index.time_base, decoded=False)


def test_an_index_the_decoder_contradicts_is_rebuilt_by_decoding(videos):
    path = videos["h264_bframes_mp4"]
    indexes = FrameIndexes()
    true = indexes.get(path, build_index)
    indexes.replace(path, _with_phantom_frame(true, 40))
    asked = []
    frames, count = decode_selected(path, SIZE, lambda n: asked.append(n) or np.arange(38, 46), indexes=indexes)
    assert asked == [FRAMES + 1, FRAMES] and count == FRAMES  # chosen again from the decoded count
    assert [read_code(frames[i]) for i in range(38, 46)] == list(range(38, 46))
    rebuilt = indexes.get(path, build_index)
    assert rebuilt.decoded and np.array_equal(rebuilt.pts, true.pts)


def test_cached_flow_and_a_contradicting_index_are_reconciled(videos, tmp_path):
    """Flow cached from 120 decoded frames, an index promising 121: the loader rebuilds the index first."""
    path = videos["mpeg4_avi"]
    spec = ClipSpec(num_frames=8, size=SIZE, sampling="segments", resize="squash")
    loader = ClipLoader(spec, FlowCache(str(tmp_path / "cache"), 1 << 26, spec.flow_params()))
    loader.video_flow(path)
    loader.indexes.replace(path, _with_phantom_frame(loader.indexes.get(path, build_index), 10))
    rgb, _ = loader.load(path, EvalView())
    assert [read_code(f) for f in rgb] == sample_frames(FRAMES, 8, "segments").tolist()
    assert loader.indexes.get(path, build_index).decoded


def test_vfr_times_come_from_the_index_and_time_sampling_is_exact(vfr):
    np.testing.assert_allclose(frame_times(vfr), VFR_TIMES_MS, atol=1.0)
    ticks_ms = np.array([200, 500, 1000, 1100, 1200])  # each tick shows the last frame at or before it
    expected = [int(np.searchsorted(VFR_TIMES_MS, t, side="right") - 1) for t in ticks_ms]
    frames, count = decode_by_time(vfr, SIZE, lambda times: np.searchsorted(times, ticks_ms + 1e-3, "right") - 1)
    assert count == SLOW + FAST and [read_code(frames[i]) for i in sorted(frames)] == sorted(set(expected))


def test_disk_index_is_keyed_by_file_identity(videos, tmp_path):
    path = str(tmp_path / "copy.mp4")
    with open(videos["h264_bframes_mp4"], "rb") as f, open(path, "wb") as g:
        g.write(f.read())
    first = FrameIndexes(str(tmp_path / "index"))
    first.get(path, build_index)
    reused = FrameIndexes(str(tmp_path / "index")).get(path, lambda p: pytest.fail("rebuilt a stored index"))
    assert len(reused) == FRAMES
    os.utime(path, ns=(0, 10**9))  # a changed file (new mtime) is indexed anew
    built = []
    FrameIndexes(str(tmp_path / "index")).get(path, lambda p: built.append(p) or build_index(p))
    assert built == [path]
