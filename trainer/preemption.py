"""Preemption: SIGTERM, or the scheduler's warning signal SIGUSR1 (SLURM `--signal=USR1@N`), asks the job to stop.

A signal only sets a flag on the rank that received it; the loop asks every rank at its regular host
reads (every train.log_every steps, and at checkpoints and epoch ends) whether any rank was signalled (one
tiny allreduce), so every rank stops after the same step. Rank 0 then checkpoints that step, writes a
`preempted` record to metrics.jsonl, and the process exits with EXIT_CODE, which tells a scheduler
(e.g. the sbatch script) to requeue the job; the requeued job resumes from that step.
"""
from __future__ import annotations

import logging
import signal
import threading

from twostream.trainer import dist

log = logging.getLogger("twostream")

EXIT_CODE = 75   # EX_TEMPFAIL (sysexits.h): stopped on request, resumable; `twostream train` exits with it
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Every rank stopped after `step` (in `epoch`, 1-based) on a preemption signal; the checkpoint is saved."""

    def __init__(self, step: int, epoch: int):
        super().__init__(f"preempted: stopped after step {step} (epoch {epoch}); checkpoint saved, "
                         f"start the same job again to resume (exit code {EXIT_CODE})")
        self.step, self.epoch = step, epoch


class StopListener:
    """While entered, SIGTERM and SIGUSR1 set `signalled` instead of ending the process."""

    def __init__(self):
        self.signalled = False
        self._previous = {}

    def __enter__(self) -> "StopListener":
        if threading.current_thread() is threading.main_thread():   # Python allows handlers only there
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, frame) -> None:
        if not self.signalled:
            log.warning("received %s: stopping at the next agreed step, after a checkpoint",
                        signal.Signals(number).name)
        self.signalled = True

    def agreed(self) -> bool:
        """True on every rank if any rank was signalled (a collective: every rank calls it at the same step)."""
        return not dist.all_agree(not self.signalled)
