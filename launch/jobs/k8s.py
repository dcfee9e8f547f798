"""`twostream launch k8s`: writes a Kubeflow MPIJob (kubeflow.org/v2beta1) that runs horovodrun over its workers,
and a ConfigMap with the resolved config; every input checked as the MPI operator checks it, before writing."""

from __future__ import annotations

import argparse
import posixpath
import re
import shlex

import yaml

from twostream.data.distributed.shared_slots import SlotLayout, clips_per_call
from twostream.launch import config_args
from twostream.launch.jobs.horovod_cmd import LaunchError
from twostream.trainer.config import decode_slots

# Paths inside the pods.
CONFIG_DIR = "/etc/twostream"  # our ConfigMap (the resolved config), mounted on the workers
HOSTFILE = "/etc/mpi/hostfile"  # the operator's NAME-config, on the launcher: 'NAME-worker-I.NAME.NS.svc slots=S'
SSH_DIR = "/root/.ssh"  # sshAuthMountPath: the operator mounts the job's SSH key here; the image runs as root
SHM_DIR = "/dev/shm"  # a container's own is 64 MB: Ray then puts its object store in /tmp ("will harm performance")
RESERVED_DIRS = ("/etc/mpi", SSH_DIR, CONFIG_DIR, SHM_DIR)  # mounts no volume of ours may hide or sit inside
SSH_PORT = 22  # the image's sshd (Dockerfile); horovodrun connects to its default port
ENTRYPOINT = "/usr/local/bin/twostream-k8s-entrypoint"  # launch/jobs/k8s_entrypoint.sh: SIGTERM to the ranks

DEFAULT_BACKOFF_LIMIT = 6  # Kubernetes' own Job default: a failed launcher is retried and training resumes
DEFAULT_GRACE_PERIOD_S = 120  # SIGTERM to SIGKILL: the ranks reach the next agreed step and rank 0 checkpoints
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # what the operator demands of '<name>-worker-N'
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a namespace
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")  # a PVC
SHM_HEADROOM_MB = 512  # /dev/shm beyond the ranks' object stores: NCCL's and Horovod's buffers between local ranks
# Decode actors a rank's /dev/shm share is sized for when data.num_actors is 0 (one per spare core of a node the
# manifest cannot know): a bound, not a reservation; an actor without room falls back to the object store, warned.
UNSET_ACTORS_PER_RANK = 16
INT32_MAX = 2**31 - 1  # replicas, slotsPerWorker and backoffLimit are int32 in the MPIJob API


def config_map_name(name: str) -> str:
    """Ours ends in '-twostream': the operator's own names for a job end in -config, -ssh, -launcher, -worker or
    -worker-N (and the Service is the job's bare name), so this collides with nothing it creates for any job."""
    return f"{name}-twostream"


def pod_names(name: str, workers: int) -> list[str]:
    """The hostnames the operator gives the job's pods, each a DNS label of at most 63 characters."""
    return [f"{name}-launcher", f"{name}-worker-{workers - 1}"]


# ---- checks: the operator's validation.go, Kubernetes' name rules, and what a resumable job needs ----


def check_args(args) -> None:
    """The arguments on their own; LaunchError naming the flag and the fix."""
    if not args.image or any(c.isspace() for c in args.image):
        raise LaunchError(
            f"--image is required, without spaces (got {args.image!r}): the container image built "
            "from this repository's Dockerfile, e.g. --image registry.example.com/twostream:0.1.0"
        )
    _check_int("--workers", args.workers, 1, INT32_MAX)
    _check_int("--slots-per-worker", args.slots_per_worker, 1, INT32_MAX)
    _check_int("--backoff-limit", args.backoff_limit, 0, INT32_MAX)
    _check_int("--deadline-s", args.deadline_s, 0, 2**63 - 1)
    if args.grace_period_s < 1:
        raise LaunchError(
            f"--grace-period-s {args.grace_period_s} must be at least 1: it is the time a stopped pod's "
            "ranks have to reach the next agreed step and checkpoint before Kubernetes kills them "
            f"(default {DEFAULT_GRACE_PERIOD_S})"
        )
    _check_int("--grace-period-s", args.grace_period_s, 1, 2**63 - 1)
    if not DNS1035_LABEL.match(args.name):
        raise LaunchError(
            f"--name {args.name!r} must be a DNS-1035 label: lowercase letters, digits and '-', "
            "starting with a letter and ending with a letter or digit, e.g. --name deepfake-a"
        )
    for pod in pod_names(args.name, args.workers):
        if len(pod) > 63:
            raise LaunchError(
                f"--name {args.name!r} is too long: the operator names a pod {pod!r} "
                f"({len(pod)} characters; a DNS label has at most 63); shorten --name"
            )
    if args.namespace is not None and (len(args.namespace) > 63 or not DNS1123_LABEL.match(args.namespace)):
        raise LaunchError(
            f"--namespace {args.namespace!r} must be a DNS label: lowercase letters, digits and '-', "
            "at most 63 characters"
        )


