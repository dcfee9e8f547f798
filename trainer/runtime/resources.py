"""The cores this process may use: what the scheduler granted (CPU affinity, SLURM's per-task count), not the node's.

One home for the count that sizes decode actors, the private Ray and TensorFlow's thread pools.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity (cgroup/cpuset, srun's binding, taskset), capped by
    SLURM_CPUS_PER_TASK when SLURM set it (with task/none SLURM grants cores without binding them)."""
    cores = len(os.sched_getaffinity(0))
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return max(1, min(cores, int(granted)) if granted.isdigit() and int(granted) > 0 else cores)


def cores_per_rank(local_size: int) -> int:
    """This rank's share: SLURM_CPUS_PER_TASK is already one task's (one rank's) grant; otherwise the ranks on
    this node (e.g. horovodrun's, which all see the whole node) split the cores they may use."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return usable_cores()
    return max(1, usable_cores() // max(1, local_size))
