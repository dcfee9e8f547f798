"""Clip assembly: seeking decode = full decode, sampling modes, one-frame and miscounted videos, augmentation, flow
cache."""

import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from twostream.data.decode import augment
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow import dequantize, quantize
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.sampling import EvalView, TrainView, sample_by_time, sample_frames
from twostream.data.decode.video import VideoError, decode_frames, decode_selected
from twostream.data.make.synthetic import random_texture, write_video

CODECS = [("mjpg", ".avi"), ("mp4v", ".mp4")]


def _video(folder, frames=40, ext=".avi", codec="mjpg", height=24, width=20):
    rng = np.random.default_rng(frames)
    path = os.path.join(str(folder), f"v{frames}{ext}")
    write_video(path, np.stack([random_texture(rng, height, width) for _ in range(frames)]), fps=10, codec=codec)
    return path


@pytest.mark.parametrize("codec,ext", CODECS)
def test_seeking_decode_matches_full_decode(tmp_path, codec, ext):
    path = _video(tmp_path, 40, ext, codec)
    full = decode_frames(path, 16)
    wanted = np.array([1, 3, 30, 31, 38])
    frames, count = decode_selected(path, 16, lambda n: wanted, seek_gap=0)  # seek_gap=0: seek every time
    assert count == 40 and sorted(frames) == wanted.tolist()
    for index in wanted:
        assert np.array_equal(frames[index], full[index]), index


