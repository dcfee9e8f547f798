"""H.264 in MP4 and a variable-frame-rate file, written by ffmpeg (imageio-ffmpeg), read through our decoder."""

import numpy as np
import pytest
from helpers.raw_video import encode_frames

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.sampling import EvalView, TrainView
from twostream.data.decode.video import decode_frames, decode_selected, frame_rgb, frame_times, to_rgb
from twostream.data.make.synthetic import random_texture

SIZE = 32  # decode size; the files are 64x48 (an odd aspect, even sides as yuv420p needs)
SLOW, FAST = 10, 40  # the VFR file: SLOW frames 100 ms apart, then FAST frames 25 ms apart
VFR_TIMES_MS = np.concatenate([100.0 * np.arange(SLOW), 100.0 * SLOW - 75 + 25.0 * np.arange(FAST)])
VFR_PTS = f"if(lt(N,{SLOW}),N*0.1,{SLOW * 0.1 - 0.075}+(N-{SLOW})*0.025)/TB"  # the same times, as ffmpeg setpts


def _encode(path, frames_bgr: np.ndarray, rate: str, pts: str | None = None) -> str:
    """H.264 with B-frames on and a keyframe every 5 frames, so seeks matter."""
    return encode_frames(path, frames_bgr, ["-c:v", "libx264", "-g", "5", "-pix_fmt", "yuv420p"], rate, pts)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """(frames as written, constant-rate H.264 MP4, variable-rate H.264 MP4), made once for the module."""
    rng = np.random.default_rng(0)
    frames = np.stack([random_texture(rng, 48, 64) for _ in range(SLOW + FAST)])
    folder = tmp_path_factory.mktemp("codecs")
    return (
        frames,
        _encode(folder / "cfr.mp4", frames[:30], rate="25"),
        _encode(folder / "vfr.mp4", frames, rate="1000", pts=VFR_PTS),
    )


def _identify(decoded: np.ndarray, frames_bgr: np.ndarray) -> list[int]:
    """Index of the written frame each decoded frame is closest to (H.264 is lossy: no exact match)."""
    written = np.stack([to_rgb(f, SIZE) for f in frames_bgr]).astype(np.int16)
    return [int(np.argmin(np.abs(written - d.astype(np.int16)).mean(axis=(1, 2, 3)))) for d in decoded]


def test_h264_mp4_decodes_every_frame_in_order(videos):
    frames, cfr, _ = videos
    decoded = decode_frames(cfr, SIZE)
    assert decoded.shape == (30, SIZE, SIZE, 3)
    assert _identify(decoded, frames[:30]) == list(range(30))
    error = np.abs(decoded.astype(int) - np.stack([to_rgb(f, SIZE) for f in frames[:30]])).mean()
    assert error < 10, error  # lossy, but the same picture


def test_h264_seeking_decode_matches_full_decode(videos):
    _, cfr, _ = videos
    full = decode_frames(cfr, SIZE)
    wanted = np.array([2, 9, 17, 23, 28])
    frames, count = decode_selected(cfr, SIZE, lambda n: wanted, seek_gap=0)  # seek_gap=0: seek every time
    assert count == 30 and sorted(frames) == wanted.tolist()
    for index in wanted:
        assert np.array_equal(frames[index], full[index]), index


def test_frames_convert_to_rgb_on_the_decoding_thread(videos):
    """PyAV's default conversion starts a slice thread per core for every frame and waits on them (dozens of
    voluntary context switches for these 30 frames on 2 cores); frame_rgb converts on the calling thread."""
    import resource

    import av

    with av.open(videos[1]) as container:
        frames = list(container.decode(video=0))
    switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw
    converted = [frame_rgb(frame) for frame in frames]
    assert resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw - switches < 5
    assert all(np.array_equal(rgb, frame.to_ndarray(format="rgb24")) for rgb, frame in zip(converted, frames))


def test_vfr_timestamps_are_read_from_the_file(videos):
    frames, _, vfr = videos
    assert len(decode_frames(vfr, SIZE)) == len(frames)
    np.testing.assert_allclose(frame_times(vfr), VFR_TIMES_MS, atol=1.0)


def test_vfr_seek_by_index_is_checked_not_trusted(videos):
    """OpenCV lands on frames 24, 28, 38 for 30, 40, 48 in this file; the decoder must notice and read through."""
    frames, _, vfr = videos
    wanted = np.array([5, 12, 30, 40, 48])
    decoded, _ = decode_selected(vfr, SIZE, lambda n: wanted, seek_gap=0)
    assert _identify(np.stack([decoded[i] for i in wanted]), frames) == wanted.tolist()


@pytest.mark.parametrize("cached", [False, True])
def test_time_sampling_picks_frames_by_timestamp(videos, tmp_path, cached):
    frames, _, vfr = videos
    spec = ClipSpec(num_frames=8, size=SIZE, frame_stride=2, sample_fps=10.0)  # a frame every 200 ms of video
    cache = FlowCache(str(tmp_path / "cache"), 1 << 24, spec.flow_params()) if cached else None
    rgb, flow = ClipLoader(spec, cache).load(vfr, EvalView())
    picked = _identify(rgb, frames)
    # timeline 0..1900 ms, ticks every 100 ms; the centred 8 ticks 2 apart are 200, 400, ... 1600 ms
    assert VFR_TIMES_MS[picked].tolist() == [200, 400, 600, 800, 1000, 1200, 1400, 1600]
    by_index = _identify(ClipLoader(ClipSpec(num_frames=8, size=SIZE, frame_stride=2)).load(vfr, EvalView())[0], frames)
    assert by_index == list(range(17, 33, 2))  # 25 ms apart in the fast part: what time sampling avoids
    if cached:  # the cache holds flow of every frame pair; picked by time, it is the online flow exactly
        online = ClipLoader(spec).load(vfr, EvalView())
        assert np.array_equal(rgb, online[0]) and np.array_equal(flow, online[1])


def test_time_sampling_with_a_seed_stays_on_the_tick_grid(videos):
    frames, _, vfr = videos
    loader = ClipLoader(ClipSpec(num_frames=4, size=SIZE, frame_stride=3, sample_fps=10.0))
    for seed in range(3):
        times = VFR_TIMES_MS[_identify(loader.load(vfr, TrainView(seed))[0], frames)]
        assert np.all(times % 100 == 0) and np.allclose(np.diff(times), 300), times  # every 3 ticks of 100 ms
