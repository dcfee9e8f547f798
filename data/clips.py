"""Turns one clip record into the two stream inputs: uint8 RGB frames and uint8 quantised flow."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twostream.data.flow import FlowEngine, quantize
from twostream.data.video import clip_indices, decode_frames


@dataclass(frozen=True)
class ClipSpec:
    num_frames: int = 8         # RGB frames per clip; one flow field per frame (to the next frame)
    size: int = 64              # frames are resized to size x size pixels
    flow_method: str = "dis"    # dis | farneback | tvl1
    dis_preset: str = "fast"    # ultrafast | fast | medium
    flow_bound: float = 20.0    # flow is clipped to +-bound pixels before uint8 quantisation

    @property
    def rgb_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 3)

    @property
    def flow_shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.size, self.size, 2)


class ClipLoader:
    """Decodes a clip and computes its flow; one instance per worker (it holds the flow estimator)."""

    def __init__(self, spec: ClipSpec):
        self.spec = spec
        self.flow = FlowEngine(spec.flow_method, spec.dis_preset)

    def load(self, path: str, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        """seed=None takes the centred window (evaluation); an int seeds a random window (training)."""
        frames = decode_frames(path, self.spec.size)
        rng = None if seed is None else np.random.default_rng(seed)
        window = frames[clip_indices(len(frames), self.spec.num_frames + 1, rng)]
        flow = quantize(self.flow.clip(window), self.spec.flow_bound)
        return window[:-1], flow
