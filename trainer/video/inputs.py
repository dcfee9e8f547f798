"""The data side of a run: manifest and split, the Ray decoder pool, and each epoch's tf.data dataset."""

from __future__ import annotations

import logging
import math
import os
import secrets

from twostream.data.decode.boxes import BoxError, BoxTracks
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.distributed.actors import CacheSettings, DecoderPool
from twostream.data.distributed.batch_buffers import BATCH_BUFFERS, arrays_to_keep
from twostream.data.distributed.bridge import close_bridges, to_dataset
from twostream.data.distributed.pipeline import EpochReport, EpochStream
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.distributed.shared_slots import clips_per_call
from twostream.data.manifest import from_config, split_by_video
from twostream.trainer.config import Config, ConfigError, decode_slots
from twostream.trainer.runtime.ray_node import NodeRanks, start_ray, stop_ray
from twostream.trainer.runtime.resources import cores_per_rank

log = logging.getLogger(__name__)


def default_num_actors(local_size: int) -> int:
    """One decode actor per core left after giving each local rank one core for TensorFlow."""
    return max(1, cores_per_rank(local_size) - 1)


def cache_settings(config: Config) -> CacheSettings:
    return CacheSettings(config.data.flow_cache_folder(), config.data.flow_cache_bytes)  # where prepare put it


def load_boxes(config: Config, records) -> BoxTracks | None:
    """data.boxes' tracks, every record's read now so that a malformed file stops the run before it starts."""
    if not config.data.boxes:
        return None
    try:
        boxes = BoxTracks(config.data.boxes, config.data.box_margin)
        missing = sum(boxes.for_record(record) is None for record in records)
    except BoxError as error:
        raise ConfigError(f"data.boxes: {error}") from None
    if missing:
        log.warning("data.boxes: %d of %d videos have no box track and are read at full frame", missing, len(records))
    return boxes


def node_ranks(config: Config, world_size: int, local_size: int) -> NodeRanks | None:
    """This rank's place among its node's ranks, for the Ray they share; None for a private Ray (alone on the node,
    or elastic: a lost rank must not take the survivors' decoders with it) or a cluster to join. A collective when
    several ranks share Ray: every rank calls it at the same point (Inputs' constructor)."""
    if world_size == 1 or config.train.elastic or config.data.ray_address or os.environ.get("RAY_ADDRESS"):
        return None
    from twostream.trainer import dist

    job_key = dist.broadcast_object(secrets.token_hex(8))  # rank 0's: the same on every rank, new for every job
    return NodeRanks(dist.local_rank(), local_size, job_key)


class EpochData:
    """One epoch's tf.data elements (data/distributed/bridge.py: a DataError of the stream is raised as itself) and
    what reading them read, failed and replaced."""

    def __init__(self, stream: EpochStream, spec: ClipSpec, local_batch: int, train: bool, prefetch: int):
        self.stream = stream
        self.dataset = to_dataset(stream, spec, local_batch, prefetch, with_index=not train)
        self.element_spec = self.dataset.element_spec

    @property
    def report(self) -> EpochReport:
        """Complete once the epoch has been read to its end."""
        return self.stream.report

    def __iter__(self):
        return iter(self.dataset)


