"""The Ray pipeline: actors decode in order, bad clips are replaced and reported, tf.data gets static shapes."""

import functools
import logging
import mmap
import os
import shutil
import signal
import time

import numpy as np
import pytest

from twostream.data.decode.boxes import Track
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.sampling import EvalView, TrainView
from twostream.data.distributed import shared_slots
from twostream.data.distributed.actors import ClipRequest, DecoderPool
from twostream.data.distributed.batch_buffers import aligned_empty
from twostream.data.distributed.bridge import to_dataset
from twostream.data.distributed.pipeline import DataError, EpochStream, clip_seed
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.distributed.shared_slots import slots_per_actor
from twostream.data.manifest import from_folder

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`

SPEC = ClipSpec(num_frames=4, size=32, flow_bound=8.0)


@pytest.fixture(scope="module")
def pool(ray_session):
    pool = DecoderPool(SPEC, num_actors=2, clips_per_call=3)
    yield pool
    pool.shutdown()


def test_pool_returns_results_in_request_order(pool, tiny_dataset):
    records = from_folder(tiny_dataset).records[:7]
    results = list(pool.map(ClipRequest(r.path, EvalView()) for r in records))
    assert len(results) == 7 and all(r.error is None for r in results)
    assert results[0].rgb.shape == SPEC.rgb_shape and results[0].flow.shape == SPEC.flow_shape
    # Same request twice gives the same clip: order is kept and evaluation clips are deterministic.
    again = list(pool.map([ClipRequest(records[5].path, EvalView())]))[0]
    assert np.array_equal(again.rgb, results[5].rgb) and np.array_equal(again.flow, results[5].flow)


def test_one_call_returns_its_clips_as_one_batch_and_a_failed_clip_leaves_the_others(pool, tiny_dataset, tmp_path):
    records = from_folder(tiny_dataset).records[:3]
    broken = str(tmp_path / "broken.avi")
    open(broken, "wb").close()
    requests = [
        ClipRequest(records[0].path, EvalView()),
        ClipRequest(broken, EvalView()),
        ClipRequest(records[1].path, EvalView()),
    ]
    import ray

    batch = ray.get(pool.actors[0].load.remote(requests))
    assert batch.rgb.shape == (3, *SPEC.rgb_shape) and batch.flow.shape == (3, *SPEC.flow_shape)
    assert batch.errors[0] is None and batch.errors[2] is None and batch.errors[1].startswith(broken)
    assert not batch.rgb[1].any() and batch.paths == [r.path for r in requests]
    results = list(pool.map(requests + [ClipRequest(records[2].path, EvalView())]))  # 3 clips per call: two calls
    assert [r.path for r in results] == [r.path for r in requests] + [records[2].path]
    assert [r.error is None for r in results] == [True, False, True, True] and results[1].rgb is None
    loader = ClipLoader(SPEC)
    for result, record in zip([results[0], results[2], results[3]], records):
        assert np.array_equal(result.rgb, loader.load(record.path, EvalView())[0])


def _in_shared_memory(array: np.ndarray) -> bool:
    """Whether `array` is a view into a mapped file (a slot), not memory of its own."""
    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap)


def test_clips_come_through_shared_memory_as_through_the_object_store(pool, tiny_dataset):
    records = from_folder(tiny_dataset).records[:7]
    requests = [ClipRequest(r.path, TrainView(seed)) for seed, r in enumerate(records)]
    store = DecoderPool(SPEC, num_actors=1, clips_per_call=3, cpus_per_actor=0, shared_memory=False)
    try:
        through_store = list(store.map(requests))
    finally:
        store.shutdown()
    own = list(pool.map(requests))  # each result's arrays its own, whatever later calls write into the slots
    in_place = []
    for result in pool.map(requests * 2, in_place=True):  # views of the calls' slots
        in_place.append((result.rgb.copy(), result.flow.copy(), _in_shared_memory(result.rgb)))
    assert not any(_in_shared_memory(r.rgb) or _in_shared_memory(r.flow) for r in own + through_store)
    assert all(shared for _, _, shared in in_place)
    for expected, kept, (rgb, flow, _) in zip(through_store * 2, own * 2, in_place):
        assert np.array_equal(kept.rgb, expected.rgb) and np.array_equal(kept.flow, expected.flow)
        assert np.array_equal(rgb, expected.rgb) and np.array_equal(flow, expected.flow)


def test_a_map_left_early_gives_its_slots_back_once_its_calls_end(pool, tiny_dataset):
    records = from_folder(tiny_dataset).records[:6]
    requests = [ClipRequest(r.path, EvalView()) for r in records] * 3
    left = pool.map(requests, in_place=True)
    next(left)
    left.close()  # the consumer stops: the calls still running keep their slots
    for _ in range(2):
        assert len(list(pool.map(requests))) == len(requests)
    assert pool._draining == [] and sorted(map(len, pool._free_slots)) == [pool._slot_files[0].layout.slots] * 2


def test_without_room_in_shared_memory_clips_go_through_the_object_store(
    ray_session, tiny_dataset, tmp_path, monkeypatch, caplog
):
    missing = str(tmp_path / "no-shm")
    monkeypatch.setattr(shared_slots, "create", functools.partial(shared_slots.create, folder=missing))
    records = from_folder(tiny_dataset).records[:4]
    with caplog.at_level(logging.WARNING):
        fallback = DecoderPool(SPEC, num_actors=1, clips_per_call=3, cpus_per_actor=0)
    try:
        assert "docker run --shm-size" in caplog.text
        results = list(fallback.map([ClipRequest(r.path, EvalView()) for r in records], in_place=True))
    finally:
        fallback.shutdown()
    loader = ClipLoader(SPEC)
    for result, record in zip(results, records):
        assert np.array_equal(result.rgb, loader.load(record.path, EvalView())[0])


class _RecordingActor:
    """Passes load calls to a decode actor, recording the tracks each call carries."""

    def __init__(self, actor, sent: list):
        self.actor, self.sent = actor, sent
        self.load = self

    def remote(self, requests, tracks, keys, slot):
        self.sent.append((list(tracks), list(keys)))
        return self.actor.load.remote(requests, tracks, keys, slot)


def test_each_track_travels_once_per_actor_and_again_after_a_restart(ray_session, tiny_dataset):
    records = from_folder(tiny_dataset).records[:4]
    tracks = {r.path: Track(np.array([0]), np.array([[2.0, 3.0, 18.0, 18.0 + i]])) for i, r in enumerate(records)}
    requests = [ClipRequest(r.path, TrainView(seed), track=tracks[r.path]) for seed in (1, 2, 3) for r in records]
    loader = ClipLoader(SPEC)
    expected = [loader.load(r.path, r.view, track=r.track) for r in requests]
    pool = DecoderPool(SPEC, num_actors=1, clips_per_call=4, cpus_per_actor=0)  # the module's pool holds the CPUs
    try:
        actor, sent = pool.actors[0], []
        pool.actors = [_RecordingActor(actor, sent)]
        results = list(pool.map(requests))
        assert all(np.array_equal(r.rgb, e[0]) and np.array_equal(r.flow, e[1]) for r, e in zip(results, expected))
        assert [paths for paths, _ in sent] == [[r.path for r in records], [], []]  # each track with its first clip
        assert all(key in tracks for _, keys in sent for key in keys)  # then named by path
        import ray

        ray.get(actor.__ray_call__.remote(lambda self: self.tracks.clear()))  # as a restarted actor has none
        sent.clear()
        again = list(pool.map(requests[:4]))
        assert [r.error for r in again] == [None] * 4 and np.array_equal(again[3].rgb, expected[3][0])
        assert [sorted(paths) for paths, _ in sent] == [[], sorted(tracks)]  # refused, then sent with the call
    finally:
        pool.actors = [actor]
        pool.shutdown()


def test_local_batches_are_aligned_for_tf_data_to_use_in_place(pool, tiny_dataset):
    assert all(aligned_empty((n, 5, 7)).ctypes.data % 64 == 0 for n in (1, 3, 16))
    records = from_folder(tiny_dataset).records
    plan = plan_epoch(len(records), 4, 0, 1, seed=0, epoch=0, train=False)
    batches = list(EpochStream(records, pool, plan, seed=0, epoch=0, train=False))
    assert all(b[0].ctypes.data % 64 == 0 and b[1].ctypes.data % 64 == 0 for b in batches)
    assert len({b[0].ctypes.data for b in batches}) == len(batches)  # a new array per batch: tf.data holds them


def _expected_epoch(records, plan, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's clips (rgb, flow) in plan order, loaded directly."""
    loader, order, positions = ClipLoader(SPEC), plan.indices.reshape(-1), plan.positions.reshape(-1)
    clips = [loader.load(records[i].path, TrainView(clip_seed(0, epoch, int(p)))) for i, p in zip(order, positions)]
    return np.stack([rgb for rgb, _ in clips]), np.stack([flow for _, flow in clips])


def test_a_batch_of_one_calls_clips_is_read_in_its_slot_which_no_call_takes_while_it_is_held(ray_session, tiny_dataset):
    """A local batch made of one call's clips is a view of the call's shared-memory slot (tf.data then makes its
    tensors there, no copy), and the pool sends no call to that slot while the batch or a tensor made of it lives."""
    records = from_folder(tiny_dataset).records
    plans = [plan_epoch(len(records), 4, 0, 1, seed=0, epoch=epoch, train=True) for epoch in range(4)]
    pool = DecoderPool(SPEC, num_actors=1, clips_per_call=8, cpus_per_actor=0, slots=4)  # a call: 2 batches of 4
    try:
        held = list(EpochStream(records, pool, plans[0], seed=0, epoch=0, train=True))  # 4 calls, 4 slots
        assert all(_in_shared_memory(rgb) and _in_shared_memory(flow) for rgb, flow, *_ in held)
        assert all(pool._slot_files[0].held(slot) for slot in range(4))
        list(EpochStream(records, pool, plans[1], seed=0, epoch=1, train=True))  # every slot held: the object store
        expected = _expected_epoch(records, plans[0], 0)
        assert np.array_equal(np.concatenate([b[0] for b in held]), expected[0])
        assert np.array_equal(np.concatenate([b[1] for b in held]), expected[1])
        del held
        assert not any(pool._slot_files[0].held(slot) for slot in range(4))

        stream = EpochStream(records, pool, plans[2], seed=0, epoch=2, train=True)
        tensors = [(inputs["rgb"], inputs["flow"]) for inputs, *_ in to_dataset(stream, SPEC, local_batch=4)]
        del stream  # only the tensors hold the slots now
        assert any(pool._slot_files[0].held(slot) for slot in range(4))
        list(EpochStream(records, pool, plans[3], seed=0, epoch=3, train=True))
        expected = _expected_epoch(records, plans[2], 2)
        assert np.array_equal(np.concatenate([rgb.numpy() for rgb, _ in tensors]), expected[0])
        assert np.array_equal(np.concatenate([flow.numpy() for _, flow in tensors]), expected[1])
    finally:
        pool.shutdown()


@pytest.mark.parametrize(
    "clips_per_call, local_batch, calls_in_flight, prefetch",
    [(2, 4, 2, 2), (4, 4, 2, 2), (8, 4, 1, 3)],  # calls of half a batch, a batch, two batches (deeper prefetch)
)
def test_slots_sized_by_calls_in_flight_and_prefetch_send_no_call_through_the_object_store(
    ray_session, tiny_dataset, clips_per_call, local_batch, calls_in_flight, prefetch
):
    """While a slow step reads an epoch through tf.data, every call of the actor finds a free slot when the slots
    are as many as slots_per_actor says; with a slot per call in flight and none for the batches tf.data holds,
    some calls go through Ray's object store, and the epoch's report counts them."""
    records = from_folder(tiny_dataset).records
    plan = plan_epoch(len(records), local_batch, 0, 1, seed=0, epoch=0, train=True)
    needed = slots_per_actor(calls_in_flight, prefetch, clips_per_call, local_batch)
    without_slot = {}
    for slots in (needed, calls_in_flight):
        pool = DecoderPool(SPEC, 1, clips_per_call, cpus_per_actor=0, calls_in_flight=calls_in_flight, slots=slots)
        try:
            stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=True)
            for _ in to_dataset(stream, SPEC, local_batch, prefetch):
                time.sleep(0.05)  # the step: tf.data's prefetch fills meanwhile
            without_slot[slots] = stream.report.pool.calls_without_slot
        finally:
            pool.shutdown()
    assert without_slot[needed] == 0 and without_slot[calls_in_flight] > 0, without_slot


def test_an_epoch_reports_where_its_time_went(pool, tiny_dataset):
    """The epoch record's data-path fields: the actors' calls are timed and counted, shares lie in [0, 1]."""
    records = from_folder(tiny_dataset).records
    plan = plan_epoch(len(records), 4, 0, 1, seed=0, epoch=0, train=True)
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=True)
    assert len(list(stream)) == plan.steps
    report, calls = stream.report, -(-plan.indices.size // pool.clips_per_call)
    assert report.actors == 2 and report.pool.calls == calls and report.seconds > 0
    assert 0 < report.pool.actor_cpu_s <= report.pool.actor_busy_s * 1.05  # 5%: two clocks read apart
    timings = report.timings()
    assert 0 < timings["actor_busy_share"] <= 1 and 0 < timings["actor_cpu_share"] <= 1.05
    assert 0 <= timings["driver_share"] <= 1 and 0 <= timings["driver_wait_share"] <= 1
    assert 0 <= timings["calls_in_flight_min"] <= timings["calls_in_flight_mean"] <= pool.calls_in_flight
    again = EpochStream(records, pool, plan, seed=0, epoch=1, train=True)
    list(again)
    assert again.report.pool.calls == calls  # each epoch counts its own calls, not the pool's total


def test_the_next_phase_is_started_once_the_last_call_is_sent_and_read_from_there(pool, tiny_dataset):
    """A stream's `then` runs once its last decode call is sent, before its last batch is handed on; the stream it
    starts ahead is read from where it is (its first calls are not sent twice)."""
    records = from_folder(tiny_dataset).records
    plan = plan_epoch(len(records), 4, 0, 1, seed=0, epoch=0, train=True)
    handed, started = [], []
    ahead = EpochStream(records, pool, plan, seed=0, epoch=1, train=True)
    stream = EpochStream(
        records, pool, plan, seed=0, epoch=0, train=True, then=lambda: (started.append(len(handed)), iter(ahead))
    )
    for batch in stream:
        handed.append(batch)
    assert len(started) == 1 and started[0] < plan.steps
    assert iter(ahead) is iter(ahead)  # one set of calls, whoever asks
    again = EpochStream(records, pool, plan, seed=0, epoch=1, train=True)
    for got, expected in zip(ahead, again, strict=True):  # the same clips as a stream started when asked for
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[2], expected[2])
    assert ahead.report.pool.calls == again.report.pool.calls == -(-plan.indices.size // pool.clips_per_call)


def _fake_before_real(records, plan, count: int) -> list[int]:
    """Slots of the plan holding a `fake` clip whose next clip in the shard is `real` (and not itself chosen):
    breaking those files makes every replacement change the label."""
    order = plan.indices.reshape(-1)
    slots = []
    for slot in range(len(order) - 1):
        if (records[order[slot]].label, records[order[slot + 1]].label) == (0, 1) and (
            not slots or slot > slots[-1] + 1
        ):
            slots.append(slot)
    assert len(slots) >= count and {r.label for r in records} == {0, 1}
    return slots[:count]


def test_bad_clips_are_replaced_counted_and_named(pool, tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    records = from_folder(str(root)).records
    assert from_folder(str(root)).class_names == ("fake", "real")  # label 0 = fake, 1 = real
    plan = plan_epoch(len(records), 8, 0, 1, seed=0, epoch=0, train=True)
    order, positions = plan.indices.reshape(-1), plan.positions.reshape(-1)
    slots = _fake_before_real(records, plan, 2)
    broken = [records[order[s]].path for s in slots]
    open(broken[0], "wb").close()  # zero bytes
    with open(broken[1], "wb") as f:
        f.write(b"garbage" * 100)  # not a video
    stream = EpochStream(records, pool, plan, seed=0, epoch=0, train=True, max_failed_fraction=0.2)
    batches = list(stream)
    assert len(batches) == plan.steps == 4
    assert all(b[0].shape == (8, *SPEC.rgb_shape) for b in batches)
    assert len(stream.report.failed) == 2 and stream.report.replaced == 2
    assert {f.split(":")[0] for f in stream.report.failed} == set(broken)
    rgb, flow, labels, weights, where = (np.concatenate(parts) for parts in zip(*batches))
    loader = ClipLoader(SPEC)
    for slot in slots:  # the slot holds the next clip of the shard, its pixels and its label, at the slot's seed
        replacement = records[order[slot + 1]]
        assert where[slot].tolist() == [order[slot + 1], 0] and labels[slot] == replacement.label == 1
        expected_rgb, expected_flow = loader.load(replacement.path, TrainView(clip_seed(0, 0, int(positions[slot]))))
        assert np.array_equal(rgb[slot], expected_rgb) and np.array_equal(flow[slot], expected_flow)
    kept = [s for s in range(len(order)) if s not in slots]
    assert labels[kept].tolist() == [records[order[s]].label for s in kept] and weights.tolist() == [1.0] * 32


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


def _marked_batches(mark: int, count: int, local_batch: int = 2):
    """`count` ready batches whose labels say which epoch (`mark`) and which batch they are."""
    for k in range(count):
        rgb, flow = aligned_empty((local_batch, *SPEC.rgb_shape)), aligned_empty((local_batch, *SPEC.flow_shape))
        where = np.zeros((local_batch, 2), np.int32)
        yield rgb, flow, np.full(local_batch, 100 * mark + k, np.int32), np.ones(local_batch, np.float32), where


def test_each_epoch_reads_its_own_batches_through_the_one_dataset():
    """to_dataset builds its tf.data dataset once per element signature and hands each epoch's stream to it as its
    iterator starts: an epoch left after one batch, or never started, must not leave batches to the next."""

    def marks(dataset):
        return [int(labels[0]) for _, labels, _ in dataset]

    first = to_dataset(_marked_batches(1, 3), SPEC, local_batch=2)
    assert marks(first) == [100, 101, 102]
    left_early = iter(to_dataset(_marked_batches(2, 3), SPEC, local_batch=2))
    assert int(next(left_early)[1][0]) == 200
    left_early.close()
    iter(to_dataset(_marked_batches(3, 3), SPEC, local_batch=2))  # never read
    third = to_dataset(_marked_batches(4, 2), SPEC, local_batch=2)
    assert third._bridge is first._bridge  # the same dataset, read anew
    assert marks(third) == [400, 401] and marks(third) == []  # a stream is read once
    other = to_dataset(_marked_batches(5, 1), SPEC, local_batch=2, with_index=True)  # another signature
    assert other._bridge is not first._bridge and len(next(iter(other))) == 4


def _failing_after(count: int):
    yield from _marked_batches(7, count, 3)
    raise DataError("clip 3 is unreadable")


def test_epochs_share_one_iterator_and_a_stream_error_reaches_its_reader_as_itself():
    """The bridge's tf.data iterator lives across epochs (building one costs ~15 ms of CPU); an error raised by an
    epoch's stream is raised to that epoch's reader as itself, and the next epoch reads on; a read started while
    another is unfinished ends the other."""

    def marks(dataset):
        return [int(labels[0]) for _, labels, _ in dataset]

    first = to_dataset(_marked_batches(1, 2, 3), SPEC, local_batch=3)
    assert marks(first) == [100, 101]
    iterator = first._bridge._iterator
    failing = to_dataset(_failing_after(2), SPEC, local_batch=3)
    read = []
    with pytest.raises(DataError, match="clip 3"):
        for _, labels, _ in failing:
            read.append(int(labels[0]))
    assert read == [700, 701]
    unfinished = iter(to_dataset(_marked_batches(2, 3, 3), SPEC, local_batch=3))
    assert int(next(unfinished)[1][0]) == 200
    assert marks(to_dataset(_marked_batches(3, 2, 3), SPEC, local_batch=3)) == [300, 301]
    assert list(unfinished) == []  # ended by the read after it
    assert first._bridge._iterator is iterator and first._bridge._stopped == set()


def test_after_tensorflow_fails_an_epoch_the_next_epoch_reads_through_a_new_iterator():
    """A batch of the wrong shape fails inside tf.data (its own error, to that epoch's reader); the bridge then
    builds its iterator anew, and the next epoch reads all of its own batches."""
    import tensorflow as tf

    def wrong_shape():
        yield from _marked_batches(8, 1, 5)
        yield from _marked_batches(8, 1, 4)  # one clip short

    with pytest.raises(tf.errors.InvalidArgumentError):
        list(to_dataset(wrong_shape(), SPEC, local_batch=5))
    assert [int(labels[0]) for _, labels, _ in to_dataset(_marked_batches(9, 2, 5), SPEC, local_batch=5)] == [900, 901]


BRIDGE_THEN_EXIT = """
import sys
import numpy as np
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.distributed.batch_buffers import aligned_empty
from twostream.data.distributed.bridge import close_bridges, to_dataset
spec = ClipSpec(num_frames=4, size=32, flow_bound=8.0)
batch = (aligned_empty((2, *spec.rgb_shape)), aligned_empty((2, *spec.flow_shape)), np.zeros(2, np.int32),
         np.ones(2, np.float32), np.zeros((2, 2), np.int32))
assert len(list(to_dataset(iter([batch]), spec, local_batch=2))) == 1
if sys.argv[1] == "close":
    close_bridges()
    assert len(list(to_dataset(iter([batch, batch]), spec, local_batch=2))) == 2  # a new iterator
    close_bridges()
"""


def test_closed_bridges_leave_tensorflow_nothing_to_finalize_at_exit():
    """A bridge's iterator left to the interpreter's exit makes TensorFlow warn that it could not finalize its
    generator (the last lines of every run); closed with the run's inputs, it finalizes quietly, and a bridge reads
    on through a new one."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    ended = {
        how: subprocess.run([sys.executable, "-c", BRIDGE_THEN_EXIT, how], capture_output=True, text=True, env=env)
        for how in ("close", "leave")
    }
    assert all(done.returncode == 0 for done in ended.values()), {how: d.stderr[-2000:] for how, d in ended.items()}
    warning = "Error occurred when finalizing GeneratorDataset iterator"
    assert warning in ended["leave"].stderr and warning not in ended["close"].stderr, ended["close"].stderr[-2000:]


def test_a_dead_actor_is_restarted_and_its_clips_resent(ray_session, tiny_dataset, caplog):
    """The actor is stopped (SIGSTOP) before the calls are sent, so none can finish, then killed (SIGKILL) as a
    crash in native code would: its calls are lost for certain, and every clip comes back from the restart."""
    records = from_folder(tiny_dataset).records[:6]
    expected = [ClipLoader(SPEC).load(r.path, EvalView())[0] for r in records]
    pool = DecoderPool(SPEC, num_actors=1, clips_per_call=3, cpus_per_actor=0)  # the module's pool holds the CPUs
    try:
        import ray

        dead = ray.get(pool.actors[0].pid.remote())
        os.kill(dead, signal.SIGSTOP)
        results = pool.map(ClipRequest(r.path, EvalView()) for r in records)  # both calls sent to the stopped actor
        os.kill(dead, signal.SIGKILL)
        results = list(results)
        assert [r.error for r in results] == [None] * 6
        assert all(np.array_equal(r.rgb, e) for r, e in zip(results, expected))
        assert {r.pid for r in results} != {dead} and dead not in {r.pid for r in results}  # all re-sent
        assert pool.restarts == 1
        assert any("re-sending its 3 clips" in r.message for r in caplog.records)
    finally:
        pool.shutdown()
