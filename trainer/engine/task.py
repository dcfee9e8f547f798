"""What a task gives the training loop (jaxline's experiment): a model, this rank's batches, a loss, an evaluation.

The loop (trainer/engine/loop.py) owns the optimizer, schedule, checkpoints, resume, logging, NaN guard, preemption
and best-model selection; a task owns what is trained on and how it is scored. trainer/video/video_task.py is the
two-stream video task; `FunctionTask` wraps plain functions, which is what `loop.fit` does for any Keras model.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

import keras

from twostream.trainer.engine.step import StepOptions, make_train_step


class Task(abc.ABC):
    """Subclass and set `model` and `steps_per_epoch`; define `batches`, and override the rest where needed."""

    model: keras.Model
    steps_per_epoch: int  # the same on every rank and in every epoch
    loss: Callable | None = None  # loss(labels, outputs, weights) -> mean loss; None: cross-entropy on logits

    @abc.abstractmethod
    def batches(self, epoch: int, from_step: int) -> Iterable:
        """This rank's (inputs, labels[, weights]) batches of `epoch` from step `from_step` on (> 0 when resuming
        mid-epoch): exactly steps_per_epoch - from_step of them. Called again after an elastic reset, so it
        must shard by the current dist.rank() / dist.size()."""

    def begin(self, step: int) -> None:  # noqa: B027 (an optional hook: a task may have nothing to do here)
        """Called on every rank once the checkpoint (if any) is restored, before the first step: the run can start."""

    def train_step(self, optimizer: keras.optimizers.Optimizer, options: StepOptions) -> Callable:
        """step(*batch) -> the loss averaged over ranks; traced anew for every world (after an elastic reset)."""
        return make_train_step(self.model, optimizer, options, loss=self.loss)

    def evaluate(self) -> dict:
        """Held-out metrics, exact over ranks (a collective: every rank calls it); {} for none."""
        return {}

    def epoch_fields(self, batches: Iterable) -> dict:
        """Extra fields for the record of the epoch just trained on `batches`, what batches() returned for it (so
        a task reads that epoch's own report there); a collective: every rank calls it."""
        return {}

    def advise(self, record: dict) -> list[str]:
        """Warnings for rank 0 to log about the first epoch a run trains, read off its record (e.g. the data could
        not keep up with the steps), each naming what to change; [] for none."""
        return []

    def images(self, batch) -> dict:
        """{name: uint8 (N, H, W, 3)} for TensorBoard from each epoch's first batch (rank 0 only); {} for none."""
        return {}

    def describe(self, batch) -> str:
        """A line about the first batch for the log (debug mode); "" for none."""
        return ""


class FunctionTask(Task):
    """A task made of plain functions: batches(epoch, from_step) and optionally loss and evaluate()."""

    def __init__(
        self,
        model: keras.Model,
        batches: Callable[[int, int], Iterable],
        steps_per_epoch: int,
        loss: Callable | None = None,
        evaluate: Callable[[], dict] | None = None,
    ):
        self.model, self.steps_per_epoch, self.loss = model, steps_per_epoch, loss
        self._batches, self._evaluate = batches, evaluate

    def batches(self, epoch: int, from_step: int) -> Iterable:
        return self._batches(epoch, from_step)

    def evaluate(self) -> dict:
        return self._evaluate() if self._evaluate is not None else {}
