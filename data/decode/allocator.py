"""glibc's allocator told to keep freed buffers, so decoding reuses memory instead of faulting in fresh pages per frame.

By default glibc serves blocks of 128 KiB and more (a 224x224 RGB frame is 147 KiB) with mmap and gives them back
on free, and trims the heap's free top; its dynamic threshold only rises after such frees, so a process's cost
depends on what it allocated before. A fresh decoding process then spent 6 of its 16 CPU ms per 224 px clip in
the kernel, faulting pages in (benchmarks/allocator.py measures it).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20  # bytes: smaller blocks come from the heap (a 4K RGB frame is 24 MiB); glibc's maximum
TRIM_THRESHOLD = 128 << 20  # bytes of free heap top kept for reuse before any goes back to the system


def keep_freed_buffers() -> bool:
    """Sets both thresholds for this process; False where the C library has no mallopt (not glibc). Every
    ClipLoader calls it (two cheap calls), not once per process: a process forked from one that had TensorFlow
    reset them (it sets the mmap threshold to 128 KiB when it builds a `from_generator` kernel), or one that has
    built a generator since, gets them back."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
