"""Turns one clip record into the two stream inputs: uint8 RGB frames and uint8 quantised flow.

Per video: frames cropped to the record's region of interest (data/decode/boxes.py; the full frame without one) at
native resolution, resized to their base resolution (data/decode/transforms.py), flow computed there (each frame
pair with the first frame's box, so the crop's own motion adds none). Per clip: frames sampled, a Window cut
from both streams alike (random at training, crop k of N at evaluation), then data/decode/augment.py.
"""

from __future__ import annotations

import os

import numpy as np

from twostream.data.decode import augment, transforms
from twostream.data.decode.allocator import keep_freed_buffers
from twostream.data.decode.boxes import Track, region_boxes
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.flow import FlowEngine, quantize
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.frame_index import FrameIndexes
from twostream.data.decode.sampling import EvalView, Placement, TrainView, View, sample_by_time, sample_frames
from twostream.data.decode.video import (
    VideoError,
    build_index,
    decode_by_time,
    decode_index,
    decode_selected,
    iter_frames,
)


class ClipLoader:
    """Decodes a clip and computes (or reads cached) flow; one instance per worker (it holds the estimator).

    Frame indexes (where each frame and keyframe is) are kept in memory, and beside the flow cache when there is one.
    """

    def __init__(self, spec: ClipSpec, cache: FlowCache | None = None):
        self.spec, self.cache = spec, cache
        keep_freed_buffers()  # this process decodes: reuse freed frame buffers (data/decode/allocator.py)
        FlowEngine(spec.flow_method, spec.dis_preset)  # an unknown or unavailable method fails here, at start
        self.indexes = FrameIndexes(os.path.join(cache.folder, "index") if cache is not None else None)

    def _choose(self, placement: Placement):
        """Picks the clip's frames: from the frame count, or (sample_fps > 0) from the frame timestamps."""
        spec = self.spec

        def by_index(num_frames: int) -> np.ndarray:
            return sample_frames(num_frames, spec.num_frames, spec.sampling, spec.frame_stride, placement)

        if spec.sample_fps > 0:
            return lambda timestamps_ms: sample_by_time(timestamps_ms, spec.sample_fps, by_index)
        return by_index

    def _decode(self, path: str, choose, with_successors: bool) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
        """Decodes the chosen frames (and, for online flow, each one's successor) at native resolution.

        Returns ({index: RGB frame}, the chosen indices in clip order, the number of frames in the video).
        """
        chosen: list[np.ndarray] = []

        def wanted(frame_count_or_times) -> np.ndarray:
            chosen[:] = [choose(frame_count_or_times)]  # decode_selected may choose again from the true count
            return np.concatenate([chosen[0], chosen[0] + 1]) if with_successors else chosen[0]

        decode = decode_by_time if self.spec.sample_fps > 0 else decode_selected
        frames, count = decode(path, None, wanted, indexes=self.indexes)
        return frames, chosen[0], count

    def load(
        self, path: str, view: View, track: Track | None = None, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The clip `view` asks for: a TrainView's seed draws its frames, crop and augmentation; an EvalView is the
        same clip every time (clip k of N in time, crop k of M in space). `track`: the video's region of interest.
        `out`: (rgb, flow) arrays of the clip's shapes to write it into (a decode actor's shared-memory slot), which
        spares the copy a returned clip would need there."""
        rgb, flow = self._cut(path, view, track)
        if out is None:
            return np.ascontiguousarray(rgb), np.ascontiguousarray(flow)
        np.copyto(out[0], rgb)
        np.copyto(out[1], flow)
        return out

    def _cut(self, path: str, view: View, track: Track | None) -> tuple[np.ndarray, np.ndarray]:
        """`load`'s clip as views where no transform needed a copy (a crop of the decoded frames)."""
        # one generator for the whole training clip: frames, window and augmentation draw from it in that order
        placement = np.random.default_rng(view.seed) if isinstance(view, TrainView) else view
        if self.cache is not None:
            rgb, flow = self._load_cached(path, placement, track)
        else:
            rgb, flow = self._load_online(path, placement, track)
        base, spec = rgb.shape[1:3], self.spec
        if isinstance(placement, EvalView):
            return transforms.apply(rgb, flow, transforms.eval_window(base, spec.size, placement))
        rgb, flow = transforms.apply(rgb, flow, transforms.train_window(placement, base, spec.size, spec.scale_jitter))
        if spec.crop_scale_min < 1.0 or spec.flip:
            rgb, flow = augment.apply(rgb, flow, augment.draw(placement, spec.size, spec.crop_scale_min, spec.flip))
        return rgb, flow

    @staticmethod
    def regions(track: Track | None, height: int, width: int):
        """box(i) -> (x0, y0, x1, y1) of frame i's region (the full frame without a track), native pixels."""
        if track is None:
            return lambda i: (0, 0, width, height)
        boxes = region_boxes(track, height, width)
        return lambda i: tuple(int(v) for v in boxes[min(i, len(boxes) - 1)])

    def _base(self, frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """A native frame cut to `box` and resized to the base resolution."""
        x0, y0, x1, y1 = box
        region = frame[y0:y1, x0:x1]
        return transforms.resize(region, self.spec.base_shape(*region.shape[:2]))

    def _flow(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Flow from one base frame to the next, with an estimator of its own: OpenCV's DIS, reused, gives at some
        widths (40-45 px, not 32 or 48) results that depend on the pairs it saw before, so a clip's flow would
        differ between online and cached reads. A new estimator costs ~50 us against ~2 ms for the flow."""
        return FlowEngine(self.spec.flow_method, self.spec.dis_preset).between_frames(np.stack([first, second]))[0]

    def _load_online(self, path: str, placement: Placement, track: Track | None):
        """Decodes only the sampled frames and their successors, and computes flow for those pairs."""
        frames, indices, _ = self._decode(path, self._choose(placement), with_successors=True)
        return self._with_flow(frames, indices, self.regions(track, *frames[int(indices[0])].shape[:2]))

    def _with_flow(self, frames, indices: np.ndarray, box):
        """(base RGB of frames[i], quantised flow from frames[i] to frames[i + 1]) for each i of `indices`."""
        pairs = [
            (self._base(frames[int(i)], box(int(i))), self._base(frames[int(i) + 1], box(int(i)))) for i in indices
        ]
        flow = np.stack([self._flow(*pair) for pair in pairs])
        return np.stack([first for first, _ in pairs]), quantize(flow, self.spec.flow_bound)

    def window_frames(self) -> int:
        """Consecutive frames one clip takes from a live feed: its span, plus the successor of its last frame."""
        return self.spec.frame_stride * (self.spec.num_frames - 1) + 2

    def window_hop(self, hop: int = 0) -> int:
        """Frames from one window to the next: `hop`, or half a window when 0."""
        return hop or max(1, self.window_frames() // 2)

    def from_frames(self, frames, track: Track | None = None, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation clip (centred, the centre crop) of consecutive native RGB frames held in memory, e.g. the
        last window_frames() of a live feed, sampled by frame count as a video of that many frames would be (a feed
        has no index: clip.sample_fps is not applied); flow computed here. `track`: the video's region of interest,
        `first` the video's frame number of frames[0] (the track's boxes are by frame number)."""
        view, spec = EvalView(), self.spec
        indices = sample_frames(len(frames), spec.num_frames, spec.sampling, spec.frame_stride, view)
        box = self.regions(track, *frames[0].shape[:2])
        rgb, flow = self._with_flow(frames, indices, lambda i: box(first + i))
        rgb, flow = transforms.apply(rgb, flow, transforms.eval_window(rgb.shape[1:3], self.spec.size, view))
        return np.ascontiguousarray(rgb), np.ascontiguousarray(flow)

    def _load_cached(self, path: str, placement: Placement, track: Track | None):
        """Flow from the cache (filled with the whole video's flow on a miss); RGB decoded at the same frames."""
        flow_all = self.video_flow(path, track)
        self.agree_with_cache(path, len(flow_all) + 1)
        choose = self._choose(placement)
        if self.spec.sample_fps <= 0:
            fixed = choose(len(flow_all) + 1)  # the frame count the cached flow was decoded from
            choose = lambda hint: fixed  # noqa: E731
        frames, indices, _ = self._decode(path, choose, with_successors=False)
        if any(int(i) not in frames for i in indices) or int(np.max(indices)) >= len(flow_all):
            raise VideoError(
                f"{path}: frames {indices.tolist()} not decodable although flow was cached for "
                f"{len(flow_all) + 1} frames; if the file changed in place, clear the flow cache"
            )
        box = self.regions(track, *frames[int(indices[0])].shape[:2])
        rgb = np.stack([self._base(frames[int(i)], box(int(i))) for i in indices])
        return rgb, np.asarray(flow_all[indices])

    def sequential_videos(self) -> int:
        """Videos this loader found must be read from the start (their seeks disagree with such a read)."""
        return len(self.indexes.sequential_paths)

    def read_sequentially(self, path: str) -> bool:
        """Whether this loader found that `path` must be read from the start."""
        return os.path.abspath(path) in self.indexes.sequential_paths

    def agree_with_cache(self, path: str, frame_count: int) -> None:
        """A frame index read from packets that counts other frames than the cached flow's is rebuilt by decoding."""
        index = self.indexes.get(path, build_index)
        if len(index) != frame_count and not index.decoded:
            self.indexes.replace(path, decode_index(path))

    def video_flow(self, path: str, track: Track | None = None) -> np.ndarray:
        """Quantised flow of every consecutive frame pair of the video, from the cache or computed and stored."""
        variant = track.digest() if track is not None else ""
        cached = self.cache.get(path, variant) if self.cache is not None else None
        if cached is not None:
            return cached
        flow = self._video_flow(path, track)
        if self.cache is not None:
            self.cache.put(path, flow, variant)
        return flow

    def _video_flow(self, path: str, track: Track | None) -> np.ndarray:
        """Reads the video through once (two native frames in memory), flow of each pair at the base resolution."""
        fields, previous, box = [], None, None
        for position, frame in enumerate(iter_frames(path, indexes=self.indexes)):  # also stores the frame index
            if box is None:
                box = self.regions(track, *frame.shape[:2])
            if previous is not None:
                pair = self._base(previous, box(position - 1)), self._base(frame, box(position - 1))
                fields.append(quantize(self._flow(*pair), self.spec.flow_bound))
            previous = frame
        if len(fields) < 1:
            decoded = 0 if previous is None else 1
            raise VideoError(f"{path}: only {decoded} frame decoded; optical flow needs at least 2")
        return np.stack(fields)
