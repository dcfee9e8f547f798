"""Shared-memory slots for decode calls: an actor on the driver's Ray node writes a call's clips into a slot of a
/dev/shm file that the driver maps too, so the frames skip Ray's object store.

Through the object store one call's 8 MB of clips cost about 5 ms of CPU (the actor's copy into the store on the six
threads Ray starts for every buffer over 1 MiB, the raylet's store, the driver's get; the copies in and out
included) against about 2 ms through a slot (benchmarks/transport.py; benchmarks/data_pipeline.py compares the two
on the whole path). A slot holds one call's clips; DecoderPool hands a free slot out with each call, and takes it back
once the clips are read and no view of them is left (tf.data's tensors of a batch read in place).
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import sys
import uuid
import weakref
from dataclasses import dataclass

import numpy as np

from twostream.data.decode.clip_spec import ClipSpec

log = logging.getLogger(__name__)
SHM_FOLDER = "/dev/shm"
PREFIX = "twostream-slots-"  # the name a slot file has between its creation and its unlinking
ALIGN = 64  # bytes: each array of a slot starts on a cache line
# Beyond its calls in flight (data.calls_in_flight), an actor's slots hold the call being read into batches and the
# calls that tf.data's prefetched batches (data.prefetch) are views of (a batch of one call's clips is a view of its
# slot: EpochStream). A call that finds every slot in use takes the object store, as do the next phase's first calls,
# sent behind the current phase's last (EpochStream's `then`). In epochs read by a slow step (1 or 2 calls in flight,
# 1 to 3 batches prefetched, 0 to 2 batches a call), the fewest slots with which no call took the object store were
# calls_in_flight + 1 + ceil(prefetch / batches a call); a call of one batch once needed one more (when tf.data took
# each batch in), so slots_per_actor counts prefetch + 1 batches (tests/test_pipeline.py).
# data.clips_per_call 0: a call of about CALL_BYTES of clips, at most MAX_AUTO_CLIPS. Each call costs the driver about
# 2 ms of CPU: at 224 px its CPU per clip was 0.54-0.55 ms with 8 clips a call, 0.40-0.44 with 16 and 0.35-0.37 with
# 32, in two runs of benchmarks/data_pipeline.py (docs/data-performance.md). An actor's 5 slots (the defaults': 2
# batches a call) take 160 MiB then.
CALL_BYTES = 32 << 20
MAX_AUTO_CLIPS = 32  # more coarsens how an epoch spreads over actors; 64 at 112 px saved no CPU (data-performance)


def _padded(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def clips_per_call(spec: ClipSpec, configured: int = 0) -> int:
    """`configured` (data.clips_per_call), or for 0 as many clips of `spec` as make about CALL_BYTES (1 to 32)."""
    if configured:
        return configured
    return max(1, min(MAX_AUTO_CLIPS, CALL_BYTES // sum(SlotLayout.for_actor(spec, 1, 1).clip_bytes())))


def slots_per_actor(calls_in_flight: int, prefetch: int, clips_per_call: int, local_batch: int) -> int:
    """Slots one decode actor needs so that no call takes the object store: its `calls_in_flight`, the call being
    read, and the calls that the batches of `local_batch` clips made before it and still alive may be views of: the
    `prefetch` batches tf.data holds and the one it is taking in (none when a call is smaller than a batch: such
    batches are copies)."""
    batches_per_call = clips_per_call // local_batch
    ahead = -(-(prefetch + 1) // batches_per_call) if batches_per_call else 0
    return calls_in_flight + 1 + ahead


@dataclass(frozen=True)
class SlotLayout:
    """The shape of a slot file: `slots` slots, each `clips` clips of rgb then flow (uint8, one clip's shapes)."""

    slots: int
    clips: int
    rgb_shape: tuple[int, ...]
    flow_shape: tuple[int, ...]

    @classmethod
    def for_actor(cls, spec: ClipSpec, clips_per_call: int, slots: int) -> SlotLayout:
        """One decode actor's `slots` slots for calls of `clips_per_call` clips of `spec`."""
        return cls(slots, clips_per_call, spec.rgb_shape, spec.flow_shape)

    def clip_bytes(self) -> tuple[int, int]:
        """Bytes of one clip's rgb and of its flow (uint8)."""
        return math.prod(self.rgb_shape), math.prod(self.flow_shape)

    def part_bytes(self) -> tuple[int, int]:
        """Bytes of one slot's rgb and flow parts, each padded to ALIGN."""
        rgb, flow = self.clip_bytes()
        return _padded(self.clips * rgb), _padded(self.clips * flow)

    def file_bytes(self) -> int:
        return self.slots * sum(self.part_bytes())


@dataclass(frozen=True)
class SlotRef:
    """Slot `index` of the file at `path`: sent with each call, so an actor Ray restarted maps the file again."""

    path: str
    layout: SlotLayout
    index: int


class SlotFile:
    """A slot file mapped into this process: the driver's (from the descriptor it holds) or an actor's (opened by
    `path`, /proc/<driver pid>/fd/<descriptor>)."""

    def __init__(self, path: str, layout: SlotLayout, descriptor: int | None = None):
        self.path, self.layout = path, layout
        if descriptor is not None:
            memory = mmap.mmap(descriptor, layout.file_bytes())
        else:
            with open(path, "r+b") as file:  # the mapping outlives the descriptor
                memory = mmap.mmap(file.fileno(), layout.file_bytes())
        slot_bytes = sum(layout.part_bytes())
        # One array per slot: every view of a slot holds its array, so a slot's reference count says whether
        # anything (a tensor tf.data made of a batch in place) still reads it (`held`).
        self._slots = [np.frombuffer(memory, np.uint8, slot_bytes, index * slot_bytes) for index in range(layout.slots)]

    def arrays(self, index: int, clips: int) -> tuple[np.ndarray, np.ndarray]:
        """Slot `index`'s first `clips` clips, in place: rgb (clips, *rgb_shape) and flow (clips, *flow_shape)."""
        layout, slot = self.layout, self._slots[index]
        rgb_part, _ = layout.part_bytes()
        rgb_bytes, flow_bytes = (clips * part for part in layout.clip_bytes())
        rgb = slot[:rgb_bytes].reshape(clips, *layout.rgb_shape)
        flow = slot[rgb_part : rgb_part + flow_bytes].reshape(clips, *layout.flow_shape)
        return rgb, flow

    def held(self, index: int) -> bool:
        """Whether a view of slot `index` is alive anywhere in this process (numpy's views hold the slot's array)."""
        return _references(self._slots, index) > UNHELD

    def ref(self, index: int) -> SlotRef:
        return SlotRef(self.path, self.layout, index)


def _references(arrays: list[np.ndarray], index: int) -> int:
    return sys.getrefcount(arrays[index])


UNHELD = _references([np.empty(0)], 0)  # the count of a slot's array that nothing views, on this interpreter


def create(layout: SlotLayout, folder: str = SHM_FOLDER) -> SlotFile | None:
    """A new slot file, its memory reserved now (a full /dev/shm fails here, not as a SIGBUS at a write mid-epoch);
    None, with a warning, where there is no room for it. Its name is gone at once: actors open it through this
    process's descriptor, and its memory is freed when the last process that maps it ends, even a killed one."""
    path = os.path.join(folder, f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
    descriptor = None
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(path)
        os.posix_fallocate(descriptor, 0, layout.file_bytes())
        slot_file = SlotFile(f"/proc/{os.getpid()}/fd/{descriptor}", layout, descriptor)
    except OSError as error:
        if descriptor is not None:
            os.close(descriptor)
        log.warning(
            "no %.0f MiB for decoded clips in %s (%s): this actor's clips go through Ray's object store, which "
            "costs more CPU per clip; give %s more room (docker run --shm-size)",
            layout.file_bytes() / (1 << 20),
            folder,
            error.strerror or error,
            folder,
        )
        return None
    weakref.finalize(slot_file, os.close, descriptor)  # at the pool's shutdown, or at this process's exit
    return slot_file


def open_ref(ref: SlotRef, opened: dict[str, SlotFile]) -> SlotFile | None:
    """The actor's side: the file of `ref`, mapped once per actor (kept in `opened`); None where it cannot be
    opened (e.g. another user's Ray, or another /dev/shm): the call then returns its clips through the object store."""
    if ref.path not in opened:
        try:
            opened[ref.path] = SlotFile(ref.path, ref.layout)
        except (OSError, ValueError) as error:
            log.warning("cannot map %s (%s): clips go through Ray's object store", ref.path, error)
            return None
    return opened[ref.path]
