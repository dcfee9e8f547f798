"""Sharding: equal steps on every rank, ranks together = the single-process global batches, exact eval cover."""

import numpy as np
import pytest

from twostream.data.distributed.sharding import ShardingError, local_batch_size, plan_epoch


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_together_see_the_single_process_batches(world):
    single = plan_epoch(103, 8, 0, 1, seed=3, epoch=2, train=True)
    plans = [plan_epoch(103, 8, r, world, seed=3, epoch=2, train=True) for r in range(world)]
    assert {p.steps for p in plans} == {103 // 8}
    for step in range(single.steps):
        joined = np.concatenate([p.indices[step] for p in plans])
        assert joined.tolist() == single.indices[step].tolist()


def test_epochs_reshuffle_and_seed_reproduces():
    a = plan_epoch(50, 10, 0, 1, seed=0, epoch=0, train=True).indices
    assert not np.array_equal(a, plan_epoch(50, 10, 0, 1, seed=0, epoch=1, train=True).indices)
    assert np.array_equal(a, plan_epoch(50, 10, 0, 1, seed=0, epoch=0, train=True).indices)


def test_eval_scores_every_clip_exactly_once_across_ranks():
    plans = [plan_epoch(23, 8, r, 2, seed=0, epoch=0, train=False) for r in range(2)]
    assert plans[0].steps == plans[1].steps == 3
    counted = np.concatenate([p.indices[p.weights > 0] for p in plans])
    assert sorted(counted.tolist()) == list(range(23))


def test_resume_mid_epoch_continues_the_same_order():
    plan = plan_epoch(40, 4, 1, 2, seed=0, epoch=0, train=True)
    assert np.array_equal(plan.from_step(3).indices, plan.indices[3:])


def test_impossible_batch_sizes_are_clear():
    with pytest.raises(ShardingError, match="multiple of the number of processes"):
        local_batch_size(6, 4)
    with pytest.raises(ShardingError, match="no full global batch"):
        plan_epoch(5, 8, 0, 1, seed=0, epoch=0, train=True)
