"""A Ray decode actor killed mid-epoch: Ray restarts it, its clips are re-sent, the epoch completes with every
clip exactly once (checked by clip path), and the epoch record counts the restart."""

import json
import os

import pytest
import ray

from twostream.data.distributed.actors import DecoderPool
from twostream.data.distributed.pipeline import EpochStream
from twostream.data.distributed.sharding import plan_epoch
from twostream.data.manifest import load_manifest
from twostream.trainer import config as config_lib

pytestmark = pytest.mark.tensorflow  # starts TensorFlow: left out of `make check`


class KillAfter:
    """Stands in for a DecoderPool: passes map() through, recording each result's clip, and kills decode
    actor 0 (ray.kill, restart allowed) once `after` results have come back."""

    def __init__(self, pool: DecoderPool, after: int):
        self.pool, self.after, self.paths = pool, after, []
        self.actors = pool.actors  # what EpochStream reads of a pool besides map

    def map(self, requests, stats=None, then=None, in_place=False):
        for result in self.pool.map(requests, stats, then, in_place):
            self.paths.append(result.path)
            if len(self.paths) == self.after:
                ray.kill(self.pool.actors[0], no_restart=False)
            yield result


@pytest.mark.timeout(180)
def test_killed_actor_restarts_and_no_clip_is_lost_or_repeated(ray_session, tiny_dataset, caplog):
    records = load_manifest(tiny_dataset).records
    pool = DecoderPool(config_lib.load("tiny").clip, num_actors=2, clips_per_call=2)
    try:
        plan = plan_epoch(len(records), 4, 0, 1, seed=0, epoch=0, train=True)
        killer = KillAfter(pool, after=6)  # 2 calls of 2 clips still in flight on each actor
        stream = EpochStream(records, killer, plan, seed=0, epoch=0, train=True)
        batches = list(stream)
        assert len(batches) == plan.steps
        assert killer.paths == [records[p].path for p in plan.indices.reshape(-1)]  # in order, each once
        assert stream.report.failed == [] and stream.report.clips_read == plan.indices.size
        assert pool.restarts == 1
        assert any("re-sending" in r.message for r in caplog.records)  # calls in flight were lost, and re-sent
    finally:
        pool.shutdown()


@pytest.mark.timeout(300)
def test_epoch_record_counts_actor_restarts_and_failed_clips(ray_session, tiny_dataset, tmp_path, monkeypatch):
    from twostream.trainer.video.video_task import train

    original, killed = DecoderPool.map, []

    def map_then_kill(pool, requests, stats=None, then=None, in_place=False):  # kills an actor, 6 clips into epoch 1
        for count, result in enumerate(original(pool, requests, stats, then, in_place), 1):
            if count == 6 and not killed:
                killed.append(pool.actors[0])
                ray.kill(pool.actors[0], no_restart=False)
            yield result

    monkeypatch.setattr(DecoderPool, "map", map_then_kill)
    config = config_lib.load("tiny", overrides=[f"data.root={tiny_dataset}", "data.num_actors=2", "train.epochs=2"])
    train(config, str(tmp_path / "run"))
    with open(os.path.join(tmp_path, "run", "metrics.jsonl")) as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    assert killed and [r["epoch"] for r in epochs] == [1, 2]
    for record in epochs:
        assert (record["world_size"], record["resets"], record["restarts"]) == (1, 0, 1)
        assert (record["clips_failed"], record["failed"]) == (0, [])
        assert record["clips_read"] == record["steps"] * config.train.global_batch
