"""The training loop: trains a Task (trainer/engine/task.py) with checkpoints, resume, logging, a NaN guard, preemption
and best-model selection; `fit` runs any Keras model through it."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import keras

from twostream.models.precision import computes_in_float16
from twostream.trainer import config as config_lib
from twostream.trainer import dist
from twostream.trainer.engine.checkpoint import Checkpoints, check_workdir
from twostream.trainer.engine.optimizer import learning_rate_schedule, make_optimizer, step_options
from twostream.trainer.engine.runlog import EpochProgress, RunLog
from twostream.trainer.engine.selection import is_better
from twostream.trainer.engine.step import StepTotals, check_accumulation, make_steps_call
from twostream.trainer.engine.task import FunctionTask, Task
from twostream.trainer.runtime.preemption import Preempted, StopListener, raise_if_interrupted

log = logging.getLogger("twostream")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; raised on every rank after the same step (the loss is allreduced)."""


@dataclass
class LoopState:
    """Everything the loop carries between steps: saved in each checkpoint, committed in elastic mode."""

    step: int = 0  # optimizer steps done, over all epochs
    resets: int = 0  # elastic resets in this job (not saved: counted per job)
    loss_sum: float = 0.0  # this epoch's finite losses, summed ...
    finite_steps: int = 0  # ... and counted
    skipped_steps: int = 0  # this epoch's updates skipped for a non-finite loss
    best_value: float | None = None  # train.select_metric at the best epoch so far
    best_epoch: int = 0
    last_record: dict | None = None  # the last epoch record, saved with its checkpoint before it is logged

    def saved(self) -> dict:
        """What a checkpoint stores besides the step (its own variable); resets are counted per job."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("step", "resets")}


# ---------------------------------------------------------------------- entry points
def fit(
    model: keras.Model,
    train: config_lib.TrainConfig,
    workdir: str,
    batches: Callable[[int, int], Iterable],
    steps_per_epoch: int,
    *,
    loss: Callable | None = None,
    evaluate: Callable[[], dict] | None = None,
) -> dict:
    """The loop for any Keras model: see Task.batches for `batches`, Task.loss for `loss`, Task.evaluate for
    `evaluate`. Returns the last evaluation (the same dict on every rank), with "best" when one was selected."""
    dist.init()
    check_workdir(workdir, collective=not train.elastic)
    return run(FunctionTask(model, batches, steps_per_epoch, loss, evaluate), train, workdir)


def run(task: Task, train: config_lib.TrainConfig, workdir: str) -> dict:
    """Trains `task` to train.epochs, resuming from the workdir's latest checkpoint (a workdir that passed
    check_workdir). Raises Preempted when a preemption signal stopped it (checkpoint saved) and
    NonFiniteLossError on a NaN/Inf loss (train.on_nonfinite=stop)."""
    dist.init()
    schedule = learning_rate_schedule(train, train.lr, task.steps_per_epoch)  # peak set per world in Loop
    optimizer = make_optimizer(train, schedule, loss_scale=computes_in_float16(task.model))
    optimizer.build(task.model.trainable_variables)  # create slots now, so they can be restored and broadcast
    with StopListener() as stop:
        checkpoints = Checkpoints(workdir, task.model, optimizer)
        if not train.elastic:
            with dist.lost_ranks_named():  # a rank or host gone: one line naming it, not Horovod's traceback
                step = checkpoints.restore_or_initialize()  # + broadcast from rank 0 (marked: Horovod)
                state = LoopState(step=step, **checkpoints.state)
                task.begin(step)
                return Loop(task, train, workdir, optimizer, schedule, stop).run(state)
        # Elastic: rank 0 restores alone; elastic.run's first sync broadcasts weights and state to every rank
        # (a collective here would deadlock a rank that joins later, while the others are inside sync).
        step = checkpoints.restore_on_chief()
        task.begin(step)
        elastic = dist.KerasState(
            list(task.model.variables) + list(optimizer.variables), loop=LoopState(step=step, **checkpoints.state)
        )
        elastic.register_reset_callbacks([lambda: count_reset(elastic)])
        return dist.run_elastic(
            lambda synced: Loop(task, train, workdir, optimizer, schedule, stop, synced).run(
                dataclasses.replace(synced.loop)
            ),
            elastic,
        )


def count_reset(elastic) -> None:
    """Elastic reset callback (every surviving rank, before the sync): count it in the committed state."""
    elastic.loop = dataclasses.replace(elastic.loop, resets=elastic.loop.resets + 1)
    elastic.save_attributes()
    log.warning(
        "elastic reset %d: continuing from step %d with the ranks that are left or added",
        elastic.loop.resets,
        elastic.loop.step,
    )


# ---------------------------------------------------------------------- the loop
class Loop:
    """One (re)start of training, from state.step to the end; elastic mode builds a new one after every reset."""

    def __init__(
        self,
        task: Task,
        train: config_lib.TrainConfig,
        workdir: str,
        optimizer,
        schedule,
        stop: StopListener,
        elastic=None,
    ):
        self.task, self.train, self.optimizer, self.stop, self.elastic = task, train, optimizer, stop, elastic
        self.chief = dist.is_chief()  # after an elastic reset rank 0 may be another process
        if elastic is not None and elastic.loop.resets:
            check_workdir(workdir)  # the new rank 0's workdir
        self.steps_per_epoch = task.steps_per_epoch
        schedule.peak = train.lr * (dist.size() if train.scale_lr_with_world else 1)  # Horovod: lr x world size
        self.totals = StepTotals()  # on the device until the next host read
        # Traced anew for this world: a step traced at size 1 holds no allreduce.
        self.run_steps = make_steps_call(
            task.train_step(optimizer, step_options(train)), self.totals, eager=train.eager
        )
        self.checkpoints = Checkpoints(workdir, task.model, optimizer, keep=train.keep_checkpoints)
        self.runlog = RunLog(workdir, enabled=self.chief)
        self.progress: EpochProgress | None = None  # the current epoch's bar and clock
        self.traced = False  # run_steps has been called (and so traced) in this world
        self.advised = False  # the task's advice on the first epoch trained was logged
        self.stop_checkpoint: tuple[int, int] | None = None  # rank 0: (step, epoch) it checkpointed for a stop signal
        self.intervals = [
            n
            for n in (train.log_every, train.checkpoint_every, train.elastic_commit_every if elastic is not None else 0)
            if n > 0
        ]

    def run(self, state: LoopState) -> dict:
        metrics = {}
        try:
            self.runlog.restore(state.last_record)  # written if a stop came between its checkpoint and itself
            while state.step < self.train.epochs * self.steps_per_epoch:
                metrics = self.train_epoch(state)
            metrics = metrics or self.task.evaluate()  # resumed after the last epoch: nothing trained, still report
            best = {"epoch": state.best_epoch, "metric": self.train.select_metric, "value": state.best_value}
            self.runlog.record(
                "final",
                step=state.step,
                total_steps=self.train.epochs * self.steps_per_epoch,
                **{f"val_{k}": v for k, v in metrics.items()},
                **({"best": best} if state.best_epoch else {}),
            )
            return metrics | ({"best": best} if state.best_epoch else {})
        finally:
            if self.progress is not None:  # a stopped epoch's bar ends its line before the stop's message
                self.progress.close()
            self.runlog.close()

    def train_epoch(self, state: LoopState) -> dict:
        epoch, first = divmod(state.step, self.steps_per_epoch)  # first > 0: resuming mid-epoch
        end = (epoch + 1) * self.steps_per_epoch
        self.progress = EpochProgress(
            epoch, self.train.epochs, self.steps_per_epoch, first, self.train.global_batch, shown=self.chief
        )
        source = self.task.batches(epoch, first)  # handed back to the task at the epoch's end (its report)
        batches = iter(source)
        while chunk := self.progress.take(batches, min(self.train.steps_per_call, self.steps_to_action(state, end))):
            if self.progress.ran == 0:
                self.first_batch(state, chunk[0])
            raise_if_interrupted()  # a Ctrl-C that library code swallowed stops the run here
            started = time.perf_counter()
            self.run_steps(chunk)
            state.step += len(chunk)
            self.progress.advance(len(chunk), time.perf_counter() - started, traced=not self.traced)
            self.traced = True
            if state.step < end and any(state.step % n == 0 for n in self.intervals):
                self.periodic_actions(state, epoch)
            if state.step < end:
                self.checkpoint_for_stop(state, epoch)
        self.progress.close()
        if state.step != end or self.progress.take(batches, 1):  # the last take runs the source to its end
            given = f"{'more than ' if state.step == end else ''}{self.progress.ran}"
            raise RuntimeError(
                f"epoch {epoch + 1} gave {given} batches, expected {self.steps_per_epoch - first}: "
                "every rank must yield exactly steps_per_epoch batches"
            )
        return self.end_epoch(state, epoch, source)

    def steps_to_action(self, state: LoopState, end: int) -> int:
        """Steps until the next periodic action or the epoch's end: a call of several steps stops there."""
        return min([end - state.step] + [n - state.step % n for n in self.intervals])

    def first_batch(self, state: LoopState, batch) -> None:
        check_accumulation(batch[1], self.train.accumulate_steps)
        if self.train.debug and (line := self.task.describe(batch)):
            log.info(line)
        if self.chief and (images := self.task.images(batch)):
            self.runlog.images(state.step, images)

    # ------------------------------------------------------------------ periodic actions
    def periodic_actions(self, state: LoopState, epoch: int) -> None:
        """At every multiple of train.log_every, checkpoint_every and (elastic) elastic_commit_every steps."""
        self.read_totals(state)  # first: nothing is saved or committed past a NaN
        if (
            self.train.checkpoint_every
            and state.step % self.train.checkpoint_every == 0
            and self.stop_checkpoint is None
        ):  # a stop's checkpoint stays the latest: the run resumes there
            self.checkpoints.save(state.step, state.saved())
        if self.elastic is not None and state.step % self.train.elastic_commit_every == 0:
            self.commit(state)  # a point to roll back to and to take host changes
        if self.stop.agreed():
            self.preempted(state, epoch, saved=False)

    def read_totals(self, state: LoopState) -> None:
        """The window's losses from the device (its one host sync): NaN guard, running totals, logging."""
        window = self.totals.read_and_reset()
        steps = window["finite"] + window["nonfinite"]
        if window["nonfinite"]:
            bad_step = state.step - steps + window["first_nonfinite"] + 1
            if self.train.on_nonfinite != "skip":  # the same value on every rank: all stop together, no hang
                raise NonFiniteLossError(
                    f"loss is {window['first_nonfinite_value']} at step {bad_step} (epoch "
                    f"{(bad_step - 1) // self.steps_per_epoch + 1}) (a non-finite gradient counts as a NaN loss); "
                    "lower train.lr or check the data. The last good checkpoint is kept."
                )
            log.warning(
                "non-finite loss in %d of steps %d-%d (first: %s at step %d): those updates were skipped on every rank",
                window["nonfinite"],
                state.step - steps + 1,
                state.step,
                window["first_nonfinite_value"],
                bad_step,
            )
        state.loss_sum += window["loss_sum"]
        state.finite_steps += window["finite"]
        state.skipped_steps += window["nonfinite"]
        if window["finite"]:
            loss = window["loss_sum"] / window["finite"]
            self.runlog.scalars(state.step, {"train/loss": loss, "train/lr": float(self.optimizer.learning_rate)})
            assert self.progress is not None, "totals are read only within train_epoch, which starts the progress"
            self.progress.show(loss)

    def commit(self, state: LoopState) -> None:
        self.elastic.loop = dataclasses.replace(state)
        self.elastic.commit()

    # ------------------------------------------------------------------ stopping on a signal
    def checkpoint_for_stop(self, state: LoopState, epoch: int) -> None:
        """Rank 0, at its first step boundary after a stop signal: checkpoints this step at once, without a collective.
        A scheduler's SIGTERM (scancel, a time limit) also reaches the node's Ray, so the decoders may be gone
        before the agreed step comes; the ranks still stop there, and the run resumes from this checkpoint."""
        if not (self.chief and self.stop.signalled) or self.stop_checkpoint is not None:
            return
        self.read_totals(state)  # nothing saved past a NaN, and the saved totals hold every step so far
        self.save_stop_checkpoint(state, epoch)
        log.warning("checkpoint of step %d saved for the stop; the ranks stop at the next agreed step", state.step)

    def save_stop_checkpoint(self, state: LoopState, epoch: int, saved: bool = False) -> None:
        if not saved:
            self.checkpoints.save(state.step, state.saved())
        self.runlog.record("preempted", step=state.step, epoch=epoch + 1)
        self.stop_checkpoint = (state.step, epoch + 1)

    def preempted(self, state: LoopState, epoch: int, saved: bool) -> None:
        """Every rank, at the agreed step: rank 0 checkpoints it unless it already saved for the stop, then all exit
        with Preempted naming the checkpoint the run resumes from."""
        if self.chief and self.stop_checkpoint is None:
            self.save_stop_checkpoint(state, epoch, saved)
        # A barrier too: no rank exits (and horovodrun cuts the rest) before rank 0 has saved.
        step, stopped_epoch = dist.broadcast_object(self.stop_checkpoint)
        raise Preempted(step, stopped_epoch)

    # ------------------------------------------------------------------ the epoch's end
    def end_epoch(self, state: LoopState, epoch: int, source: Iterable) -> dict:
        """Evaluates, selects the best, checkpoints with the epoch's record (the task's fields for `source`, the
        epoch's batches), then rank 0 logs that record; when rank 0 has already checkpointed an earlier step for
        a stop, every rank stops there first."""
        if dist.broadcast_object(self.stop_checkpoint) is not None:
            self.preempted(state, epoch, saved=True)
        self.read_totals(state)
        assert self.progress is not None, "train_epoch, the only caller, starts the epoch's progress"
        speed = self.progress.rates()  # the epoch's training alone, before the evaluation
        metrics = self.task.evaluate()
        record = {
            "epoch": epoch + 1,
            "step": state.step,
            "steps": self.steps_per_epoch,
            "world_size": dist.size(),
            "resets": state.resets,
            "train_loss": state.loss_sum / state.finite_steps if state.finite_steps else None,
            "skipped_steps": state.skipped_steps,
            **{f"val_{k}": v for k, v in metrics.items()},
            **speed,
            **self.task.epoch_fields(source),
        }
        state.loss_sum, state.finite_steps, state.skipped_steps = 0.0, 0, 0  # the next epoch's totals
        state.last_record = record
        if is_better(self.train.select_metric, record, state.best_value):
            state.best_value, state.best_epoch = record[self.train.select_metric], epoch + 1
            self.checkpoints.save_best(state.step, state.saved())
        self.checkpoints.save(state.step, state.saved())  # with the record: a stop now loses nothing
        self.runlog.epoch(record, metrics)
        if self.chief and not self.advised:
            self.advised = True
            for line in self.task.advise(record):
                log.warning(line)
        if self.elastic is not None:
            self.commit(state)
        if self.stop.agreed():
            self.preempted(state, epoch, saved=True)
        return metrics
