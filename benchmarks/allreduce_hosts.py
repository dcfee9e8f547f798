"""Gloo allreduce of real gradients between 2 and 3 hosts at a limited line rate, against the ring model.

Usage (root; makes network-namespace hosts with scripts/hosts.sh, removes them after):
    python benchmarks/allreduce_hosts.py [--hosts 2 3] [--rates 1gbit 10gbit] [--models demo:c3d two_stream_resnet50]
        [--repeats 3]

For each model, the trainable variables' shapes (float32 gradients) at 112 px, 8 frames. For each host count and
rate, every host's eth0 gets a `tc tbf` at that rate (what a host can send: a NIC's line rate), one Horovod rank per
host meets through a Gloo rendezvous on host 1 (as `launch slurm` does, no SSH), and each rank times `repeats`
averages of the gradients after one warm-up (dist.average: one grouped allreduce). The ring model is
2(N-1)/N x bytes / rate; measured / model is the share of the line rate Gloo's ring achieves here (its TCP over
veth, on this machine's 2 cores), which is what `benchmarks/projection.py --net-efficiency` stands for.
Results: one JSON line per case appended to benchmarks/results/allreduce_hosts_cpu2.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTS_SH = os.path.join(REPO, "scripts", "hosts.sh")
RESULTS = os.path.join(REPO, "benchmarks", "results", "allreduce_hosts_cpu2.jsonl")
PREFIX, SUBNET = "tsar", "10.78.0"  # a bed of its own, beside any test's
SIZE, FRAMES = 112, 8


def gradient_shapes(name: str) -> list[list[int]]:
    """The trainable variables' shapes of model `name` (a registry name, or preset:name for a preset's model)."""
    import numpy as np

    from twostream.data.decode.clip_spec import ClipSpec
    from twostream.models.registry import build_model
    from twostream.models.two_stream import ModelSpec
    from twostream.trainer import config as config_lib

    if ":" in name:
        preset, _ = name.split(":", 1)
        config = config_lib.load(preset=preset)
        spec, clip = config.model, config.clip
    else:
        spec, clip = ModelSpec(name=name), ClipSpec(num_frames=FRAMES, size=SIZE)
    model = build_model(spec, 2, clip.rgb_shape, clip.flow_shape)
    shapes = [list(map(int, v.shape)) for v in model.trainable_weights]
    print(f"{name}: {sum(int(np.prod(s)) for s in shapes) * 4 / 1e6:.1f} MB of gradients", flush=True)
    return shapes


def rank_main(shapes_file: str, repeats: int) -> None:
    """One rank (Horovod's variables set by `launcher_main`): times the averages; rank 0 prints a RESULT line."""
    import tensorflow as tf

    from twostream.trainer import dist

    dist.init()
    with open(shapes_file) as f:
        shapes = json.load(f)
    tensors = [tf.ones(shape) for shape in shapes]
    average = tf.function(dist.average)
    [t.numpy() for t in average(tensors)]  # warm-up: traces, and Gloo's first connections
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [t.numpy() for t in average(tensors)]
        times.append(time.perf_counter() - start)
    if dist.is_chief():
        print("RESULT " + json.dumps({"ranks": dist.size(), "seconds": times}), flush=True)


def launcher_main(hosts: int, shapes_file: str, repeats: int) -> int:
    """On host 1: Horovod's rendezvous for node1:1,...,nodeN:1, then one rank per host (hosts.sh run)."""
    from horovod.runner.http.http_server import RendezvousServer

    from twostream.launch.jobs.srun import plan

    slots = plan(",".join(f"node{i}:1" for i in range(1, hosts + 1)))
    server = RendezvousServer()
    port = server.start()
    server.init(slots)
    ranks = []
    for slot in slots:
        env = {
            **os.environ,
            "HOROVOD_GLOO_RENDEZVOUS_ADDR": f"{SUBNET}.11",
            "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
            "HOROVOD_CONTROLLER": "gloo",
            "HOROVOD_CPU_OPERATIONS": "gloo",
            "HOROVOD_GLOO_IFACE": "eth0",
            "HOROVOD_HOSTNAME": slot.hostname,
            "HOROVOD_RANK": str(slot.rank),
            "HOROVOD_SIZE": str(slot.size),
            "HOROVOD_LOCAL_RANK": "0",
            "HOROVOD_LOCAL_SIZE": "1",
            "HOROVOD_CROSS_RANK": str(slot.cross_rank),
            "HOROVOD_CROSS_SIZE": str(slot.cross_size),
        }
        host = slot.hostname.removeprefix("node")
        command = [HOSTS_SH, "run", host, sys.executable, __file__, "--rank", shapes_file, "--repeats", str(repeats)]
        ranks.append(subprocess.Popen(command, env=env))
    codes = [rank.wait() for rank in ranks]
    server.stop()
    return max(codes)


def hosts_sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOSTS_PREFIX": PREFIX, "HOSTS_SUBNET": SUBNET}
    return subprocess.run([HOSTS_SH, *args], env=env, capture_output=True, text=True, check=check)


def measure(hosts: int, rate: str, shapes_file: str, repeats: int) -> list[float]:
    """Seconds per average, rank 0's, with every host's eth0 limited to `rate`."""
    for host in range(1, hosts + 1):
        hosts_sh("run", str(host), "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst",
                 "1mb", "latency", "100ms")  # fmt: skip
    done = hosts_sh("run", "1", sys.executable, __file__, "--launch", str(hosts), shapes_file, "--repeats",
                    str(repeats), check=False)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"allreduce on {hosts} hosts at {rate} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[0][len("RESULT ") :])["seconds"]


def bits_per_s(rate: str) -> float:
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, factor in units.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * factor
    raise SystemExit(f"--rates takes e.g. 1gbit or 100mbit, got {rate!r}")


def record(case: dict) -> None:
    with open(RESULTS, "a") as f:
        f.write(json.dumps(case) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--rates", nargs="+", default=["1gbit", "10gbit"])
    parser.add_argument("--models", nargs="+", default=["demo:c3d", "two_stream_resnet50"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank", help=argparse.SUPPRESS)
    parser.add_argument("--launch", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank:
        rank_main(args.rank, args.repeats)
        return 0
    if args.launch:
        return launcher_main(int(args.launch[0]), args.launch[1], args.repeats)
    return compare(args)


def compare(args) -> int:
    folder = tempfile.mkdtemp(prefix="allreduce")
    print(f"{'model':>22} {'hosts':>5} {'rate':>7} {'MB':>7} {'model s':>8} {'measured s':>10} {'measured/model':>14}")
    for name in args.models:
        shapes = gradient_shapes(name)
        shapes_file = os.path.join(folder, f"{name.replace(':', '_')}.json")
        with open(shapes_file, "w") as f:
            json.dump(shapes, f)
        grad_bytes = sum(4 * math.prod(s) for s in shapes)
        for hosts in args.hosts:
            hosts_sh("up", str(hosts))
            try:
                for rate in args.rates:
                    seconds = statistics.median(measure(hosts, rate, shapes_file, args.repeats))
                    model_s = 2 * (hosts - 1) / hosts * grad_bytes * 8 / bits_per_s(rate)
                    print(f"{name:>22} {hosts:>5} {rate:>7} {grad_bytes / 1e6:>7.1f} {model_s:>8.3f} "
                          f"{seconds:>10.3f} {seconds / model_s:>14.2f}", flush=True)  # fmt: skip
                    record(
                        {
                            "date": datetime.date.today().isoformat(),
                            "machine": "cpu2",
                            "command": "python benchmarks/allreduce_hosts.py " + " ".join(sys.argv[1:]),
                            "variant": f"{name} {hosts} hosts {rate}",
                            "metric": "allreduce_s_measured_over_ring_model",
                            "value": round(seconds / model_s, 3),
                            "unit": "ratio",
                            "seconds": round(seconds, 4),
                            "model_seconds": round(model_s, 4),
                            "gradient_mb": round(grad_bytes / 1e6, 2),
                        }
                    )
            finally:
                hosts_sh("down", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
