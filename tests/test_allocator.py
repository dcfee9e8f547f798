"""Decoding processes keep freed buffers: a clip's worth of frames allocated again costs no page faults."""

import subprocess
import sys

FRAME_LOOP = """
import resource, sys
import numpy as np
if sys.argv[1] == "kept":
    from twostream.data.decode.allocator import keep_freed_buffers
    assert keep_freed_buffers()
if sys.argv[1] == "loader after a reset":
    from twostream.data.decode.allocator import keep_freed_buffers
    from twostream.data.decode.clips import ClipLoader
    from twostream.data.decode.clip_spec import ClipSpec
    assert keep_freed_buffers()
    import ctypes
    ctypes.CDLL(None).mallopt(-3, 128 << 10)  # what TensorFlow's GeneratorDatasetOp does
    ClipLoader(ClipSpec(num_frames=2, size=16))
def clip():   # a clip's frames: 8 buffers of 1 MiB, written, held together, then freed together
    return [np.ones(1 << 20, np.uint8) for _ in range(8)]
for _ in range(3):
    clip()                                     # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    clip()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_clip(variant: str) -> float:
    done = subprocess.run([sys.executable, "-c", FRAME_LOOP, variant], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


def test_freed_frame_buffers_are_reused_not_faulted_in_again():
    assert _faults_per_clip("default") > 500  # glibc's defaults: the freed heap top is trimmed, faulted in again
    assert _faults_per_clip("kept") < 5


def test_every_clip_loader_keeps_freed_buffers_even_after_tensorflow_reset_them():
    # TensorFlow sets the mmap threshold to 128 KiB when it builds a from_generator kernel; a ClipLoader made
    # after that (in that process or a fork of it: a DataLoader's workers) sets it back.
    assert _faults_per_clip("loader after a reset") < 5
