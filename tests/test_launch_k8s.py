"""`twostream launch k8s`: the MPIJob passes the MPI operator's CRD schema, its validation.go and defaults, takes no
name the operator takes, and every input the operator (or Kubernetes) would refuse is refused before writing."""

import copy
import os
import re

import jsonschema
import pytest
import yaml

from twostream.launch import cli
from twostream.launch.jobs import horovod_cmd, k8s

CRD = os.path.join(os.path.dirname(__file__), "k8s", "kubeflow.org_mpijobs.yaml")
DOCKERFILE = os.path.join(os.path.dirname(__file__), "..", "Dockerfile")
DOCKERIGNORE = os.path.join(os.path.dirname(__file__), "..", ".dockerignore")
ENTRYPOINT_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "launch", "jobs", "k8s_entrypoint.sh")
ARGS = [
    "--name",
    "deepfake-a",
    "--workers",
    "2",
    "--slots-per-worker",
    "4",
    "--preset",
    "tiny",
    "--set",
    "train.epochs=7",
    "--set",
    "train.global_batch=40",  # 40: splits over 2, 8 and 10 ranks
    "--data",
    "/mnt/twostream/videos",
    "--workdir",
    "/mnt/twostream/runs/a",
    "--pvc",
    "videos",
    "--image",
    "registry.example.com/twostream:0.1.0",
]


def _write(tmp_path, *argv):
    out = tmp_path / "job.yaml"
    code = cli.main(["launch", "k8s", "--out", str(out), *argv])
    return code, (list(yaml.safe_load_all(out.read_text())) if out.exists() else None)


def _job(tmp_path, *extra):
    code, docs = _write(tmp_path, *ARGS, *extra)
    assert code == 0
    return docs


# ---- the operator's CRD (tests/k8s/kubeflow.org_mpijobs.yaml, vendored from kubeflow/mpi-operator v0.8.2) ----


