"""`twostream launch k8s`: writes a Kubeflow MPIJob (kubeflow.org/v2beta1) that runs horovodrun over its workers."""
from __future__ import annotations

import argparse
import re
import shlex

import yaml

from twostream.launch import config_args
from twostream.launch.horovod_cmd import LaunchError

CONFIG_DIR = "/etc/twostream"            # where the resolved config is mounted in every pod
HOSTFILE = "/etc/mpi/hostfile"           # written by the MPI operator: 'worker-N.job slots=S' per worker
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")   # a DNS-1123 label, what Kubernetes accepts


def manifests(args, config) -> list[dict]:
    """A ConfigMap holding the resolved config, and the MPIJob whose launcher runs horovodrun on the workers."""
    from twostream.trainer import config as config_lib
    np = args.workers * args.slots_per_worker
    train = ["twostream", "train", "--config", f"{CONFIG_DIR}/config.yaml", "--workdir", args.workdir]
    launcher_command = ["horovodrun", "-np", str(np), "--hostfile", HOSTFILE, f"--{args.controller}", *train]
    config_volume = {"name": "twostream-config", "configMap": {"name": f"{args.name}-config"}}
    mounts = [{"name": "twostream-config", "mountPath": CONFIG_DIR, "readOnly": True}]
    volumes = [config_volume]
    if args.pvc:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": args.pvc}})
        mounts.append({"name": "data", "mountPath": args.mount_path})
    worker_resources = {"limits": {"nvidia.com/gpu": args.slots_per_worker}} if args.gpus else \
        {"requests": {"cpu": str(args.slots_per_worker)}}
    metadata = {"name": args.name, **({"namespace": args.namespace} if args.namespace else {})}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {**metadata, "name": f"{args.name}-config"},
                  "data": {"config.yaml": yaml.safe_dump(config_lib.to_dict(config), sort_keys=False)}}

    def pod(role: str, command: list[str], resources: dict | None) -> dict:
        container = {"name": role, "image": args.image, "imagePullPolicy": "IfNotPresent",
                     "command": command, "volumeMounts": mounts}
        if resources:
            container["resources"] = resources
        return {"spec": {"containers": [container], "volumes": volumes}}

    mpijob = {
        "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": metadata,
        "spec": {
            "slotsPerWorker": args.slots_per_worker,
            "mpiImplementation": "OpenMPI",   # hostfile lines 'host slots=N', the format horovodrun reads
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": args.backoff_limit,
                          **({"activeDeadlineSeconds": args.deadline_s} if args.deadline_s else {})},
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "restartPolicy": "OnFailure",
                             "template": pod("launcher", launcher_command, None)},
                # Workers only run sshd: horovodrun on the launcher starts the ranks on them over SSH.
                "Worker": {"replicas": args.workers, "restartPolicy": "OnFailure",
                           "template": pod("worker", ["/usr/sbin/sshd", "-De"], worker_resources)},
            },
        },
    }
    return [config_map, mpijob]


def run(args) -> int:
    if not args.image:
        raise LaunchError("--image is required: the container image with twostream installed, e.g. "
                          "--image registry.example.com/twostream:0.1.0")
    if not NAME.match(args.name) or len(args.name) > 50:
        raise LaunchError(f"--name {args.name!r} must be lowercase letters, digits and '-', at most 50 characters")
    if args.workers < 1 or args.slots_per_worker < 1:
        raise LaunchError("--workers and --slots-per-worker must be at least 1")
    # the resolved config (preset, --config, --set), checked for its ranks, goes in a ConfigMap
    config = config_args.preflight(args, [args.workers * args.slots_per_worker])
    out = args.out or f"{args.name}.yaml"
    with open(out, "w") as f:
        yaml.safe_dump_all(manifests(args, config), f, sort_keys=False)
    print(f"wrote {out} (ConfigMap + MPIJob, {args.workers} workers x {args.slots_per_worker} slots); "
          f"start it with: kubectl apply -f {shlex.quote(out)}")
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("k8s", help="write a Kubeflow MPIJob (kubeflow.org/v2beta1) for this config")
    parser.add_argument("--image", help="container image with twostream, horovodrun and sshd installed")
    parser.add_argument("--name", default="twostream", help="MPIJob name (DNS label)")
    parser.add_argument("--namespace")
    parser.add_argument("--workers", type=int, default=2, help="worker pods")
    parser.add_argument("--slots-per-worker", type=int, default=1, help="ranks per worker pod (= GPUs per pod)")
    parser.add_argument("--gpus", action=argparse.BooleanOptionalAction, default=True, help="request slots-per-worker GPUs per worker")
    parser.add_argument("--pvc", help="PersistentVolumeClaim holding the data and the workdir")
    parser.add_argument("--mount-path", default="/mnt/twostream", help="where --pvc is mounted in the pods")
    parser.add_argument("--controller", choices=["gloo", "mpi"], default="gloo")
    parser.add_argument("--backoff-limit", type=int, default=0)
    parser.add_argument("--deadline-s", type=int, default=0, help="runPolicy.activeDeadlineSeconds (0: none)")
    parser.add_argument("--out", help="YAML file to write (default NAME.yaml)")
    config_args.add_config_args(parser, data_required=True)
    parser.add_argument("--workdir", required=True, help="a path inside the pods, e.g. on --pvc")
    parser.set_defaults(run=run)