class Inputs:
    """Holds the train and validation records and the decoder pool of this rank."""

    def __init__(self, config: Config, rank: int, world_size: int, local_size: int):
        self.config, self.rank, self.world_size = config, rank, world_size
        manifest = from_config(config.data)
        self.class_names = manifest.class_names
        self.train_records, self.val_records = (m.records for m in split_by_video(manifest, config.data.val_fraction))
        self.steps_per_epoch = self._plan(epoch=0, train=True).steps  # the same for every epoch and rank
        self.boxes = load_boxes(config, manifest.records)
        num_actors = config.data.num_actors or default_num_actors(local_size)
        start_ray(
            config.data.ray_address or None,
            num_cpus=math.ceil(num_actors * config.data.cpus_per_actor),
            object_store_mb=config.data.object_store_mb,
            node=node_ranks(config, world_size, local_size),
            connect_timeout_s=config.data.ray_connect_timeout_s,
        )
        self.look_ahead = False  # send the next phase's first decode calls behind the current one's last
        self._ahead: tuple[tuple, EpochStream] | None = None  # (phase key, its stream, first calls sent)
        self._epoch_after_eval = 0
        BATCH_BUFFERS.keep = arrays_to_keep(config.data.prefetch)
        self.pool = DecoderPool(
            config.clip,
            num_actors,
            clips_per_call(config.clip, config.data.clips_per_call),
            config.data.cpus_per_actor,
            cache=cache_settings(config),
            calls_in_flight=config.data.calls_in_flight,
            slots=decode_slots(config, world_size),
        )

    def reshard(self, rank: int, world_size: int) -> None:
        """Takes this process's place in a new world (after an elastic reset): later epochs are split over
        `world_size` ranks; the global batch, so the steps per epoch, stay the same."""
        self.rank, self.world_size = rank, world_size

    def _plan(self, epoch: int, train: bool):
        clips = (
            len(self.train_records)
            if train
            else len(self.val_records) * self.config.eval.views * self.config.eval.spatial_crops
        )
        return plan_epoch(
            clips,
            self.config.train.global_batch,
            self.rank,
            self.world_size,
            seed=self.config.train.seed,
            epoch=epoch,
            train=train,
        )

    def train_epoch(self, epoch: int, from_step: int = 0):
        """(dataset, stream) for one training epoch, starting at `from_step` when resuming mid-epoch. With
        `look_ahead`, once its last decode call is sent the validation's first calls follow (eval_epoch)."""
        self._epoch_after_eval = epoch + 1
        return self._dataset(self._stream(("train", epoch, from_step)), train=True)

    def eval_epoch(self):
        """(dataset, stream) scoring eval.views evenly spread clips of every validation video exactly once
        across ranks (padding weighted 0); its elements carry each clip's (record, view) for video-level metrics.
        With `look_ahead`, once its last decode call is sent the next training epoch's first calls follow."""
        return self._dataset(self._stream(("eval",)), train=False)

    def _stream(self, phase: tuple) -> EpochStream:
        """This rank's stream of `phase`: the one started ahead when it is that phase's in this world, else new."""
        key, ahead = (*phase, self.rank, self.world_size), self._ahead
        self._ahead = None
        if ahead is not None and ahead[0] == key:
            return ahead[1]
        if phase[0] == "eval":
            return self._new_stream(self.val_records, self._plan(0, train=False), 0, train=False)
        _, epoch, from_step = phase
        plan = self._plan(epoch, train=True).from_step(from_step)
        return self._new_stream(self.train_records, plan, epoch, train=True)

    def _start_ahead(self, phase: tuple) -> None:
        """Sends `phase`'s first decode calls now, behind the current phase's last: the actors decode them while
        the trainer finishes the current phase, so the next one starts with its first batches ready."""
        stream = self._stream(phase)
        iter(stream)
        self._ahead = ((*phase, self.rank, self.world_size), stream)

    def _next_phase(self, train: bool):
        """What follows a phase when looking ahead: validation after training, the next epoch after validation."""
        if not self.look_ahead:
            return None
        if train:
            return lambda: self._start_ahead(("eval",))
        if self._epoch_after_eval < self.config.train.epochs:
            return lambda: self._start_ahead(("train", self._epoch_after_eval, 0))
        return None

    def _new_stream(self, records, plan, epoch: int, train: bool) -> EpochStream:
        return EpochStream(
            records,
            self.pool,
            plan,
            seed=self.config.train.seed,
            epoch=epoch,
            train=train,
            max_failed_fraction=self.config.data.max_failed_fraction,
            views=self.config.eval.views,
            crops=self.config.eval.spatial_crops,
            boxes=self.boxes,
            then=self._next_phase(train),
        )

    def _dataset(self, stream: EpochStream, train: bool):
        local_batch = stream.plan.indices.shape[1]  # this rank's share of the global batch (sharding.py divides it)
        return EpochData(stream, self.config.clip, local_batch, train, self.config.data.prefetch), stream

    def close(self) -> None:
        """Ends this rank's actors and its part in the node's shared Ray (a collective-free wait: local rank 0
        stops that Ray once the node's other ranks have closed)."""
        self.pool.shutdown()
        close_bridges()
        stop_ray()
