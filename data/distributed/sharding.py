"""Per-epoch order of clips and its split across ranks, computed identically on every rank.

Global step s of an epoch covers positions [s*G, (s+1)*G) of that epoch's order (G = global batch);
rank r takes the r-th contiguous slice of B = G / world_size positions. A single process (world of one)
therefore sees exactly the same global batches as N ranks together, which is what makes a distributed
run reproducible by a single-process one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class ShardingError(ValueError):
    """The batch size does not fit the world size or the data; the message says what to change."""


@dataclass(frozen=True)
class Plan:
    """One rank's share of one epoch: `indices[s]` are the record indices of its local batch at step s."""

    indices: np.ndarray  # int64 (steps, local_batch): indices into the record list
    weights: np.ndarray  # float32 (steps, local_batch): 0 for padding (evaluation only), else 1
    positions: np.ndarray  # int64 (steps, local_batch): global position in the epoch, seeds the clip sampling

    @property
    def steps(self) -> int:
        return len(self.indices)

    def from_step(self, step: int) -> Plan:
        """The rest of the epoch from `step` on: how a resumed run continues mid-epoch."""
        return Plan(self.indices[step:], self.weights[step:], self.positions[step:])


def local_batch_size(global_batch: int, world_size: int) -> int:
    """The one place the global batch is divided by the world size."""
    if global_batch < world_size or global_batch % world_size:
        raise ShardingError(
            f"global batch size {global_batch} must be a positive multiple of the number of "
            f"processes ({world_size}); set train.global_batch to e.g. "
            f"{max(1, global_batch // world_size) * world_size or world_size}"
        )
    return global_batch // world_size


def epoch_order(num_records: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's order of all records: a seeded permutation per (seed, epoch), or 0..N-1 unshuffled."""
    if not shuffle:
        return np.arange(num_records)
    return np.random.default_rng([seed, epoch]).permutation(num_records)


def plan_epoch(
    num_records: int, global_batch: int, rank: int, world_size: int, *, seed: int, epoch: int, train: bool
) -> Plan:
    """Training drops the last partial global batch; evaluation pads it with zero-weight repeats so every
    clip is scored exactly once while every rank still runs the same number of steps."""
    local = local_batch_size(global_batch, world_size)
    order = epoch_order(num_records, seed, epoch, shuffle=train)
    steps = num_records // global_batch if train else math.ceil(num_records / global_batch)
    if steps == 0:
        raise ShardingError(
            f"{num_records} training clips make no full global batch of {global_batch}; "
            "lower train.global_batch or add videos"
        )
    positions = np.arange(steps * global_batch).reshape(steps, world_size, local)[:, rank, :]
    weights = (positions < num_records).astype(np.float32)
    return Plan(order[positions % num_records], weights, positions)
