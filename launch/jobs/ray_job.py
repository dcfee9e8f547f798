"""`twostream launch ray`: Horovod workers on a Ray cluster (horovod.ray.RayExecutor), data actors beside them."""

from __future__ import annotations

import logging
import os
import sys

from twostream.launch import config_args
from twostream.launch.jobs.horovod_cmd import LaunchError
from twostream.launch.records import print_record

log = logging.getLogger("twostream")


def train_worker(config, workdir: str) -> dict:
    """Runs on each Horovod worker (a Ray actor): the same train() as every other launch; Ray is already up,
    so the data actors it starts land on this cluster."""
    from twostream.trainer.runtime.preemption import Preempted
    from twostream.trainer.video.video_task import train

    logging.getLogger("twostream.data.distributed.actors").setLevel(logging.INFO)  # where its actors run
    try:
        metrics, _ = train(config, workdir)
    except Preempted as stopped:  # every rank stops at the same step; rank 0 saved it
        return {"preempted": str(stopped)}
    return metrics


def run(args) -> int:
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise LaunchError(
            "no Ray cluster: pass --address HOST:PORT (the head's GCS address, as printed by "
            "`ray start --head`), or set RAY_ADDRESS; `ray job submit` sets it for you"
        )
    if args.num_workers < 1 or args.gpus_per_worker < 0 or args.cpus_per_worker < 1:
        raise LaunchError("--num-workers and --cpus-per-worker must be at least 1, --gpus-per-worker at least 0")
    config = config_args.preflight(args, [args.num_workers])
    config = _with_ray_address(config, address)
    workdir = os.path.abspath(args.workdir)  # a Ray job runs in a temporary copy of --working-dir

    from horovod.ray import RayExecutor

    from twostream.trainer.runtime.ray_node import join_ray

    # Ray's token (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN) as on the head
    join_ray(address, log_to_driver=True, connect_timeout_s=config.data.ray_connect_timeout_s)
    _check_room(args, address)
    settings = RayExecutor.create_settings(timeout_s=args.timeout_s, placement_group_timeout_s=args.timeout_s)
    executor = RayExecutor(
        settings,
        cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.gpus_per_worker > 0,
        gpus_per_worker=args.gpus_per_worker or None,
        **_placement(args),
    )
    print(
        f"starting {args.num_workers} Horovod workers on the Ray cluster at {address}"
        f"{', one per node' if args.spread else ''}",
        flush=True,
    )
    executor.start()
    try:
        results = executor.run(train_worker, args=[config, workdir])
    finally:
        executor.shutdown()
    if "preempted" in results[0]:
        from twostream.trainer.runtime.preemption import EXIT_CODE

        print(f"twostream launch ray: {results[0]['preempted']}", file=sys.stderr, flush=True)
        return EXIT_CODE
    print_record({"final": results[0], "world_size": len(results)})
    return 0


def _placement(args) -> dict:
    """horovod.ray's placement: packed (ranks fill one node before the next, in a placement group of one bundle
    per rank) or, with --spread, one rank per node (a STRICT_SPREAD group of one bundle per node)."""
    if args.spread:
        return dict(num_hosts=args.num_workers, num_workers_per_host=1, use_current_placement_group=False)
    return dict(num_workers=args.num_workers)


def _check_room(args, address: str) -> None:
    """Refuses, before any worker starts, a job the cluster cannot hold (horovod.ray would wait --timeout-s)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    needed = args.num_workers * args.cpus_per_worker
    if cpus < needed:
        raise LaunchError(
            f"{args.num_workers} workers x {args.cpus_per_worker} CPU need {needed} CPUs but the "
            f"cluster at {address} has {cpus:g}; lower --num-workers or add nodes"
        )
    if args.spread:
        roomy = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= args.cpus_per_worker]
        if len(roomy) < args.num_workers:
            raise LaunchError(
                f"--spread puts one of the {args.num_workers} workers on each node, but the cluster "
                f"at {address} has {len(roomy)} nodes with {args.cpus_per_worker} CPU; add nodes, "
                "lower --num-workers or leave out --spread"
            )


def _with_ray_address(config, address: str):
    """The data actors join the same cluster (they do anyway inside a worker; this records it in config.yaml)."""
    import dataclasses

    return dataclasses.replace(config, data=dataclasses.replace(config.data, ray_address=address))


def add_parser(commands) -> None:
    parser = commands.add_parser("ray", help="run the Horovod workers on a Ray cluster (horovod.ray.RayExecutor)")
    parser.add_argument("--address", help="the cluster's address, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS)")
    parser.add_argument("--num-workers", type=int, required=True, help="Horovod ranks")
    parser.add_argument("--gpus-per-worker", type=int, default=0, help="GPUs per rank (0: CPU)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs reserved per rank, for TensorFlow")
    parser.add_argument(
        "--spread", action="store_true", help="one worker per node (default: packed, each node filled before the next)"
    )
    parser.add_argument("--timeout-s", type=int, default=120, help="how long to wait for workers to start and meet")
    config_args.add_config_args(parser)
    parser.add_argument("--workdir", required=True, help="absolute path on storage every node sees")
    parser.set_defaults(run=run)
