"""Shared-memory slots: each call's clips in their own aligned place, memory reserved up front, no file left behind
(even by a killed process), a missing /dev/shm reported instead of failing."""

import logging
import os
import signal
import subprocess
import sys

import numpy as np

from twostream.data.distributed import shared_slots
from twostream.data.distributed.shared_slots import SlotLayout

LAYOUT = SlotLayout(slots=3, clips=2, rgb_shape=(4, 9, 9, 3), flow_shape=(4, 9, 9, 2))  # odd sizes: padding shows


def test_slots_and_their_parts_are_aligned_and_apart(tmp_path):
    slot_file = shared_slots.create(LAYOUT, str(tmp_path))
    assert slot_file is not None and os.path.getsize(slot_file.path) == LAYOUT.file_bytes()  # reserved up front
    arrays = [slot_file.arrays(index, LAYOUT.clips) for index in range(LAYOUT.slots)]
    for value, (rgb, flow) in enumerate(arrays, 1):
        assert rgb.shape == (2, *LAYOUT.rgb_shape) and flow.shape == (2, *LAYOUT.flow_shape)
        assert rgb.ctypes.data % 64 == 0 and flow.ctypes.data % 64 == 0
        rgb[:], flow[:] = value, 10 * value
    # another mapping of the file (an actor's) reads what this one wrote, slot by slot, nothing overwritten
    other = shared_slots.SlotFile(slot_file.path, LAYOUT)
    for value in range(1, LAYOUT.slots + 1):
        rgb, flow = other.arrays(value - 1, LAYOUT.clips)
        assert (rgb == value).all() and (flow == 10 * value).all()
    first_clip, _ = other.arrays(1, 1)  # a call of fewer clips than the slot holds: its first ones
    assert first_clip.shape == (1, *LAYOUT.rgb_shape) and (first_clip == 2).all()


def test_nothing_is_left_in_the_folder_even_by_a_killed_process(tmp_path):
    slot_file = shared_slots.create(LAYOUT, str(tmp_path))
    assert slot_file is not None and os.listdir(tmp_path) == []  # unlinked at once, opened through /proc
    assert slot_file.path == f"/proc/{os.getpid()}/fd/{os.path.basename(slot_file.path)}"
    code = (
        "import os, signal, sys; from twostream.data.distributed import shared_slots; "
        "from twostream.data.distributed.shared_slots import SlotLayout; "
        f"f = shared_slots.create({LAYOUT!r}, sys.argv[1]); f.arrays(0, 1)[0][:] = 1; "
        "print(len(os.listdir(sys.argv[1])), flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL and killed.stdout.split() == ["0"], killed.stderr
    assert os.listdir(tmp_path) == []


def test_no_room_is_a_warning_and_no_slot_file(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert shared_slots.create(LAYOUT, str(tmp_path / "missing")) is None
    assert "Ray's object store" in caplog.text and "--shm-size" in caplog.text
    opened: dict = {}
    ref = shared_slots.SlotRef(str(tmp_path / "gone"), LAYOUT, 0)
    assert shared_slots.open_ref(ref, opened) is None and opened == {}  # the actor's side: returns its clips


def test_writes_through_one_mapping_are_seen_by_a_process_that_maps_it(tmp_path):
    slot_file = shared_slots.create(LAYOUT, str(tmp_path))
    rgb, flow = slot_file.arrays(2, 2)
    rgb[:], flow[:] = 7, 9
    code = (
        "import sys; from twostream.data.distributed.shared_slots import SlotFile, SlotLayout; "
        f"rgb, flow = SlotFile(sys.argv[1], {LAYOUT!r}).arrays(2, 2); print(int(rgb.sum()), int(flow.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code, slot_file.path], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(7 * rgb.size), str(9 * flow.size)]
    assert np.all(rgb == 7)


def test_calls_default_to_about_32_mib_of_clips():
    from twostream.data.decode.clip_spec import ClipSpec

    assert shared_slots.clips_per_call(ClipSpec(num_frames=8, size=112)) == 32  # 0.48 MiB a clip
    assert shared_slots.clips_per_call(ClipSpec(num_frames=8, size=224)) == 16  # 1.9 MiB
    assert shared_slots.clips_per_call(ClipSpec(num_frames=32, size=720)) == 1  # bigger than a call: one
    assert shared_slots.clips_per_call(ClipSpec(num_frames=8, size=112), configured=5) == 5
