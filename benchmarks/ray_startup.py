"""Ray start-up with several ranks on one node: a private Ray per rank against the one Ray the node's ranks share.

Usage: python benchmarks/ray_startup.py [--ranks 2] [--rounds 3] [--object-store-mb 1024]

Each round starts RANKS rank processes on this machine the way `twostream train` ranks start Ray
(trainer/runtime/ray_node.py `start_ray`): `private` (every rank its own Ray, as a rank alone on its node) and
`shared` (local rank 0 starts one Ray for all, the others join). Each rank builds a one-actor DecoderPool and
decodes one clip. Measured per round:
seconds from the ranks' process start to the first decoded clip (the slowest rank's: the job waits for it), and,
while every rank holds its first clip, the memory of the ranks and every process they started (Ray's GCS, raylet,
agents, workers, decode actors): summed RSS, which counts shared pages once per process, and summed PSS, which
splits them. The two variants alternate within each round, in a rotating order, so a busy neighbour slows them
alike; medians over the rounds, and shared/private ratios, are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

VARIANTS = ("private", "shared")


def rank_main(variant: str, local_rank: int, ranks: int, key: str, video: str, object_store_mb: int) -> None:
    """One rank: Ray as the variant says, one decoder actor, one clip; reports, then waits for a line on stdin."""
    started = psutil.Process().create_time()  # wall clock at this process's start (before its imports)
    from twostream.data.decode.clip_spec import ClipSpec
    from twostream.data.decode.sampling import TrainView
    from twostream.data.distributed.actors import ClipRequest, DecoderPool
    from twostream.trainer.runtime.ray_node import NodeRanks, start_ray, stop_ray

    node = NodeRanks(local_rank, ranks, key) if variant == "shared" else None
    start_ray(None, num_cpus=1, object_store_mb=object_store_mb, node=node)
    pool = DecoderPool(ClipSpec(num_frames=4, size=32), num_actors=1, clips_per_call=1)
    clip = next(pool.map([ClipRequest(video, TrainView(local_rank))]))
    assert clip.error is None, clip.error
    print(json.dumps({"seconds": time.time() - started}), flush=True)
    sys.stdin.readline()
    pool.shutdown()
    stop_ray()


def memory(pids: list[int]) -> tuple[float, float]:
    """(summed RSS, summed PSS) in MiB of these processes and all their descendants."""
    processes = {}
    for pid in pids:
        parent = psutil.Process(pid)
        for process in [parent, *parent.children(recursive=True)]:
            processes[process.pid] = process
    rss = pss = 0
    for process in processes.values():
        try:
            info = process.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
        except psutil.Error:  # ended meanwhile
            pass
    return rss / 2**20, pss / 2**20


def one_run(variant: str, ranks: int, video: str, object_store_mb: int, round_: int) -> dict:
    key = f"bench{os.getpid()}r{round_}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--rank", variant, str(k), str(ranks), key, video, str(object_store_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        for k in range(ranks)
    ]
    try:
        lines = [p.stdout.readline() for p in procs]
        if not all(lines):  # a rank failed (e.g. Ray's 30 s limit on its node's start, on a crowded machine)
            return {}
        seconds = [json.loads(line)["seconds"] for line in lines]
        rss, pss = memory([p.pid for p in procs])
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        for p in procs:
            if p.wait(timeout=300) != 0:
                raise RuntimeError(f"{variant} rank exited {p.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return {"seconds": max(seconds), "rss_mib": rss, "pss_mib": pss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--object-store-mb", type=int, default=1024, help="per rank (data.object_store_mb)")
    args = parser.parse_args()
    from twostream.data.make.synthetic import SynthSpec, synthesize

    folder = tempfile.mkdtemp(prefix="ray_startup")
    synthesize(folder, SynthSpec(num_videos=2, frames=10, size=32, patch=12, seed=1))
    video = next(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in sorted(fs) if f.endswith(".avi"))
    results, failed = {v: [] for v in VARIANTS}, {v: 0 for v in VARIANTS}
    for round_ in range(args.rounds):
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            result = one_run(variant, args.ranks, video, args.object_store_mb, round_)
            if not result:
                failed[variant] += 1
                print(f"round {round_ + 1} {variant:8s} failed (a rank's error is above)", flush=True)
                continue
            results[variant].append(result)
            print(
                f"round {round_ + 1} {variant:8s} {result['seconds']:6.1f} s to the first clip   "
                f"RSS {result['rss_mib']:7.0f} MiB   PSS {result['pss_mib']:7.0f} MiB",
                flush=True,
            )
    if not all(results.values()):
        sys.exit(f"no successful round of {[v for v in VARIANTS if not results[v]]}")
    medians = {
        v: {k: statistics.median(r[k] for r in results[v]) for k in ("seconds", "rss_mib", "pss_mib")} for v in VARIANTS
    }
    print(f"\n{args.ranks} ranks, medians of the successful rounds of {args.rounds}")
    print(f"{'':14s} {'start (s)':>10s} {'RSS (MiB)':>10s} {'PSS (MiB)':>10s} {'failed':>7s}")
    for variant in VARIANTS:
        m = medians[variant]
        print(f"{variant:14s} {m['seconds']:10.1f} {m['rss_mib']:10.0f} {m['pss_mib']:10.0f} {failed[variant]:7d}")
    ratio = {k: medians["shared"][k] / medians["private"][k] for k in ("seconds", "rss_mib", "pss_mib")}
    print(f"{'shared/private':14s} {ratio['seconds']:9.2f}x {ratio['rss_mib']:9.2f}x {ratio['pss_mib']:9.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        variant, local_rank, ranks, key, video, store = sys.argv[2:8]
        rank_main(variant, int(local_rank), int(ranks), key, video, int(store))
    else:
        main()
