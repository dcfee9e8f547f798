"""Optical flow between consecutive frames (OpenCV DIS by default), clipped and quantised to uint8."""
from __future__ import annotations

import cv2
import numpy as np

METHODS = ("dis", "farneback", "tvl1")
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class FlowEngine:
    """Computes flow fields (H, W, 2), in pixels per frame, with one reusable OpenCV estimator."""

    def __init__(self, method: str = "dis", dis_preset: str = "fast"):
        if method not in METHODS:
            raise ValueError(f"unknown flow method {method!r}; choose one of {METHODS}")
        if method == "dis" and dis_preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {dis_preset!r}; choose one of {sorted(DIS_PRESETS)}")
        self.method = method
        if method == "dis":
            self._estimator = cv2.DISOpticalFlow_create(DIS_PRESETS[dis_preset])
        elif method == "tvl1":
            if not hasattr(cv2, "optflow"):
                raise ValueError("flow method 'tvl1' needs cv2.optflow: pip install opencv-contrib-python-headless "
                                 "(in place of opencv-python-headless), or use flow_method 'dis'")
            self._estimator = cv2.optflow.DualTVL1OpticalFlow_create()

    def pair(self, previous_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        if self.method == "farneback":
            return cv2.calcOpticalFlowFarneback(previous_gray, next_gray, None, pyr_scale=0.5, levels=3,
                                                winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
        return self._estimator.calc(previous_gray, next_gray, None)

    def between_frames(self, rgb_frames: np.ndarray) -> np.ndarray:
        """Flow between each pair of consecutive frames: (T, H, W, 3) uint8 -> (T-1, H, W, 2) float32."""
        gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb_frames]
        return np.stack([self.pair(a, b) for a, b in zip(gray[:-1], gray[1:])]).astype(np.float32)


def quantize(flow: np.ndarray, bound: float) -> np.ndarray:
    """Clips flow to [-bound, bound] pixels and maps it linearly onto 0..255 (1 byte per component)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize(quantized: np.ndarray, bound: float) -> np.ndarray:
    """Inverse of quantize (up to its rounding step of 2*bound/255 pixels); the models do this in-graph."""
    return quantized.astype(np.float32) * (2.0 * bound / 255.0) - bound
