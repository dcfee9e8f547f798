"""Batch arrays are reused once nothing holds them, and never while anything does (a tensor, a view, a list)."""

import numpy as np
import pytest

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.distributed.batch_buffers import BatchBuffers


def test_an_array_is_reused_only_when_nothing_else_holds_it():
    buffers = BatchBuffers()
    first = buffers.take((4, 5))
    assert first.ctypes.data % 64 == 0
    second = buffers.take((4, 5))
    assert second.ctypes.data != first.ctypes.data  # `first` is held here
    address = first.ctypes.data
    del first
    assert buffers.take((4, 5)).ctypes.data == address  # released: the same memory again
    part = second[1:]  # a view holds the memory too
    address = second.ctypes.data
    del second
    assert buffers.take((4, 5)).ctypes.data != address
    del part
    assert buffers.take((3, 5)).ctypes.data != address  # free, but another shape gets its own
    kept = [buffers.take((4, 5)) for _ in range(20)]  # more held than it keeps: new arrays, all distinct
    assert len({a.ctypes.data for a in kept}) == 20
    assert buffers.take((2, 2)).ctypes.data not in {a.ctypes.data for a in kept}
    del kept  # every spare now unheld, of another shape: a new shape takes their room, and is then reused
    address = buffers.take((7, 7)).ctypes.data
    assert buffers.take((7, 7)).ctypes.data == address


@pytest.mark.tensorflow
def test_batches_held_as_tensors_stay_intact_and_released_ones_are_reused():
    from twostream.data.distributed.bridge import to_dataset

    buffers = BatchBuffers()
    spec = ClipSpec(num_frames=2, size=32)
    addresses = []

    def batches(count):
        for k in range(count):
            rgb, flow = buffers.take((4, *spec.rgb_shape)), buffers.take((4, *spec.flow_shape))
            rgb[...], flow[...] = k, k
            addresses.append(rgb.ctypes.data)
            yield rgb, flow, np.full(4, k, np.int32), np.ones(4, np.float32), np.zeros((4, 2), np.int32)

    held = list(to_dataset(batches(30), spec, 4))  # tf.data wraps each batch in place: every one still held
    for k, (inputs, labels, _) in enumerate(held):
        assert int(labels[0]) == k and set(np.unique(inputs["rgb"])) == {k} and set(np.unique(inputs["flow"])) == {k}
    assert len(set(addresses)) == 30
    del held, inputs, labels
    addresses.clear()
    for k, (inputs, _, _) in enumerate(to_dataset(batches(100), spec, 4)):  # each dropped after use, as a step does
        assert set(np.unique(inputs["rgb"])) == {k}
    assert len(set(addresses)) <= 6  # prefetch (2), this loop's, the one being filled, the generator's