def test_wrong_frame_count_falls_back_to_the_true_count(tmp_path):
    path = _video(tmp_path, 20)
    cut = str(tmp_path / "cut.avi")
    with open(path, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[: os.path.getsize(path) * 6 // 10])  # the header still promises 20 frames
    true_count = len(decode_frames(cut, 16))
    asked = []
    frames, count = decode_selected(cut, 16, lambda n: asked.append(n) or np.array([n - 2]))
    assert count == true_count < 20 and asked[-1] == true_count and list(frames) == [true_count - 2]


def test_one_frame_video_is_bad_input(tmp_path):
    path = _video(tmp_path, 1)
    with pytest.raises(VideoError, match="at least 2"):
        ClipLoader(ClipSpec(num_frames=4, size=16)).load(path, EvalView())


NOBODY = 65534  # the unprivileged uid/gid the permission check runs as when the tests run as root
READ_UNREADABLE = """
import sys
import numpy as np
from twostream.data.decode.video import VideoError, decode_selected
try:
    open(sys.argv[1], "rb")
    sys.exit("this process can read a file of mode 0: not an unprivileged user")
except PermissionError:
    pass
try:
    decode_selected(sys.argv[1], 16, lambda n: np.array([0]))
except VideoError as error:
    print(error)
"""


def test_unreadable_file_is_named(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unreadable")
    os.chmod(folder, 0o755)  # the file itself is what must be unreadable, not the way to it
    for parent in folder.parents:  # pytest's base folder is private to its user
        if str(parent).startswith(tempfile.gettempdir() + os.sep):
            os.chmod(parent, os.stat(parent).st_mode | 0o055)
    path = _video(folder, 5)
    os.chmod(path, 0)
    if os.geteuid() != 0:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files of mode 0 (a capability such as CAP_DAC_OVERRIDE)")
        with pytest.raises(VideoError, match="not readable"):
            decode_selected(path, 16, lambda n: np.array([0]))
        return
    # root reads anything: the same check runs as the unprivileged user `nobody` in a child process
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to run the check as another user")
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    done = subprocess.run(
        [*setpriv, sys.executable, "-c", READ_UNREADABLE, path], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{path}: not readable (check its permissions)"


def test_sampling_modes():
    assert sample_frames(11, 4, "dense").tolist() == [3, 4, 5, 6]  # centred, as before
    assert sample_frames(21, 3, "dense", stride=4).tolist() == [5, 9, 13]
    assert sample_frames(3, 5, "dense").tolist() == [0, 1, 0, 1, 0]  # short: looped
    views = [sample_frames(21, 4, "dense", placement=EvalView(v, 3))[0] for v in range(3)]
    assert views == [0, 8, 16]  # uniform eval views
    assert sample_frames(41, 4, "segments").tolist() == [5, 15, 25, 35]  # segment centres
    for seed in range(20):
        picks = sample_frames(41, 4, "segments", placement=np.random.default_rng(seed))
        assert all(10 * k <= p < 10 * (k + 1) for k, p in enumerate(picks))
    with pytest.raises(ValueError, match="clip.sampling"):
        sample_frames(10, 2, "magic")


def test_sample_by_time_picks_the_frame_on_screen_at_each_tick():
    times = np.array([0, 100, 200, 300, 325, 350, 375, 400, 425, 450, 475, 500], float)  # 10 fps, then 40 fps
    every_tick = lambda ticks: np.arange(ticks - 1)  # noqa: E731 - ticks with a successor, like sample_frames
    assert sample_by_time(times, 10.0, every_tick).tolist() == [0, 1, 2, 3, 7]  # 0, 100, 200, 300, 400 ms
    assert sample_by_time(times + 5000, 10.0, every_tick).tolist() == [0, 1, 2, 3, 7]  # times from the first
    centred = lambda ticks: sample_frames(ticks, 2, "dense", stride=2)  # noqa: E731
    assert times[sample_by_time(times, 20.0, centred)].tolist() == [100, 200]  # ticks 150, 250 ms of 0..500
    looped = sample_by_time(times, 1.0, lambda ticks: sample_frames(ticks, 3, "dense"))  # 0.5 s < one 1 s tick
    assert looped.tolist() == [0, 0, 0]  # shorter than a clip: looped, as by index


def test_sample_fps_is_a_config_key_and_must_not_be_negative():
    from twostream.trainer.config import load

    assert load(overrides=["clip.sample_fps=12.5"]).clip.sample_fps == 12.5
    assert ClipSpec().sample_fps == 0.0  # by frame index unless asked
    with pytest.raises(ValueError, match="clip.sample_fps must be at least 0, got -1.0"):  # a ConfigError
        load(overrides=["clip.sample_fps=-1"])


@pytest.mark.parametrize("sampling", ["dense", "segments"])
def test_loader_shapes_and_determinism(tmp_path, sampling):
    path = _video(tmp_path, 30)
    loader = ClipLoader(ClipSpec(num_frames=4, size=16, sampling=sampling, frame_stride=2, resize="squash"))
    rgb, flow = loader.load(path, TrainView(7))
    assert rgb.shape == (4, 16, 16, 3) and flow.shape == (4, 16, 16, 2) and flow.dtype == np.uint8
    again = loader.load(path, TrainView(7))
    assert np.array_equal(rgb, again[0]) and np.array_equal(flow, again[1])
    full = decode_frames(path, 16)
    picked = {}
    for seed in range(6):  # the clip is the seed's frames: a different seed gives a different clip
        frames = sample_frames(30, 4, sampling, stride=2, placement=np.random.default_rng(seed))
        assert np.array_equal(loader.load(path, TrainView(seed))[0], full[frames]), seed
        picked[tuple(frames.tolist())] = seed
    assert len(picked) > 1


@pytest.mark.parametrize(
    "spec",
    [
        ClipSpec(num_frames=4, size=16, short_side=20, flip=True, crop_scale_min=0.6),  # crop, then flip or resize
        ClipSpec(num_frames=4, size=16, scale_jitter=[18, 22]),  # rescaled before the crop
    ],
)
def test_a_clip_written_into_given_arrays_is_the_clip_returned(tmp_path, spec):
    """A decode actor has load write straight into its shared-memory slot: the same clip, at any view."""
    path, loader = _video(tmp_path, 30, height=24, width=32), ClipLoader(spec)
    for view in [*(TrainView(seed) for seed in range(8)), EvalView(1, 3, 2, 3)]:
        rgb, flow = loader.load(path, view)
        assert rgb.flags.c_contiguous and flow.flags.c_contiguous
        out = np.full((3, *spec.rgb_shape), 7, np.uint8), np.full((3, *spec.flow_shape), 7, np.uint8)
        loader.load(path, view, out=(out[0][1], out[1][1]))
        assert np.array_equal(out[0][1], rgb) and np.array_equal(out[1][1], flow), view
        assert (out[0][[0, 2]] == 7).all() and (out[1][[0, 2]] == 7).all()  # nothing beside its place


def test_flip_negates_horizontal_flow_exactly():
    flow = np.random.default_rng(0).uniform(-9, 9, size=(2, 8, 8, 2)).astype(np.float32)
    q = quantize(flow, 8.0)
    rgb = np.zeros((2, 8, 8, 3), np.uint8)
    _, flipped = augment.apply(rgb, q, augment.Augmentation(0, 0, 8, flip=True))
    expected = dequantize(q, 8.0)[:, :, ::-1] * np.array([-1, 1], np.float32)
    np.testing.assert_allclose(dequantize(flipped, 8.0), expected, atol=1e-5)


def test_crop_and_flip_are_the_same_for_both_streams():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    flow = np.full((3, 32, 32, 2), 128, np.uint8)
    flow[..., 0] = rgb[..., 0] // 4 + 96  # horizontal flow drawn like the red channel: easy to follow
    aug = augment.Augmentation(top=4, left=6, side=16, flip=True)
    out_rgb, out_flow = augment.apply(rgb, flow, aug)
    assert out_rgb.shape == rgb.shape and out_flow.shape == flow.shape
    source = cv2.resize(rgb[0, 4:20, 6:22], (32, 32), interpolation=cv2.INTER_LINEAR)[:, ::-1]
    assert np.array_equal(out_rgb[0], source)
    # the flow went through the same crop and flip: x flow mirrors the red channel, magnified x2, then negated
    predicted = 255 - np.clip(np.rint((source[..., 0] // 4 + 96 - 127.5) * 2 + 127.5), 0, 255)
    assert np.abs(out_flow[0, ..., 0].astype(int) - predicted).max() <= 2


def test_flow_cache_hits_and_atomic_bounded_storage(tmp_path):
    path = _video(tmp_path, 12)
    spec = ClipSpec(num_frames=4, size=16)
    cache = FlowCache(str(tmp_path / "cache"), max_bytes=1 << 20, params=spec.flow_params())
    cached, online = ClipLoader(spec, cache), ClipLoader(spec)
    first = cached.load(path, EvalView())
    assert cache.get(path) is not None and cache.get(path).shape == (11, 19, 16, 2)  # 24x20 frames, short side 16
    assert cache.total_bytes() <= 11 * 16 * 16 * 2 + 256  # 2 bytes per pixel per frame (+ .npy header)
    second = cached.load(path, EvalView())
    reference = online.load(path, EvalView())
    for a, b, c in zip(first, second, reference):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    os.utime(path, ns=(1, 1))  # the video changed: a new key, a miss
    assert cache.get(path) is None
    small = FlowCache(str(tmp_path / "small"), max_bytes=7000, params=spec.flow_params(), fmt="raw")  # sized bytes
    for frames in (10, 11, 12):
        small.put(_video(tmp_path, frames), np.zeros((frames - 1, 16, 16, 2), np.uint8))
    assert small.total_bytes() <= 7000 and len(small.entries()) < 3
    assert not [f for _, _, files in os.walk(tmp_path / "small") for f in files if f.endswith(".tmp")]
    stored = small.total_bytes()
    assert small.clear() == stored > 0 and small.total_bytes() == 0


def test_prepare_fills_the_cache_reports_bad_files_and_resumes(tmp_path):
    from twostream.data.make.prepare import prepare
    from twostream.data.manifest import load_manifest

    for label in ("a", "b"):
        os.makedirs(tmp_path / "d" / label)
        _video(tmp_path / "d" / label, 6 if label == "a" else 7)
    (tmp_path / "d" / "b" / "broken.avi").write_bytes(b"not a video")
    spec = ClipSpec(num_frames=2, size=16)
    cache = FlowCache(str(tmp_path / "d" / ".flow_cache"), 1 << 20, spec.flow_params())
    records = load_manifest(str(tmp_path / "d")).records
    first = prepare(records, spec, cache, progress=False)
    assert first["computed"] == 2 and len(first["failed"]) == 1 and "broken.avi" in first["failed"][0]
    again = prepare(records, spec, cache, progress=False)
    assert again["computed"] == 0 and again["cached"] == 2
