"""Rank 0's run records: metrics.jsonl (one JSON object per line), TensorBoard scalars and sample images."""

from __future__ import annotations

import json
import logging
import os
import time

import tensorflow as tf
from tqdm import tqdm

from twostream.trainer.engine.errors import RunError
from twostream.trainer.engine.selection import is_number

log = logging.getLogger("twostream")
METRICS_FILE = "metrics.jsonl"
# epoch-record fields shown in TensorBoard under train/: the speed, and where the data path's time went
TRAIN_SCALARS = (
    "clips_per_s",
    "data_wait_share",
    "step_ms",
    "actor_busy_share",
    "actor_cpu_share",
    "driver_share",
    "driver_wait_share",
    "calls_in_flight_mean",
)


def setup_logging(chief: bool) -> None:
    """INFO on rank 0, warnings only elsewhere: one readable log per job, not one per rank."""
    logging.basicConfig(
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=logging.INFO if chief else logging.WARNING,
        force=True,
    )
    logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow's per-iterator INFO chatter


class RunLog:
    """Writes under WORKDIR when `enabled` (rank 0); on every other rank each call does nothing."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        if enabled:
            self._path = os.path.join(workdir, METRICS_FILE)
            self._jsonl = open(self._path, "a")
            self._tensorboard = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self._tensorboard.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def images(self, step: int, images: dict, max_outputs: int = 3) -> None:
        """Writes each uint8 (N, H, W, 3) array of `images` {name: array} as TensorBoard images (the first
        max_outputs of each)."""
        if not self.enabled:
            return
        with self._tensorboard.as_default(step=step):
            for name, value in images.items():
                tf.summary.image(name, value, max_outputs=max_outputs)

    def record(self, kind: str, **fields) -> None:
        """Appends {"kind": ..., "time": unix seconds, **fields} to metrics.jsonl."""
        if not self.enabled:
            return
        try:
            self._jsonl.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")
            self._jsonl.flush()
        except OSError as error:  # a full disk: the checkpoints written so far still resume the run
            raise RunError(
                f"{self._path} could not be written ({error.strerror or error}); free space (or pass a "
                "--workdir on another disk) and run the same command to resume from the last "
                "checkpoint"
            ) from None

    def epoch(self, record: dict, metrics: dict) -> None:
        """The epoch's record in metrics.jsonl, its numbers in TensorBoard, and one log line."""
        self.record("epoch", **record)
        self.scalars(
            record["step"],
            {f"val/{name}": value for name, value in metrics.items() if is_number(value)}
            | {f"train/{name}": record[name] for name in TRAIN_SCALARS if is_number(record.get(name))},
        )
        log.info(
            "epoch %d: %s",
            record["epoch"],
            ", ".join(f"{k} {_short(v)}" for k, v in record.items() if k not in ("epoch", "failed")),
        )

    def restore(self, record: dict | None) -> None:
        """Appends an epoch record that a checkpoint saved but metrics.jsonl lacks (the job stopped between the two)."""
        if not self.enabled or not record:
            return
        with open(self._path) as f:
            logged = [_parsed(line) for line in f]
        if not any(
            r.get("kind") == "epoch" and (r["epoch"], r["step"]) == (record["epoch"], record["step"]) for r in logged
        ):
            self.record("epoch", **record)
            log.warning("epoch %d's record was saved with its checkpoint but not logged: appended now", record["epoch"])

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tensorboard.close()


class EpochProgress:
    """One epoch's progress bar (rank 0) and clock: steps run, time spent waiting for batches, clips per second."""

    def __init__(self, epoch: int, epochs: int, steps: int, first: int, global_batch: int, shown: bool):
        self.bar = tqdm(
            total=steps,
            initial=first,
            disable=not shown,
            unit="step",
            dynamic_ncols=True,
            desc=f"epoch {epoch + 1}/{epochs}",
        )
        self.start, self.waited, self.ran, self.global_batch = time.perf_counter(), 0.0, 0, global_batch
        self.stepping = 0.0  # seconds in the step calls (on an accelerator: their host side) ...
        self.timed = 0  # ... and the steps they ran, a call that traced the step left out

    def take(self, batches, count: int) -> list:
        """Up to `count` batches from the iterator `batches`, timing the wait."""
        wait_start = time.perf_counter()
        taken = [batch for _, batch in zip(range(count), batches)]
        self.waited += time.perf_counter() - wait_start
        return taken

    def advance(self, steps: int, seconds: float, traced: bool = False) -> None:
        """`steps` more steps done, their call taking `seconds`; `traced`: the call also traced the step."""
        self.ran += steps
        if not traced:
            self.stepping += seconds
            self.timed += steps
        self.bar.update(steps)

    def rates(self) -> dict:
        """{"clips_per_s", "data_wait_share", "step_ms"} since the epoch's (re)start."""
        elapsed = time.perf_counter() - self.start
        return {
            "clips_per_s": round(self.ran * self.global_batch / elapsed, 2),
            "data_wait_share": round(self.waited / elapsed, 4),
            "step_ms": round(1e3 * self.stepping / self.timed, 2) if self.timed else None,
        }

    def show(self, loss: float) -> None:
        rates = self.rates()
        self.bar.set_postfix(
            loss=f"{loss:.4f}", ex_s=f"{rates['clips_per_s']:.1f}", data_wait=f"{rates['data_wait_share']:.0%}"
        )

    def close(self) -> None:
        self.bar.close()


def _parsed(line: str) -> dict:
    """One metrics.jsonl line; {} for a line cut short by a killed job."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {}


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value
