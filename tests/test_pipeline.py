"""The Ray pipeline: actors decode in order, bad clips are replaced and reported, tf.data gets static shapes."""
import os
import shutil

import numpy as np
import pytest

from twostream.data.actors import ClipRequest, DecoderPool
from twostream.data.clips import ClipSpec
from twostream.data.manifest import from_folder
from twostream.data.pipeline import DataError, EpochStream, to_dataset
from twostream.data.sharding import plan_epoch

SPEC = ClipSpec(num_frames=4, size=32, flow_bound=8.0)


@pytest.fixture(scope="module")
def pool(ray_session):
    pool = DecoderPool(SPEC, num_actors=2, clips_per_call=3)
    yield pool
    pool.shutdown()


def test_pool_returns_results_in_request_order(pool, tiny_dataset):
    records = from_folder(tiny_dataset).records[:7]
    results = list(pool.map(ClipRequest(r.path, seed=None) for r in records))
    assert len(results) == 7 and all(r.error is None for r in results)
    assert results[0].rgb.shape == SPEC.rgb_shape and results[0].flow.shape == SPEC.flow_shape
    # Same request twice gives the same clip: order is kept and evaluation clips are deterministic.
    again = list(pool.map([ClipRequest(records[5].path, None)]))[0]
    assert np.array_equal(again.rgb, results[5].rgb) and np.array_equal(again.flow, results[5].flow)


def test_bad_clips_are_replaced_counted_and_named(pool, tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    broken = sorted(os.listdir(root / "fake"))[:2]
    (root / "fake" / broken[0]).write_bytes(b"")                  # zero bytes
    (root / "fake" / broken[1]).write_bytes(b"garbage" * 100)     # not a video
    records = from_folder(str(root)).records
    plan = plan_epoch(len(records), 8, 0, 1, seed=0, epoch=0, train=True)
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=True, max_failed_fraction=0.2)
    batches = list(stream)
    assert len(batches) == plan.steps == 4
    assert all(b[0].shape == (8, *SPEC.rgb_shape) for b in batches)
    assert len(stream.report.failed) == 2 and stream.report.replaced == 2
    assert {os.path.basename(f.split(":")[0]) for f in stream.report.failed} == set(broken)


def test_too_many_failures_stop_with_the_file_names(pool, tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    for name in os.listdir(root / "real"):
        (root / "real" / name).write_bytes(b"")
    records = from_folder(str(root)).records
    plan = plan_epoch(len(records), 8, 0, 1, seed=0, epoch=0, train=True)
    with pytest.raises(DataError, match="real_"):
        list(EpochStream(records, pool, plan, seed=0, epoch=0, train=True, max_failed_fraction=0.1))


def test_tf_dataset_has_static_uint8_shapes(pool, tiny_dataset):
    records = from_folder(tiny_dataset).records
    plan = plan_epoch(len(records), 4, 1, 2, seed=0, epoch=0, train=False)
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=False)
    dataset = to_dataset(stream, SPEC, local_batch=2)
    assert dataset.element_spec[0]["rgb"].shape == (2, *SPEC.rgb_shape)
    batches = list(dataset)
    assert len(batches) == plan.steps
    assert batches[0][0]["flow"].dtype.name == "uint8"


def test_a_dead_actor_is_restarted_and_its_clips_resent(pool, tiny_dataset):
    import ray
    records = from_folder(tiny_dataset).records[:12]
    results = pool.map(ClipRequest(r.path, seed=None) for r in records)
    first = next(results)
    ray.kill(pool.actors[1], no_restart=False)   # as if its process crashed mid-epoch; Ray restarts it
    rest = list(results)
    assert first.error is None and len(rest) == 11 and all(r.error is None for r in rest)
    again = list(pool.map([ClipRequest(records[3].path, None)] * 4))   # both actors (one restarted) work
    assert all(np.array_equal(a.rgb, rest[2].rgb) for a in again)