def _closed(schema):
    """The schema with every object that lists its properties closed: a field it does not name is an error
    (the API server would silently drop it). No part of this CRD keeps unknown fields
    (x-kubernetes-preserve-unknown-fields), so this applies everywhere, pod templates included."""
    if isinstance(schema, dict):
        schema = {key: _closed(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _validator():
    crd = yaml.safe_load(open(CRD))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v2beta1"]
    formats = jsonschema.FormatChecker()
    formats.checks("int32")(lambda n: not isinstance(n, int) or -(2**31) <= n < 2**31)
    formats.checks("int64")(lambda n: not isinstance(n, int) or -(2**63) <= n < 2**63)
    return jsonschema.Draft7Validator(_closed(version["schema"]["openAPIV3Schema"]), format_checker=formats)


def _schema_errors(job):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(job)]


VARIANTS = [
    [],
    ["--no-gpus", "--workers", "1", "--slots-per-worker", "2"],
    ["--namespace", "ml", "--deadline-s", "86400", "--grace-period-s", "600"],
    ["--controller", "mpi", "--backoff-limit", "0", "--mount-path", "/data"],
]


@pytest.mark.parametrize("extra", VARIANTS)
def test_mpijob_passes_the_operators_crd_schema_with_no_unknown_field(tmp_path, extra):
    if "--mount-path" in extra:
        extra = extra + ["--data", "/data/videos", "--workdir", "/data/runs/a"]
    _, job = _job(tmp_path, *extra)
    assert _schema_errors(job) == []
    assert set(job["metadata"]) <= {"name", "namespace"}  # the CRD leaves ObjectMeta to the API server


def test_the_closed_schema_catches_a_misspelt_field_and_a_bad_value(tmp_path):
    """The validator itself bites: a typo the API server would drop silently, in the spec and in a pod template."""
    _, job = _job(tmp_path)
    typo = copy.deepcopy(job)
    typo["spec"]["launcherCreationPolicyy"] = typo["spec"].pop("launcherCreationPolicy")
    assert any("launcherCreationPolicyy" in e for e in _schema_errors(typo))
    typo = copy.deepcopy(job)
    typo["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["comand"] = ["sshd"]
    assert any("comand" in e for e in _schema_errors(typo))
    bad = copy.deepcopy(job)
    bad["spec"]["mpiImplementation"] = "LAM"
    bad["spec"]["runPolicy"]["backoffLimit"] = 2**31  # int32
    errors = _schema_errors(bad)
    assert any("LAM" in e for e in errors) and any("backoffLimit" in e for e in errors)


# ---- the operator's defaults and validation (pkg/apis/kubeflow/v2beta1/default.go, validation/validation.go) ----

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def operator_defaults(job):
    """SetDefaults_MPIJob, which the controller applies before validating."""
    job = copy.deepcopy(job)
    spec = job["spec"]
    spec.setdefault("runPolicy", {}).setdefault("cleanPodPolicy", "None")
    spec.setdefault("slotsPerWorker", 1)
    spec.setdefault("sshAuthMountPath", "/root/.ssh")
    spec.setdefault("mpiImplementation", "OpenMPI")
    spec.setdefault("launcherCreationPolicy", "AtStartup")
    replicas = spec.get("mpiReplicaSpecs") or {}
    if replicas.get("Launcher") is not None:
        replicas["Launcher"].setdefault("restartPolicy", "OnFailure")  # DefaultLauncherRestartPolicy
        replicas["Launcher"].setdefault("replicas", 1)
    if replicas.get("Worker") is not None:
        replicas["Worker"].setdefault("restartPolicy", "Never")  # DefaultRestartPolicy
        replicas["Worker"].setdefault("replicas", 0)
    return job


def operator_errors(job):
    """ValidateMPIJob, one entry per failed rule, named after the rule's function in validation.go."""
    errors, spec = [], job["spec"]
    replicas = spec.get("mpiReplicaSpecs")
    workers = (replicas or {}).get("Worker") or {}
    count = workers["replicas"] if workers.get("replicas", 0) > 0 else 1
    longest = f"{job['metadata']['name']}-worker-{count - 1}"
    if len(longest) > 63 or not DNS1035.match(longest):  # IsDNS1035Label
        errors.append(f"validateMPIJobName: {longest!r}")
    if replicas is None:
        errors.append("validateMPIReplicaSpecs: must have replica specs")
    else:
        launcher = replicas.get("Launcher")
        if launcher is None:
            errors.append("validateLauncherReplicaSpec: must have Launcher replica spec")
        else:
            errors += _replica_errors("Launcher", launcher)
            if launcher.get("replicas") is not None and launcher["replicas"] != 1:
                errors.append("validateLauncherReplicaSpec: replicas must be 1")
        if replicas.get("Worker") is not None:
            errors += _replica_errors("Worker", replicas["Worker"])
            if replicas["Worker"].get("replicas") is not None and replicas["Worker"]["replicas"] <= 0:
                errors.append("validateWorkerReplicaSpec: replicas must be >= 1")
    if spec.get("slotsPerWorker") is None or spec["slotsPerWorker"] < 0:
        errors.append("validateMPIJobSpec: slotsPerWorker required, non-negative")
    policy = spec.get("runPolicy", {})
    if policy.get("cleanPodPolicy") not in ("None", "Running", "All"):
        errors.append("validateRunPolicy: cleanPodPolicy")
    for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
        if policy.get(key) is not None and policy[key] < 0:  # ValidateNonnegativeField
            errors.append(f"validateRunPolicy: {key} non-negative")
    if policy.get("managedBy") is not None and policy["managedBy"] not in (
        "kubeflow.org/mpi-operator",
        "kueue.x-k8s.io/multikueue",
    ):
        errors.append("validateRunPolicy: managedBy")
    if not spec.get("sshAuthMountPath"):
        errors.append("validateMPIJobSpec: sshAuthMountPath required")
    if spec.get("mpiImplementation") not in ("OpenMPI", "Intel", "MPICH"):
        errors.append("validateMPIJobSpec: mpiImplementation")
    # types.go's enum marker for this field reads 'Enum:AtStartup;...' (the others 'Enum:='), so the CRD has no enum
    # for it and
    # the controller waits for the workers on any value but AtStartup: check it against types.go's constants.
    if spec.get("launcherCreationPolicy") not in ("AtStartup", "WaitForWorkersReady"):
        errors.append("types.go: launcherCreationPolicy")
    return errors


def _replica_errors(role, replica):  # validateReplicaSpec
    errors = []
    if replica.get("replicas") is None:
        errors.append(f"validateReplicaSpec {role}: replicas required")
    if replica.get("restartPolicy") not in ("Never", "OnFailure"):
        errors.append(f"validateReplicaSpec {role}: restartPolicy")
    if not replica.get("template", {}).get("spec", {}).get("containers"):
        errors.append(f"validateReplicaSpec {role}: at least one container")
    return errors


@pytest.mark.parametrize("extra", VARIANTS)
def test_mpijob_passes_every_rule_of_the_operators_validation(tmp_path, extra):
    if "--mount-path" in extra:
        extra = extra + ["--data", "/data/videos", "--workdir", "/data/runs/a"]
    _, job = _job(tmp_path, *extra)
    assert operator_errors(operator_defaults(job)) == []
    # what the defaults would otherwise choose, and what we need instead
    assert job["spec"]["launcherCreationPolicy"] == "WaitForWorkersReady"  # default AtStartup races the workers
    assert job["spec"]["runPolicy"]["backoffLimit"] == (0 if "--backoff-limit" in extra else 6)
    assert job["spec"]["sshAuthMountPath"] == "/root/.ssh"  # the image runs as root


@pytest.mark.parametrize(
    "change,rule",
    [
        (lambda j: j["metadata"].update(name="9job"), "validateMPIJobName"),
        (lambda j: j["metadata"].update(name="j" * 55), "validateMPIJobName"),  # j..j-worker-1: 64 characters
        (lambda j: j["spec"]["runPolicy"].update(backoffLimit=-1), "backoffLimit non-negative"),
        (lambda j: j["spec"]["runPolicy"].update(activeDeadlineSeconds=-1), "activeDeadlineSeconds non-negative"),
        (lambda j: j["spec"]["runPolicy"].update(cleanPodPolicy="Sometimes"), "cleanPodPolicy"),
        (lambda j: j["spec"]["mpiReplicaSpecs"]["Launcher"].update(replicas=2), "replicas must be 1"),
        (lambda j: j["spec"]["mpiReplicaSpecs"]["Worker"].update(restartPolicy="Always"), "Worker: restartPolicy"),
        (lambda j: j["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"].update(containers=[]), "one container"),
        (lambda j: j["spec"].update(mpiImplementation="LAM"), "mpiImplementation"),
        (lambda j: j["spec"]["mpiReplicaSpecs"].pop("Launcher"), "must have Launcher"),
        (lambda j: j["spec"].update(launcherCreationPolicy="WhenReady"), "launcherCreationPolicy"),
    ],
)
def test_the_rules_above_catch_what_the_operator_refuses(tmp_path, change, rule):
    _, job = _job(tmp_path)
    change(job)
    assert any(rule in e for e in operator_errors(operator_defaults(job)))


# ---- names: pkg/controller/mpi_job_controller.go ----


def operator_resources(name, workers):
    """(kind, name) of what the operator creates for a job: newJobService, newConfigMap (configSuffix),
    newSSHAuthSecret (sshAuthSecretSuffix), newLauncherJob (launcherSuffix), newWorker (workerName)."""
    return {
        ("Service", name),
        ("ConfigMap", f"{name}-config"),
        ("Secret", f"{name}-ssh"),
        ("Job", f"{name}-launcher"),
    } | {("Pod", f"{name}-worker-{i}") for i in range(workers)}


OPERATOR_SUFFIX = re.compile(r".*-(config|ssh|launcher|worker|worker-\d+)")


def test_no_resource_of_ours_takes_a_name_the_operator_creates(tmp_path):
    config_map, job = _job(tmp_path)
    ours = {(config_map["kind"], config_map["metadata"]["name"])}
    assert not ours & operator_resources("deepfake-a", 2)
    # nor one the operator creates for another job: no operator ConfigMap name ends like ours
    assert not OPERATOR_SUFFIX.fullmatch(config_map["metadata"]["name"])
    # the volumes, mounts and environment the operator adds to our pod templates
    for role in ("Launcher", "Worker"):
        pod = job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]
        assert not {v["name"] for v in pod.get("volumes", [])} & {"mpi-job-config", "ssh-auth"}
        for mount in pod["containers"][0].get("volumeMounts", []):
            for reserved in ("/etc/mpi", "/root/.ssh"):
                assert not (mount["mountPath"] + "/").startswith(reserved + "/")
                assert not (reserved + "/").startswith(mount["mountPath"].rstrip("/") + "/")
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    assert {v["name"]: v for v in worker["volumes"]}["twostream-config"]["configMap"]["name"] == "deepfake-a-twostream"


def test_the_operators_hostfile_gives_horovodrun_exactly_its_ranks(tmp_path):
    """newConfigMap writes '<name>-worker-N.<name>.<namespace>.svc slots=S' (OpenMPI); horovodrun reads it."""
    _, job = _job(tmp_path, "--namespace", "ml")
    name, slots = job["metadata"]["name"], job["spec"]["slotsPerWorker"]
    workers = job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"{name}-worker-{i}.{name}.ml.svc slots={slots}\n" for i in range(workers)))
    command = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--hostfile") + 1] == k8s.HOSTFILE == "/etc/mpi/hostfile"
    assert sum(s for _, s in horovod_cmd.hostfile_slots(str(hostfile))) == int(command[command.index("-np") + 1]) == 8


