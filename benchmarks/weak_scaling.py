"""Weak scaling of the update step: 1 rank vs `horovodrun -np 2` (Gloo), the same per-rank batch, 1 op thread per rank.

Usage: python benchmarks/weak_scaling.py [--batch 4] [--steps 60] [--rounds 3] [--preset demo]
What it measures: the training step alone (forward, backward, Horovod's allreduce of the gradients, the
optimizer update) of the preset's model on synthetic uint8 clips held in memory, so decoding and the data
pipeline do not enter. Each rank gets one intra-op thread (and one inter-op thread), so 2 ranks use 2 cores
as 1 rank uses 1: perfect weak scaling is a per-rank throughput ratio (2 ranks / 1 rank) of 1.0; the gap
is the allreduce plus whatever else shares the cores. A control runs two 1-rank processes at once with
no Horovod between them: it shows the machine's own 2-core scaling, and 2 ranks / that control is
Horovod's share of the gap. The variants run in a rotating order for --rounds rounds; each times --steps
steps after 2 warm-up steps (tracing), and also an allreduce of gradient-sized tensors alone. Medians and
each variant's best round are printed, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WARMUP_STEPS = 2  # the first step traces the tf.function; the second still warms caches


def worker(preset: str, batch: int, steps: int) -> None:
    """One rank: times `steps` update steps on synthetic clips; rank 0 prints a JSON line."""
    import numpy as np
    import tensorflow as tf

    from twostream.models.registry import build_model
    from twostream.trainer import config as config_lib
    from twostream.trainer import dist
    from twostream.trainer.engine.optimizer import make_optimizer
    from twostream.trainer.engine.step import StepOptions, make_train_step

    dist.init()
    tf.config.threading.set_intra_op_parallelism_threads(1)  # before any op runs: replaces dist.init's choice
    tf.config.threading.set_inter_op_parallelism_threads(1)
    config = config_lib.load(preset)
    model = build_model(config.model, 2, config.clip.rgb_shape, config.clip.flow_shape)
    optimizer = make_optimizer(config.train, config.train.lr)
    optimizer.build(model.trainable_variables)
    dist.broadcast_variables(model.variables)
    step = make_train_step(model, optimizer, StepOptions())
    rng = np.random.default_rng(dist.rank())
    inputs = {
        "rgb": tf.constant(rng.integers(0, 256, (batch, *config.clip.rgb_shape), dtype=np.uint8)),
        "flow": tf.constant(rng.integers(0, 256, (batch, *config.clip.flow_shape), dtype=np.uint8)),
    }
    labels = tf.constant(rng.integers(0, 2, batch), tf.int32)
    for _ in range(WARMUP_STEPS):
        float(step(inputs, labels))
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        float(step(inputs, labels))  # float(): waits for the step (and its allreduce) to finish
    elapsed = time.perf_counter() - start  # rank 0's time; the allreduces keep the ranks in step
    cores_busy = (time.process_time() - cpu_start) / elapsed  # this process's CPU use, in cores
    allreduce_s = time_allreduce(model.trainable_variables, steps)
    if dist.is_chief():
        print(
            "RESULT "
            + json.dumps(
                {
                    "ranks": dist.size(),
                    "step_s": elapsed / steps,
                    "allreduce_s": allreduce_s,
                    "cores_busy": cores_busy,
                    "clips_per_s_per_rank": batch * steps / elapsed,
                    "threads": tf.config.threading.get_intra_op_parallelism_threads(),
                }
            ),
            flush=True,
        )


def time_allreduce(variables, repeats: int) -> float:
    """Seconds per allreduce of gradient-sized tensors alone (the step's collective, without its compute)."""
    import tensorflow as tf

    from twostream.trainer import dist

    average = tf.function(lambda tensors: dist.average(tensors))
    tensors = [tf.ones_like(v) for v in variables]
    average(tensors)
    start = time.perf_counter()
    for _ in range(repeats):
        [t.numpy() for t in average(tensors)]
    return (time.perf_counter() - start) / repeats


def run_variant(ranks: int, args) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--preset",
        args.preset,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    if ranks > 1:
        horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
        command = [horovodrun, "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return _result(done, f"{ranks}-rank run")


def run_two_independent(args) -> dict:
    """The control: two 1-rank processes at once, no Horovod between them: the machine's own 2-core scaling."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--preset",
        args.preset,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [
        _result(subprocess.CompletedProcess(r.args, r.wait(900), *r.communicate()), "independent run") for r in runs
    ]
    return {key: statistics.mean(r[key] for r in results) for key in results[0]}


def _result(done: subprocess.CompletedProcess, what: str) -> dict:
    lines = [line for line in done.stdout.splitlines() if "RESULT " in line]
    if done.returncode or not lines:
        raise SystemExit(f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="the model and clip size of this preset")
    parser.add_argument("--batch", type=int, default=4, help="clips per rank per step (the same for 1 and 2 ranks)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.preset, args.batch, args.steps)

    variants = {
        "1 rank": lambda: run_variant(1, args),
        "2 ranks (horovodrun)": lambda: run_variant(2, args),
        "2 independent 1-rank processes": lambda: run_two_independent(args),
    }
    names = list(variants)
    rates = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names[round_ % 3 :] + names[: round_ % 3]:  # rotate the order: a busy neighbour hits all
            result = variants[name]()
            rates[name].append(result["clips_per_s_per_rank"])
            print(
                f"round {round_ + 1}: {name}: {result['clips_per_s_per_rank']:.2f} clips/s per rank "
                f"({result['step_s'] * 1000:.1f} ms/step, of which an allreduce alone takes "
                f"{result['allreduce_s'] * 1000:.1f} ms; rank 0 kept {result['cores_busy']:.2f} cores busy)",
                flush=True,
            )
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"\npreset {args.preset}, {args.batch} clips per rank per step, {args.steps} steps x {args.rounds} rounds, "
        "1 op thread per process; clips/s per rank, median (best round):"
    )
    for name in names:
        print(f"  {name:32s} {median[name]:8.2f} ({max(rates[name]):.2f})")
    one, two, free = (median[name] for name in names)
    print(
        f"weak-scaling ratio, 2 ranks / 1 rank: {two / one:.3f} (best rounds "
        f"{max(rates[names[1]]) / max(rates[names[0]]):.3f}; goal >= 0.9)"
    )
    print(
        f"  the machine alone, 2 independent processes / 1: {free / one:.3f}; "
        f"Horovod's share, 2 ranks / 2 independent processes: {two / free:.3f}"
    )


if __name__ == "__main__":
    main()