def check_storage(args, config) -> None:
    """The claim, and the paths the ranks open inside the pods: absolute (a relative one depends on the
    launcher's working folder), and the workdir on the claim, so checkpoints outlive the pods and a retried job
    resumes."""
    if not args.pvc or len(args.pvc) > 253 or not DNS1123_SUBDOMAIN.match(args.pvc):
        raise LaunchError(
            f"--pvc {args.pvc!r} must name a ReadWriteMany PersistentVolumeClaim (lowercase letters, "
            "digits, '-' and '.'): every worker reads the data and rank 0 keeps the workdir on it"
        )
    _check_pod_path("--mount-path", args.mount_path)
    for reserved in RESERVED_DIRS:
        if _inside(args.mount_path, reserved) or _inside(reserved, args.mount_path):
            raise LaunchError(
                f"--mount-path {args.mount_path!r} overlaps {reserved}, which the pods need "
                f"(reserved: {', '.join(RESERVED_DIRS)}); mount the claim elsewhere, e.g. /mnt/twostream"
            )
    _check_pod_path("--workdir", args.workdir)
    if not _inside(args.workdir, args.mount_path) or _inside(args.mount_path, args.workdir):  # under, not equal
        raise LaunchError(
            f"--workdir {args.workdir!r} must be a folder under --mount-path {args.mount_path!r} "
            f"(the claim {args.pvc!r}); elsewhere it is lost with the pod and the job cannot resume"
        )
    for key, path in (
        ("data.root (--data)", config.data.root),
        ("data.manifest", config.data.manifest),
        ("data.flow_cache_dir", config.data.flow_cache_dir),
    ):
        if path:
            _check_pod_path(key, path)


def _check_int(flag: str, value: int, low: int, high: int) -> None:
    if value < low:
        raise LaunchError(f"{flag} {value} must be at least {low}")
    if value > high:
        raise LaunchError(f"{flag} {value} must be at most {high}")


def _check_pod_path(what: str, path: str) -> None:
    if not path.startswith("/"):
        raise LaunchError(f"{what} {path!r} must be an absolute path inside the pods, e.g. /mnt/twostream/videos")


def _inside(path: str, folder: str) -> bool:
    path, folder = posixpath.normpath(path), posixpath.normpath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# ---- the manifests ----


def manifests(args, config) -> list[dict]:
    """Our ConfigMap holding the resolved config, and the MPIJob whose launcher runs horovodrun on the workers."""
    from twostream.trainer import config as config_lib

    metadata = {"name": args.name, **({"namespace": args.namespace} if args.namespace else {})}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**metadata, "name": config_map_name(args.name)},
        "data": {"config.yaml": yaml.safe_dump(config_lib.to_dict(config), sort_keys=False)},
    }
    run_policy = {
        "cleanPodPolicy": "Running",
        "backoffLimit": args.backoff_limit,
        **({"activeDeadlineSeconds": args.deadline_s} if args.deadline_s else {}),
    }
    worker = _worker_pod(args, config)
    mpijob = {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": metadata,
        "spec": {
            "slotsPerWorker": args.slots_per_worker,
            "mpiImplementation": "OpenMPI",  # hostfile lines 'host slots=N', the format horovodrun reads
            "sshAuthMountPath": SSH_DIR,
            # The launcher starts once every worker's sshd answers (readinessProbe), not before their names resolve.
            "launcherCreationPolicy": "WaitForWorkersReady",
            "runPolicy": run_policy,
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "restartPolicy": "OnFailure", "template": _launcher_pod(args)},
                "Worker": {"replicas": args.workers, "restartPolicy": "OnFailure", "template": worker},
            },
        },
    }
    return [config_map, mpijob]


def _launcher_pod(args) -> dict:
    """Runs horovodrun only: it reaches each worker over SSH and starts its ranks there. Under the entrypoint, which
    first stops ranks a previous launcher left, and on SIGTERM has every worker signal its ranks."""
    train = ["twostream", "train", "--config", f"{CONFIG_DIR}/config.yaml", "--workdir", args.workdir]
    command = [
        ENTRYPOINT,
        "launcher",
        "horovodrun",
        "-np",
        str(args.workers * args.slots_per_worker),
        "--hostfile",
        HOSTFILE,
        f"--{args.controller}",
        *train,
    ]
    container = {"name": "launcher", "image": args.image, "imagePullPolicy": "IfNotPresent", "command": command}
    return {"spec": {"terminationGracePeriodSeconds": args.grace_period_s, "containers": [container]}}


