"""The uint8 flow format, in one place: quantise, dequantise, and the exact operations on quantised flow.

A flow component f (pixels per frame) is clipped to [-bound, bound] and stored as one byte,
q = round((f + bound) * 255 / (2 bound)). So q / 127.5 - 1 is the flow in units of the bound, in [-1, 1],
which is what the models compute in-graph (models/layers.py) and the TensorBoard images show
(trainer/video/visualize.py). Plain arithmetic only (NumPy arrays and Keras tensors alike); no OpenCV, so the
models may import it.
"""

from __future__ import annotations

import numpy as np

LEVELS = 255  # the largest stored value; 0 stores -bound, LEVELS stores +bound
ZERO = LEVELS / 2.0  # 127.5: the stored value of zero flow (between two bytes: zero flow rounds to 128)


def quantize(flow: np.ndarray, bound: float) -> np.ndarray:
    """Clips flow to [-bound, bound] pixels and maps it linearly onto 0..255 (1 byte per component)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (LEVELS / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantize(quantized: np.ndarray, bound: float) -> np.ndarray:
    """Inverse of quantize (up to its rounding step of 2*bound/255 pixels), float32 pixels per frame."""
    return to_unit(quantized.astype(np.float32)) * bound


def to_unit(quantized):
    """Stored values (as floats: an array or a tensor) -> flow in units of the bound, in [-1, 1]."""
    return quantized * (1.0 / ZERO) - 1.0


def negate(quantized: np.ndarray) -> np.ndarray:
    """The stored value of -f given that of f; exact (a horizontal flip negates horizontal flow)."""
    return LEVELS - quantized


def scale(quantized: np.ndarray, factor: float) -> np.ndarray:
    """The stored value of factor * f (clipped at the bound), e.g. motion magnified by resizing a crop up."""
    scaled = (quantized.astype(np.float32) - ZERO) * factor + ZERO
    return np.clip(np.rint(scaled), 0, LEVELS).astype(np.uint8)
