"""One rank's epoch of batches: sharding plan -> Ray decode actors -> failed clips replaced -> local batches (to
tf.data through data/distributed/bridge.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from twostream.data.decode.boxes import BoxTracks
from twostream.data.decode.sampling import EvalView, TrainView, View
from twostream.data.distributed.actors import ClipBatch, ClipRequest, ClipResult, DecoderPool, PoolStats
from twostream.data.distributed.batch_buffers import BATCH_BUFFERS
from twostream.data.distributed.sharding import Plan
from twostream.data.manifest import VideoRecord

log = logging.getLogger(__name__)
MAX_REPLACEMENT_TRIES = 8  # a failed clip is swapped for up to this many other clips of the same shard
Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # rgb, flow, labels, weights, index


class DataError(RuntimeError):
    """Too many clips failed to load; the message names them."""


@dataclass
class EpochReport:
    """What one rank read in one epoch; the trainer sums these over ranks for the epoch log."""

    clips_read: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason", one per failure
    replaced: int = 0
    without_box: set[str] = field(default_factory=set)  # videos read at full frame: data.boxes has no track for them
    sequential: set[str] = field(default_factory=set)  # videos read from the start: their seeks disagree
    # where the epoch's time went (the epoch record's actor_*, driver_* and calls_in_flight_* fields)
    seconds: float = 0.0  # from the first decode calls (sent ahead, during the phase before) to the last batch
    generator_s: float = 0.0  # this process's time producing batches: waiting on the actors, results, batch fill
    actors: int = 0
    pool: PoolStats = field(default_factory=PoolStats)  # the actors' calls collected in the epoch

    def timings(self) -> dict:
        """Where the epoch's time went: the clips per second the actors would make if never idle, their busy share and
        the on-CPU share of that, the driver's own work (results and batch fill) and its wait on the actors, and the
        decode calls in flight at each collection."""
        pool, seconds = self.pool, max(self.seconds, 1e-9)
        return {
            "decode_clips_per_s": self.clips_read * self.actors / pool.actor_busy_s if pool.actor_busy_s else None,
            "actor_busy_share": pool.actor_busy_s / (max(self.actors, 1) * seconds),
            "actor_cpu_share": pool.actor_cpu_s / pool.actor_busy_s if pool.actor_busy_s else 0.0,
            "driver_share": max(0.0, self.generator_s - pool.driver_wait_s) / seconds,
            "driver_wait_share": pool.driver_wait_s / seconds,
            "calls_in_flight_mean": pool.in_flight_sum / pool.in_flight_samples if pool.in_flight_samples else None,
            "calls_in_flight_min": pool.in_flight_min,
        }


def clip_seed(seed: int, epoch: int, position: int) -> int:
    """Sampling seed of the clip at global `position` of the epoch: the same whichever rank loads it."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class EpochStream:
    """Iterates one rank's local batches (rgb, flow, labels, weights, index) for one epoch, in plan order.

    Evaluation scores each record (video) `views` x `crops` times: `views` evenly spread clips in time, each
    cut at `crops` places along the long side. The plan then indexes records x (views x crops): index i is
    view v = i % (views x crops) of record i // (views x crops), and view v is clip v // crops, crop v % crops.
    `index` says which: int32 (batch, 2) rows of (record, view), so metrics aggregate crops per video as they
    do clips. In evaluation a failed clip's stand-in gets weight 0, so no video is scored twice; in training
    it counts (the step still needs a full batch). `boxes`: the videos' regions of interest (data/decode/boxes.py).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        pool: DecoderPool,
        plan: Plan,
        *,
        seed: int,
        epoch: int,
        train: bool,
        max_failed_fraction: float = 0.05,
        views: int = 1,
        crops: int = 1,
        boxes: BoxTracks | None = None,
        then: Callable[[], None] | None = None,
    ):
        self.records, self.pool, self.plan = records, pool, plan
        self.seed, self.epoch, self.train = seed, epoch, train
        self.max_failed_fraction = max_failed_fraction
        self.crops = 1 if train else crops
        self.per_record = 1 if train else views * crops  # plan entries per record: clips x crops
        self.boxes = boxes
        self.report = EpochReport()
        self.then = then  # called once this epoch's last decode call is sent (DecoderPool.map)
        self._batch_iterator: Iterator[Batch] | None = None
        self._started = 0.0  # when the first decode calls were sent

    def _request(self, index: int, position: int) -> ClipRequest:
        record = self.records[index // self.per_record]
        track = self.boxes.for_record(record) if self.boxes is not None else None
        if self.boxes is not None and track is None:
            self.report.without_box.add(record.path)
        return ClipRequest(record.path, self._view(index, position), track)

    def _view(self, index: int, position: int) -> View:
        """What plan entry `index` at global `position` asks of its record: at training a seed of the position
        (the same on any rank), at evaluation clip k of N and crop k of M (the class docstring's layout)."""
        if self.train:
            return TrainView(clip_seed(self.seed, self.epoch, position))
        clip, crop = divmod(int(index) % self.per_record, self.crops)  # int: the plan's entries are numpy's
        return EvalView(clip, self.per_record // self.crops, crop, self.crops)

    def __iter__(self) -> Iterator[Batch]:
        """Sends the epoch's first decode calls at once (DecoderPool.map), then yields batches as they come; a
        stream started before (its first calls sent ahead) goes on where it is."""
        if self._batch_iterator is None:
            indices, positions = self.plan.indices.reshape(-1), self.plan.positions.reshape(-1)
            self.report.actors, self._started = len(self.pool.actors), time.perf_counter()
            requests = (self._request(i, p) for i, p in zip(indices, positions))
            self._batch_iterator = self._batches(self.pool.map(requests, self.report.pool, self.then, in_place=True))
        return self._batch_iterator

    def _batches(self, results: Iterator) -> Iterator[Batch]:
        """Local batches of the actors' results. A batch whose clips are one call's, in a row, in its shared-memory
        slot is a view of that slot: tf.data makes its tensors in place, and the pool gives the slot to another call
        only once nothing views it. Any other batch gets a copy of each clip."""
        indices = self.plan.indices.reshape(-1)
        local_batch, weights = self.plan.indices.shape[1], self.plan.weights.reshape(-1)
        resumed = time.perf_counter()  # this generator's time runs from here to each yield
        index = -1  # not enumerate(): its cached (index, result) pair would keep the last result, so its slot, alive
        for result in results:
            index += 1
            item, weight = int(indices[index]), weights[index]
            if result.error is not None:
                item, result = self._replace(index, result.error)
                weight = weight if self.train else 0.0
            slot = index % local_batch
            if slot == 0:
                rgb, flow, shared = _new_batch(result, local_batch)
                labels, kept = np.zeros(local_batch, np.int32), np.zeros(local_batch, np.float32)
                where = np.zeros((local_batch, 2), np.int32)
            if shared is None or result.call is not shared[0] or result.position != shared[1] + slot:
                rgb[slot], flow[slot] = result.rgb, result.flow  # a replaced clip, or a batch of copies
            if result.sequential:
                self.report.sequential.add(result.path)
            labels[slot], kept[slot] = self.records[item // self.per_record].label, weight
            where[slot] = divmod(item, self.per_record)
            self.report.clips_read += 1
            del result  # it views its call's slot, which no other call may take while it lives
            if slot == local_batch - 1:
                self._clock(resumed)
                yield rgb, flow, labels, kept, where
                resumed = time.perf_counter()

    def _clock(self, resumed: float) -> None:
        now = time.perf_counter()
        self.report.generator_s += now - resumed
        self.report.seconds = now - self._started

    def _replace(self, index: int, error: str):
        """Swaps a failed clip for the next loadable clip of this rank's shard (deterministic order)."""
        self._record_failure(error)
        indices, positions = self.plan.indices.reshape(-1), self.plan.positions.reshape(-1)
        for offset in range(1, MAX_REPLACEMENT_TRIES + 1):
            candidate = (index + offset) % len(indices)
            request = self._request(int(indices[candidate]), int(positions[index]))
            (result,) = self.pool.map([request], self.report.pool)
            if result.error is None:
                self.report.replaced += 1
                return int(indices[candidate]), result
            self._record_failure(result.error)
        raise DataError(
            f"no loadable replacement found for a failed clip after {MAX_REPLACEMENT_TRIES} tries; "
            "failures so far:\n  " + "\n  ".join(self.report.failed)
        )

    def _record_failure(self, error: str) -> None:
        log.warning("skipping unreadable clip %s", error)
        self.report.failed.append(error)
        allowed = max(1, int(self.max_failed_fraction * self.plan.indices.size))
        if len(self.report.failed) > allowed:
            raise DataError(
                f"{len(self.report.failed)} clips failed to load in epoch {self.epoch} (more than "
                f"data.max_failed_fraction={self.max_failed_fraction} of this rank's "
                f"{self.plan.indices.size}); fix or remove them:\n  " + "\n  ".join(self.report.failed)
            )


def _new_batch(first: ClipResult, local_batch: int) -> tuple[np.ndarray, np.ndarray, tuple[ClipBatch, int] | None]:
    """Arrays for a local batch that starts with `first`, and (call, position) when they are views of `first`'s call
    (its clips from `first` on fill the batch); else arrays nothing holds any more (tf.data may still hold the
    previous batches) and None."""
    call = first.call
    if call is not None and first.position + local_batch <= len(call.paths):
        batch = slice(first.position, first.position + local_batch)
        return call.rgb[batch], call.flow[batch], (call, first.position)
    assert first.rgb is not None and first.flow is not None  # a failed clip was replaced before
    rgb = BATCH_BUFFERS.take((local_batch, *first.rgb.shape))
    return rgb, BATCH_BUFFERS.take((local_batch, *first.flow.shape)), None