def _worker_pod(args, config) -> dict:
    """Runs sshd under the entrypoint, which passes SIGTERM on to the ranks horovodrun starts here and waits for
    them; they read the config and the claim (data and workdir). /dev/shm is memory of the pod's, sized for the
    Ray its ranks share (each rank's data.object_store_mb), their decode actors' slots and the collectives' buffers."""
    resources = (
        {"limits": {"nvidia.com/gpu": args.slots_per_worker}}
        if args.gpus
        else {"requests": {"cpu": str(args.slots_per_worker)}}
    )
    container = {
        "name": "worker",
        "image": args.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [ENTRYPOINT, "worker"],  # /usr/sbin/sshd -De below it
        "ports": [{"name": "ssh", "containerPort": SSH_PORT}],
        "readinessProbe": {"tcpSocket": {"port": SSH_PORT}, "periodSeconds": 2},
        "resources": resources,
        "volumeMounts": [
            {"name": "twostream-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": args.mount_path},
            {"name": "dshm", "mountPath": SHM_DIR},
        ],
    }
    per_rank_mb = config.data.object_store_mb + _decode_slots_mb(config, args.workers * args.slots_per_worker)
    shm_mb = args.slots_per_worker * per_rank_mb + SHM_HEADROOM_MB
    volumes = [
        {"name": "twostream-config", "configMap": {"name": config_map_name(args.name)}},
        {"name": "data", "persistentVolumeClaim": {"claimName": args.pvc}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mb}Mi"}},
    ]
    return {
        "spec": {"terminationGracePeriodSeconds": args.grace_period_s, "containers": [container], "volumes": volumes}
    }


def _decode_slots_mb(config, world_size: int) -> int:
    """MiB of /dev/shm one rank's decode actors write their clips into (data/distributed/shared_slots.py)."""
    actors = config.data.num_actors or UNSET_ACTORS_PER_RANK
    per_call = clips_per_call(config.clip, config.data.clips_per_call)
    layout = SlotLayout.for_actor(config.clip, per_call, decode_slots(config, world_size))
    return -(-actors * layout.file_bytes() // (1 << 20))


def run(args) -> int:
    check_args(args)
    # the resolved config (preset, --config, --set), checked for its ranks, goes in a ConfigMap
    config = config_args.preflight(args, [args.workers * args.slots_per_worker])
    check_storage(args, config)
    out = args.out or f"{args.name}.yaml"
    with open(out, "w") as f:
        yaml.safe_dump_all(manifests(args, config), f, sort_keys=False)
    print(
        f"wrote {out} (ConfigMap {config_map_name(args.name)} + MPIJob {args.name}, {args.workers} workers x "
        f"{args.slots_per_worker} slots); start it with: kubectl apply -f {shlex.quote(out)}"
    )
    return 0


def add_parser(commands) -> None:
    parser = commands.add_parser("k8s", help="write a Kubeflow MPIJob (kubeflow.org/v2beta1) for this config")
    parser.add_argument("--image", help="the image built from this repository's Dockerfile")
    parser.add_argument("--name", default="twostream", help="MPIJob name (a DNS-1035 label)")
    parser.add_argument("--namespace")
    parser.add_argument("--workers", type=int, default=2, help="worker pods")
    parser.add_argument("--slots-per-worker", type=int, default=1, help="ranks per worker pod (= GPUs per pod)")
    parser.add_argument(
        "--gpus", action=argparse.BooleanOptionalAction, default=True, help="request slots-per-worker GPUs per worker"
    )
    parser.add_argument("--pvc", help="ReadWriteMany PersistentVolumeClaim holding the data and the workdir (required)")
    parser.add_argument("--mount-path", default="/mnt/twostream", help="where --pvc is mounted in the worker pods")
    parser.add_argument(
        "--controller",
        choices=["gloo", "mpi"],
        default="gloo",
        help="horovodrun's controller; mpi needs an image whose Horovod is built with MPI "
        "(this repository's Dockerfile builds Gloo only)",
    )
    parser.add_argument(
        "--backoff-limit",
        type=int,
        default=DEFAULT_BACKOFF_LIMIT,
        help="launcher retries before the job fails (each retry resumes from the workdir)",
    )
    parser.add_argument("--deadline-s", type=int, default=0, help="runPolicy.activeDeadlineSeconds (0: none)")
    parser.add_argument(
        "--grace-period-s",
        type=int,
        default=DEFAULT_GRACE_PERIOD_S,
        help="the pods' terminationGracePeriodSeconds: time from SIGTERM to SIGKILL for the ranks to "
        "reach the next agreed step (every train.log_every steps) and checkpoint",
    )
    parser.add_argument("--out", help="YAML file to write (default NAME.yaml)")
    config_args.add_config_args(parser, data_required=True)
    parser.add_argument("--workdir", required=True, help="a folder under --mount-path, e.g. /mnt/twostream/runs/a")
    parser.set_defaults(run=run)
