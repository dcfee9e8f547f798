"""The Horovod adapter: the only module that imports Horovod. Everything distributed goes through here.

Horovod 0.28.1 predates Keras 3, whose variables are not tf.Variables, so this module sticks to Horovod's
core ops (grouped_allreduce, broadcast, allgather) and hands them the underlying tf.Variables
(`keras_variable.value`). A plain `twostream train` is a world of one; `horovodrun -np N` a world of N.
"""

from __future__ import annotations

import contextlib

import horovod.tensorflow as hvd
import tensorflow as tf
from horovod.common.exceptions import HorovodInternalError

from twostream.trainer.engine.errors import RunError
from twostream.trainer.runtime import peers
from twostream.trainer.runtime.resources import cores_per_rank


def init() -> None:
    """Starts Horovod, pins this process to the GPU of its local rank (when there are GPUs) and gives it
    its share of the cores the scheduler granted for TensorFlow's op threads (ranks on one node would otherwise
    each start one thread per core of the node and fight over them)."""
    hvd.init()
    cores = cores_per_rank(hvd.local_size())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(cores, 2))
    except RuntimeError:  # TensorFlow already started in this process (e.g. a second init): keep its threads
        pass
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")


def rank() -> int:
    return hvd.rank()


def size() -> int:
    return hvd.size()


def local_rank() -> int:
    return hvd.local_rank()


def local_size() -> int:
    return hvd.local_size()


def is_chief() -> bool:
    """True on rank 0, the only rank that logs, writes checkpoints and exports."""
    return hvd.rank() == 0


def average(tensors: list, fp16_compression: bool = False) -> list:
    """Averages a list of tensors (e.g. gradients) over all ranks in one fused collective."""
    if hvd.size() == 1:
        return list(tensors)
    compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
    return hvd.grouped_allreduce(list(tensors), op=hvd.Average, compression=compression)


def sum_over_ranks(tensors: list) -> list:
    """Sums tensors over ranks: used for exact metrics (sum the statistics, then divide)."""
    if hvd.size() == 1:
        return list(tensors)
    return hvd.grouped_allreduce(list(tensors), op=hvd.Sum)


def broadcast_variables(variables, root_rank: int = 0) -> None:
    """Copies root's values into every rank's variables (Keras 3 or tf.Variable) in place."""
    if hvd.size() > 1:
        hvd.broadcast_variables([_as_tf_variable(v) for v in variables], root_rank)


def _as_tf_variable(variable) -> tf.Variable:
    """A Keras 3 variable keeps its tf.Variable in `.value`; Horovod only knows tf.Variables."""
    return variable if isinstance(variable, tf.Variable) else variable.value


def all_agree(flag: bool) -> bool:
    """True only if `flag` is true on every rank; every rank gets the same answer (a collective)."""
    if hvd.size() == 1:
        return bool(flag)
    total = hvd.allreduce(tf.constant(int(bool(flag)), tf.int32), op=hvd.Sum, name="all_agree")
    return int(total) == hvd.size()


def gather_objects(obj) -> list:
    """Every rank's picklable `obj`, in rank order, on every rank (e.g. per-rank data reports)."""
    if hvd.size() == 1:
        return [obj]
    return hvd.allgather_object(obj, name="gather_objects")


@contextlib.contextmanager
def lost_ranks_named():
    """Runs a block of collectives (not elastic); when one fails because a rank's process or host is gone, raises a
    RunError naming that rank, its host and why (peers.py) instead of Horovod's traceback. Every rank opens a beacon
    first and learns the others' (a collective)."""
    if hvd.size() == 1:
        yield
        return
    beacon = peers.Beacon()
    try:
        beacons = hvd.allgather_object(beacon.address(), name="peer_beacons")
        try:
            yield
        except tf.errors.OpError as error:
            if "Horovod" not in str(error.message):
                raise
            raise RunError(peers.failure_message(beacons, hvd.rank(), str(error.message))) from None
    finally:
        beacon.close()


# ---------------------------------------------------------------------- elastic mode (horovodrun --min-np/--max-np)
class KerasState(hvd.elastic.ObjectState):
    """Horovod elastic state for Keras 3 variables plus plain Python attributes (step, epoch, ...).

    Horovod's own TensorFlowState cannot be used: in TF2 eager mode its sync() re-broadcasts nothing
    (it runs its broadcast op only when it has a TF1 session), so a worker that joins after a reset would
    keep its own random weights; and its constructor broadcasts (a collective) before elastic.run, which a
    worker joining later would issue while the others are inside sync. Here: commit() copies the variables
    to host memory, restore() assigns them back, sync() broadcasts rank 0's variables and attributes.
    """

    def __init__(self, variables, **attributes):
        self.variables = [_as_tf_variable(v) for v in variables]
        self._saved_values = None
        super().__init__(bcast_object=hvd.broadcast_object, get_rank=hvd.rank, **attributes)
        self._save_variables()

    def _save_variables(self) -> None:
        self._saved_values = [v.numpy() for v in self.variables]

    def save(self) -> None:
        self._save_variables()
        super().save()

    def restore(self) -> None:
        for variable, value in zip(self.variables, self._saved_values):
            variable.assign(value)
        super().restore()

    def sync(self) -> None:
        broadcast_variables(self.variables, 0)
        self._save_variables()
        super().sync()

    def save_attributes(self) -> None:
        """Commits the Python attributes only (e.g. a reset counter changed in a reset callback)."""
        super().save()


def run_elastic(body, state: KerasState):
    """Runs body(state) under hvd.elastic.run: when a rank dies or hosts change, every surviving rank rolls
    back to the last commit (or keeps the state, for a host change), Horovod re-initialises with the new
    world, the state is broadcast from rank 0, and body(state) runs again from the top."""
    return hvd.elastic.run(_horovod_errors_as_internal(body))(state)


def _horovod_errors_as_internal(body):
    """hvd.elastic.run turns a tf UnknownError into a reset only when its message names HorovodAllreduce,
    HorovodAllgather or HorovodBroadcast, and silently swallows any other (returning None). Our step uses
    grouped_allreduce, whose failure names HorovodGroupedAllreduce: measured, a survivor of a SIGKILLed
    peer then left fit() with None after 9 of 24 steps and exited 0. So any tf.errors.OpError naming
    Horovod becomes the HorovodInternalError that triggers the reset; other errors propagate."""

    def wrapped(state):
        try:
            return body(state)
        except tf.errors.OpError as error:
            if "Horovod" in str(error.message):
                raise HorovodInternalError(error) from error
            raise

    return wrapped


def build_info() -> dict:
    """What this Horovod was built with (for `twostream doctor`): controllers and tensor operations."""
    import horovod

    return {
        "version": horovod.__version__,
        "controllers": {"gloo": hvd.gloo_built(), "mpi": hvd.mpi_built()},
        "tensor_operations": {
            "nccl": bool(hvd.nccl_built()),
            "ddl": hvd.ddl_built(),
            "ccl": hvd.ccl_built(),
            "mpi": hvd.mpi_built(),
            "gloo": hvd.gloo_built(),
        },
        "gpu": {"cuda": hvd.cuda_built(), "rocm": hvd.rocm_built()},
    }


def broadcast_object(obj, root_rank: int = 0):
    """Root's picklable `obj` on every rank (a collective), e.g. the loop state rank 0 restored."""
    if hvd.size() == 1:
        return obj
    return hvd.broadcast_object(obj, root_rank, name="broadcast_object")
