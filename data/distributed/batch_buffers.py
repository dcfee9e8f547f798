"""Batch arrays for the tf.data bridge: 64-byte aligned, and reused once nothing outside this module holds them.

The trainer process fills a new local batch (megabytes) every step. TensorFlow sets glibc's mmap threshold to
128 KiB when it builds a `from_generator` kernel (its memory patch for Python 3.11), so every such array was a
fresh mapping whose pages faulted in as the clips were copied into it, and were given back when it was freed:
0.2 ms of CPU per 112 px clip, more than the batching itself (benchmarks/data_pipeline.py's breakdown).
"""

from __future__ import annotations

import sys

import numpy as np

BATCHES_BEYOND_PREFETCH = 3  # batches alive beside tf.data's prefetched ones: the step's, the one being filled and
#                              the generator's


def arrays_to_keep(prefetch: int) -> int:
    """Arrays kept per process with `prefetch` batches prefetched (data.prefetch): each live batch's rgb and flow,
    and room for one more pair of another shape (an evaluation's other batch size)."""
    return 2 * (prefetch + BATCHES_BEYOND_PREFETCH) + 2


KEEP = arrays_to_keep(2)  # data.prefetch's default


def aligned_empty(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """An uninitialised uint8 array whose data starts on an `align`-byte boundary: tf.data's from_generator
    wraps such an array as a tensor in place, and copies any other (at about a tenth of np.copy's speed:
    benchmarks/bridge.py)."""
    return _new_entry(shape, align)[1]


def _references(entry: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    """References to an entry's owner array and to its aligned view. Anything else that holds the batch (a
    tensor made from it in place, a view of it, a list of batches) adds one to either: numpy's views hold the
    array that owns the memory, and TensorFlow holds the array it wraps."""
    return sys.getrefcount(entry[0]), sys.getrefcount(entry[1])


def _new_entry(shape: tuple[int, ...], align: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(the array that owns the memory, its aligned view of `shape`)."""
    size = int(np.prod(shape))
    owner = np.empty(size + align, np.uint8)
    start = -owner.ctypes.data % align
    return owner, owner[start : start + size].reshape(shape)


UNHELD = _references(_new_entry((1,)))  # the counts of an entry nothing else holds, on this interpreter


class BatchBuffers:
    """Hands out aligned uint8 arrays, reusing a spare one of the same shape that nothing else holds any more."""

    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._spares: list[tuple[np.ndarray, np.ndarray]] = []  # (owner, aligned view)

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        unheld = [i for i in range(len(self._spares)) if _references(self._spares[i]) == UNHELD]
        for index in unheld:
            if self._spares[index][1].shape == shape:
                return self._spares[index][1]
        entry = _new_entry(shape)
        if len(self._spares) < self.keep:
            self._spares.append(entry)
        elif unheld:  # full: an unheld spare of another shape (the previous phase's) makes room
            self._spares[unheld[0]] = entry
        return entry[1]


BATCH_BUFFERS = BatchBuffers()  # one per process: the trainer's epochs and phases share it
