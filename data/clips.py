"""Turns one clip record into the two stream inputs: uint8 RGB frames and uint8 quantised flow."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from twostream.data import augment
from twostream.data.flow import DIS_PRESETS, METHODS, FlowEngine, quantize
from twostream.data.flow_cache import FlowCache
from twostream.data.frame_index import FrameIndexes
from twostream.data.sampling import SAMPLING_MODES, sample_by_time, sample_frames
from twostream.data.video import VideoError, build_index, decode_by_time, decode_frames, decode_index, decode_selected


MIN_SIZE = 16   # pixels: OpenCV's DIS flow refuses frames smaller than 12 x 12


@dataclass(frozen=True)
class ClipSpec:
    """The `clip` config section; each field's metadata holds its accepted values (checked by trainer/config.py)."""
    num_frames: int = field(default=8, metadata={"min": 1})   # RGB frames per clip; one flow field per frame
    size: int = field(default=64, metadata={"min": MIN_SIZE})   # frames are resized to size x size pixels
    flow_method: str = field(default="dis", metadata={"one_of": METHODS})   # dis | farneback | tvl1
    dis_preset: str = field(default="fast", metadata={"one_of": tuple(DIS_PRESETS)})   # ultrafast | fast | medium
    flow_bound: float = field(default=20.0, metadata={"above": 0})   # flow clipped to +-bound px, then uint8
    # dense: num_frames frames `frame_stride` apart | segments: TSN, one per segment
    sampling: str = field(default="dense", metadata={"one_of": SAMPLING_MODES})
    # dense sampling: frames between sampled frames (flow is always to the next frame)
    frame_stride: int = field(default=1, metadata={"min": 1})
    # training: random crop of side size x U(this, 1), resized back (1.0 = off)
    crop_scale_min: float = field(default=1.0, metadata={"above": 0, "max": 1})
    flip: bool = False          # training: horizontal flip with probability 1/2 (negates horizontal flow)
    # 0: sample by frame index; >0: sample on the timeline resampled at this rate, from frame timestamps
    # (variable-frame-rate files), read from the frame index. Strides count ticks of 1/sample_fps s;
    # flow is still to the next decoded frame.
    sample_fps: float = field(default=0.0, metadata={"min": 0})

    @property
    def rgb_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 3)

    @property
    def flow_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 2)

    def flow_params(self) -> dict:
        """What changes a video's flow: the flow cache's key includes exactly these."""
        return {"method": self.flow_method, "preset": self.dis_preset, "bound": self.flow_bound, "size": self.size}


class ClipLoader:
    """Decodes a clip and computes (or reads cached) flow; one instance per worker (it holds the estimator).

    Frame indexes (where each frame and keyframe is) are kept in memory, and beside the flow cache when there is one.
    """

    def __init__(self, spec: ClipSpec, cache: FlowCache | None = None):
        self.spec, self.cache = spec, cache
        self.flow = FlowEngine(spec.flow_method, spec.dis_preset)
        self.indexes = FrameIndexes(os.path.join(cache.folder, "index") if cache is not None else None)

    def _choose(self, rng, view: int, views: int):
        """Picks the clip's frames: from the frame count, or (sample_fps > 0) from the frame timestamps."""
        spec = self.spec

        def by_index(num_frames: int) -> np.ndarray:
            return sample_frames(num_frames, spec.num_frames, spec.sampling, spec.frame_stride, rng, view, views)

        if spec.sample_fps > 0:
            return lambda timestamps_ms: sample_by_time(timestamps_ms, spec.sample_fps, by_index)
        return by_index

    def _decode(self, path: str, choose, with_successors: bool) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
        """Decodes the chosen frames (and, for online flow, each one's successor), by index or by time.

        Returns ({index: RGB frame}, the chosen indices in clip order, the number of frames in the video).
        """
        chosen = []

        def wanted(frame_count_or_times) -> np.ndarray:
            chosen[:] = [choose(frame_count_or_times)]   # decode_selected may choose again from the true count
            return np.concatenate([chosen[0], chosen[0] + 1]) if with_successors else chosen[0]

        decode = decode_by_time if self.spec.sample_fps > 0 else decode_selected
        frames, count = decode(path, self.spec.size, wanted, indexes=self.indexes)
        return frames, chosen[0], count

    def load(self, path: str, seed: int | None, view: int = 0, views: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """seed=None: deterministic view `view` of `views` (evaluation); an int seeds sampling and augmentation."""
        rng = None if seed is None else np.random.default_rng(seed)
        if self.cache is not None:
            rgb, flow = self._load_cached(path, rng, view, views)
        else:
            rgb, flow = self._load_online(path, rng, view, views)
        if rng is not None and (self.spec.crop_scale_min < 1.0 or self.spec.flip):
            rgb, flow = augment.apply(rgb, flow, augment.draw(rng, self.spec.size, self.spec.crop_scale_min,
                                                              self.spec.flip))
        return rgb, flow

    def _load_online(self, path: str, rng, view: int, views: int):
        """Decodes only the sampled frames and their successors, and computes flow for those pairs."""
        frames, indices, _ = self._decode(path, self._choose(rng, view, views), with_successors=True)
        rgb = np.stack([frames[int(i)] for i in indices])
        following = np.stack([frames[int(i) + 1] for i in indices])
        flow = np.stack([self.flow.between_frames(np.stack([a, b]))[0] for a, b in zip(rgb, following)])
        return rgb, quantize(flow, self.spec.flow_bound)

    def _load_cached(self, path: str, rng, view: int, views: int):
        """Flow from the cache (filled with the whole video's flow on a miss); RGB decoded at the same frames."""
        flow_all = self.video_flow(path)
        self.agree_with_cache(path, len(flow_all) + 1)
        choose = self._choose(rng, view, views)
        if self.spec.sample_fps <= 0:
            fixed = choose(len(flow_all) + 1)   # the frame count the cached flow was decoded from
            choose = lambda hint: fixed   # noqa: E731
        frames, indices, _ = self._decode(path, choose, with_successors=False)
        if any(int(i) not in frames for i in indices) or int(np.max(indices)) >= len(flow_all):
            raise VideoError(f"{path}: frames {indices.tolist()} not decodable although flow was cached for "
                             f"{len(flow_all) + 1} frames; if the file changed in place, clear the flow cache")
        return np.stack([frames[int(i)] for i in indices]), np.asarray(flow_all[indices])

    def agree_with_cache(self, path: str, frame_count: int) -> None:
        """A frame index read from packets that counts other frames than the cached flow's is rebuilt by decoding."""
        index = self.indexes.get(path, build_index)
        if len(index) != frame_count and not index.decoded:
            self.indexes.replace(path, decode_index(path))

    def video_flow(self, path: str) -> np.ndarray:
        """Quantised flow of every consecutive frame pair of the video, from the cache or computed and stored."""
        cached = self.cache.get(path) if self.cache is not None else None
        if cached is not None:
            return cached
        frames = decode_frames(path, self.spec.size, indexes=self.indexes)   # also stores its decoded frame index
        if len(frames) < 2:
            raise VideoError(f"{path}: only {len(frames)} frame decoded; optical flow needs at least 2")
        flow = quantize(self.flow.between_frames(frames), self.spec.flow_bound)
        if self.cache is not None:
            self.cache.put(path, flow)
        return flow