# ---- what the launcher writes ----


def test_mpijob_fields(tmp_path):
    config_map, job = _job(tmp_path)
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("kubeflow.org/v2beta1", "MPIJob", "deepfake-a")
    spec = job["spec"]
    assert spec["slotsPerWorker"] == 4 and spec["mpiImplementation"] == "OpenMPI"
    assert spec["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 6}
    launcher, worker = spec["mpiReplicaSpecs"]["Launcher"], spec["mpiReplicaSpecs"]["Worker"]
    assert launcher["replicas"] == 1 and worker["replicas"] == 2
    (lc,) = launcher["template"]["spec"]["containers"]
    (wc,) = worker["template"]["spec"]["containers"]
    assert lc["image"] == wc["image"] == "registry.example.com/twostream:0.1.0"
    # horovodrun under the entrypoint, which passes SIGTERM on to the ranks (tests/test_k8s_entrypoint.py)
    assert lc["command"][:2] == ["/usr/local/bin/twostream-k8s-entrypoint", "launcher"]
    assert lc["command"][2:7] == ["horovodrun", "-np", "8", "--hostfile", "/etc/mpi/hostfile"]  # 2 workers x 4 slots
    assert lc["command"][7:] == [
        "--gloo",
        "twostream",
        "train",
        "--config",
        "/etc/twostream/config.yaml",
        "--workdir",
        "/mnt/twostream/runs/a",
    ]
    # Workers run sshd below the entrypoint, ready once it answers; ranks there read the config and the claim.
    assert wc["command"] == ["/usr/local/bin/twostream-k8s-entrypoint", "worker"]
    assert wc["readinessProbe"]["tcpSocket"]["port"] == k8s.SSH_PORT == 22
    assert wc["resources"]["limits"]["nvidia.com/gpu"] == 4
    volumes = {v["name"]: v for v in worker["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "videos"
    assert {m["mountPath"] for m in wc["volumeMounts"]} == {"/mnt/twostream", "/etc/twostream", "/dev/shm"}
    # The same config as every other launch: the resolved tree, preset and overrides applied.
    assert config_map["metadata"]["name"] == "deepfake-a-twostream"
    shipped = yaml.safe_load(config_map["data"]["config.yaml"])
    assert shipped["train"]["epochs"] == 7 and shipped["clip"]["size"] == 32
    assert shipped["data"]["root"] == "/mnt/twostream/videos"
    # /dev/shm in memory, room for the 4 ranks' object stores (a container's own 64 MB sends Ray's to /tmp) and for
    # their decode actors' slots: 16 actors (data.num_actors unset) x 3 slots (2 calls in flight, the one being read;
    # a call of 2 clips is less than a batch of 40 / 8 ranks, so batches are copies and hold none) x a call's clips
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{_shm_mb(shipped, slots=3)}Mi"}


def _shm_mb(config: dict, slots: int) -> int:
    """A worker's /dev/shm for 4 ranks of `config` whose decode actors have `slots` slots each."""
    data, clip = config["data"], config["clip"]
    assert data["num_actors"] == 0  # 16 actors a rank (k8s.UNSET_ACTORS_PER_RANK)
    call_bytes = data["clips_per_call"] * clip["num_frames"] * clip["size"] ** 2 * 5  # rgb + flow, uint8
    slots_mb = -(-16 * slots * call_bytes // (1 << 20))
    return 4 * (data["object_store_mb"] + slots_mb) + k8s.SHM_HEADROOM_MB


def test_dev_shm_has_room_for_the_calls_in_flight_and_the_calls_prefetched_batches_read(tmp_path):
    """A call of 10 clips is two local batches of 5: 3 calls in flight, the one being read, and 3 for the 4 batches
    prefetched and the one tf.data is taking in."""
    settings = ["data.clips_per_call=10", "data.calls_in_flight=3", "data.prefetch=4"]
    config_map, job = _job(tmp_path, *[a for s in settings for a in ("--set", s)])
    shipped = yaml.safe_load(config_map["data"]["config.yaml"])
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["dshm"]["emptyDir"]["sizeLimit"] == f"{_shm_mb(shipped, slots=7)}Mi"


def test_both_pods_give_the_ranks_the_grace_period_to_checkpoint(tmp_path):
    """Kubernetes sends SIGTERM, then SIGKILL after terminationGracePeriodSeconds (its own default: 30)."""
    for extra, seconds in (([], k8s.DEFAULT_GRACE_PERIOD_S), (["--grace-period-s", "600"], 600)):
        _, job = _job(tmp_path, *extra)
        for role in ("Launcher", "Worker"):
            assert job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["terminationGracePeriodSeconds"] == seconds
    assert k8s.DEFAULT_GRACE_PERIOD_S == 120


def test_the_longest_name_the_operator_accepts_is_accepted(tmp_path):
    name = "a" * (63 - len("-worker-9"))  # 10 workers: a..a-worker-9 is 63 characters
    _, job = _job(tmp_path, "--name", name, "--workers", "10", "--slots-per-worker", "1")
    assert operator_errors(operator_defaults(job)) == []
    assert _write(tmp_path, *ARGS, "--name", name, "--workers", "11", "--slots-per-worker", "1")[0] == 2


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--image", ""], "--image is required"),
        (["--name", "9job"], "must be a DNS-1035 label"),
        (["--name", "Bad_Name"], "must be a DNS-1035 label"),
        (["--name", "job-"], "must be a DNS-1035 label"),
        (["--name", "j" * 55], "is too long: the operator names a pod"),
        (["--deadline-s", "-1"], "--deadline-s -1 must be at least 0"),
        (["--backoff-limit", "-1"], "--backoff-limit -1 must be at least 0"),
        (["--grace-period-s", "0"], "--grace-period-s 0 must be at least 1: it is the time a stopped pod's ranks have"),
        (["--grace-period-s", "-5"], "--grace-period-s -5 must be at least 1"),
        (["--grace-period-s", str(2**63)], f"--grace-period-s {2**63} must be at most"),
        (["--workers", "0"], "--workers 0 must be at least 1"),
        (["--slots-per-worker", "0"], "--slots-per-worker 0 must be at least 1"),
        (["--namespace", "ML_team"], "--namespace 'ML_team' must be a DNS label"),
        (["--pvc", ""], "must name a ReadWriteMany PersistentVolumeClaim"),
        (["--pvc", "Videos"], "must name a ReadWriteMany PersistentVolumeClaim"),
        (["--mount-path", "mnt"], "--mount-path 'mnt' must be an absolute path inside the pods"),
        (["--mount-path", "/etc"], "overlaps /etc/mpi"),
        (["--mount-path", "/root/.ssh/keys"], "overlaps /root/.ssh"),
        (["--workdir", "runs/a"], "--workdir 'runs/a' must be an absolute path"),
        (["--workdir", "/tmp/runs/a"], "must be a folder under --mount-path '/mnt/twostream'"),
        (["--workdir", "/mnt/twostream"], "must be a folder under --mount-path"),
        (["--data", "videos"], "data.root (--data) 'videos' must be an absolute path"),
        (["--set", "data.manifest=labels.csv"], "data.manifest 'labels.csv' must be an absolute path"),
        (["--set", "data.flow_cache_dir=cache"], "data.flow_cache_dir 'cache' must be an absolute path"),
    ],
)
def test_what_the_operator_or_kubernetes_would_refuse_is_one_clear_error_and_nothing_written(
    tmp_path, capsys, extra, message
):
    code, docs = _write(tmp_path, *ARGS, *extra)
    err = capsys.readouterr().err
    assert code == 2 and docs is None, err
    assert message in err and "Traceback" not in err


def test_missing_image_is_a_clear_error(tmp_path, capsys):
    argv = [a for a in ARGS if not a.startswith("registry.")]
    argv.remove("--image")
    assert _write(tmp_path, *argv)[0] == 2
    assert "--image is required" in capsys.readouterr().err


# ---- the image the manifests run (Dockerfile; not built by the tests: they need no Docker) ----


def test_the_dockerfile_builds_what_the_manifests_expect():
    text = open(DOCKERFILE).read()
    assert "FROM ${BASE}" in text and "ARG BASE=python:3.11-slim" in text
    assert "scripts/build_horovod.sh" in text and "-r requirements.txt" in text
    # sshd as the operator's images set it up, on the port the readiness probe and horovodrun use, as root
    assert "mkdir -p /var/run/sshd" in text and "StrictModes no" in text
    assert "StrictHostKeyChecking no" in text and "UserKnownHostsFile /dev/null" in text
    assert f"Port {k8s.SSH_PORT}" in text and f"EXPOSE {k8s.SSH_PORT}" in text
    assert not re.search(r"^USER\s+(?!root\b|0\b)", text, re.M)  # sshAuthMountPath /root/.ssh assumes root
    # every pod's first process is the entrypoint the manifests name, which runs sshd on the workers
    assert f"COPY launch/jobs/k8s_entrypoint.sh {k8s.ENTRYPOINT}\n" in text and f"chmod 0755 {k8s.ENTRYPOINT}" in text
    assert f'CMD ["{k8s.ENTRYPOINT}", "worker"]' in text
    assert "/usr/sbin/sshd -De" in open(ENTRYPOINT_SCRIPT).read()


def test_every_path_the_dockerfile_copies_exists_and_reaches_the_build():
    root = os.path.dirname(DOCKERFILE)
    sources = [
        src
        for line in open(DOCKERFILE)
        if line.startswith("COPY ") and "--from=" not in line
        for src in line.split()[1:-1]
        if not src.startswith("--")
    ]
    assert "launch" in sources and "requirements.txt" in sources and "launch/jobs/k8s_entrypoint.sh" in sources
    allowed = [line[1:].strip().rstrip("/") for line in open(DOCKERIGNORE) if line.startswith("!")]
    for src in sources:
        assert os.path.exists(os.path.join(root, src)), src
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"
