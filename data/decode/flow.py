"""Optical flow between consecutive frames (OpenCV DIS by default); stored as uint8 in the format of
data/decode/flow_format.py."""

from __future__ import annotations

import cv2
import numpy as np

from twostream.data.decode.clip_spec import CONTRIB_METHODS, DIS_PRESETS, FLOW_METHODS
from twostream.data.decode.flow_format import dequantize, quantize  # noqa: F401  (re-exported: flow's callers)

# preset name -> OpenCV's constant (cv2.DISOPTICAL_FLOW_PRESET_FAST for "fast")
DIS_PRESET_CODES = {name: getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name.upper()}") for name in DIS_PRESETS}


def available_methods() -> tuple[str, ...]:
    """The flow methods this OpenCV build provides (the contrib ones only where cv2.optflow exists)."""
    optflow = getattr(cv2, "optflow", None)
    return ("dis", "farneback") + tuple(name for name, factory in CONTRIB_METHODS.items() if hasattr(optflow, factory))


def check_method(method: str, dis_preset: str = "fast") -> None:
    """Raises ValueError naming the problem and the fix when `method` (or its DIS preset) cannot run here."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}; choose one of {FLOW_METHODS}")
    if method == "dis" and dis_preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {dis_preset!r}; choose one of {DIS_PRESETS}")
    if method not in available_methods():
        raise ValueError(
            f"flow method {method!r} needs cv2.optflow, which this OpenCV lacks: pip install "
            "opencv-contrib-python-headless (after pip uninstall opencv-python-headless: the two "
            f"must not be installed together), or use one of {available_methods()}"
        )


class FlowEngine:
    """Computes flow fields (H, W, 2), in pixels per frame, with one reusable OpenCV estimator."""

    def __init__(self, method: str = "dis", dis_preset: str = "fast"):
        check_method(method, dis_preset)
        self.method = method
        if method == "dis":
            self._estimator = cv2.DISOpticalFlow.create(DIS_PRESET_CODES[dis_preset])
        elif method in CONTRIB_METHODS:
            self._estimator = getattr(cv2.optflow, CONTRIB_METHODS[method])()

    def pair(self, previous_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        if self.method == "farneback":
            # flow None (OpenCV allocates the output) is valid; OpenCV's stubs type that argument as non-optional
            return cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
                previous_gray,
                next_gray,
                None,
                pyr_scale=0.5,
                levels=3,
                winsize=15,
                iterations=3,
                poly_n=5,
                poly_sigma=1.2,
                flags=0,
            )
        # flow None here too: the same non-optional output argument in OpenCV's stubs
        return self._estimator.calc(previous_gray, next_gray, None)  # type: ignore[call-overload]

    def between_frames(self, rgb_frames: np.ndarray) -> np.ndarray:
        """Flow between each pair of consecutive frames: (T, H, W, 3) uint8 -> (T-1, H, W, 2) float32."""
        gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in rgb_frames]
        return np.stack([self.pair(a, b) for a, b in zip(gray[:-1], gray[1:])]).astype(np.float32)
