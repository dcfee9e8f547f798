"""Preemption and Ctrl-C: SIGTERM, or the scheduler's warning signal SIGUSR1 (SLURM `--signal=USR1@N`), asks the job
to stop at an agreed step; SIGINT (Ctrl-C) stops it at once.

A signal only sets a flag on the rank that received it; the loop asks every rank at its regular host
reads (every train.log_every steps, and at checkpoints and epoch ends) whether any rank was signalled (one
tiny allreduce), so every rank stops after the same step. Rank 0 checkpoints at its first step boundary after
its own signal, without waiting for that agreement (a scheduler's SIGTERM also stops the node's Ray, so the
decoders may not feed the ranks to the agreed step), or else at the agreed step; it writes a `preempted`
record with the checkpoint's step to metrics.jsonl, and the process exits with EXIT_CODE, which tells a
scheduler (e.g. the sbatch script) to requeue the job; the requeued job resumes from that checkpoint.

Ctrl-C raises KeyboardInterrupt at once (no checkpoint: the step in flight is lost), except while a checkpoint
is written, which finishes first (`interrupts_deferred`); the run stops with Interrupted, one line and exit status
INTERRUPTED_EXIT_CODE, and the workdir resumes from its last checkpoint. A KeyboardInterrupt swallowed by library
code (a thread, a cleanup) is raised again at the loop's next step (`raise_if_interrupted`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from twostream.trainer import dist

log = logging.getLogger("twostream")

EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): stopped on request, resumable; `twostream train` exits with it
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT: the shell's status for a command stopped by Ctrl-C
_interrupted = False  # set by on_interrupt: Ctrl-C came, even if its KeyboardInterrupt was swallowed


class Preempted(Exception):
    """Every rank stopped on a preemption signal; the checkpoint of `step` (in `epoch`, 1-based) is saved."""

    def __init__(self, step: int, epoch: int):
        super().__init__(
            f"preempted: stopped with the checkpoint of step {step} (epoch {epoch}) saved; "
            f"start the same job again to resume from it (exit code {EXIT_CODE})"
        )
        self.step, self.epoch = step, epoch


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; the message says from which checkpoint the same command resumes."""


def on_interrupt(number, frame) -> None:
    """SIGINT handler (installed by catch_interrupts): remembers the Ctrl-C, then stops the run where it is."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def catch_interrupts() -> None:
    """Makes Ctrl-C remembered (see raise_if_interrupted) from now on; main thread only, as Python requires."""
    global _interrupted
    _interrupted = False
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_interrupt)


def raise_if_interrupted() -> None:
    """Raises KeyboardInterrupt again when a Ctrl-C came and its exception was swallowed on the way."""
    if _interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred():
    """A Ctrl-C inside the block takes effect at its end, so a checkpoint is never left half written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pending.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        on_interrupt(signal.SIGINT, None)


class StopListener:
    """While entered, SIGTERM and SIGUSR1 set `signalled` instead of ending the process."""

    def __init__(self):
        self.signalled = False
        self._previous = {}

    def __enter__(self) -> StopListener:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, frame) -> None:
        if not self.signalled:
            log.warning(
                "received %s: stopping at the next agreed step, after a checkpoint", signal.Signals(number).name
            )
        self.signalled = True

    def agreed(self) -> bool:
        """True on every rank if any rank was signalled (a collective: every rank calls it at the same step)."""
        return not dist.all_agree(not self.signalled)
