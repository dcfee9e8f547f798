#!/usr/bin/env bash
# Runs a `twostream launch k8s` MPIJob with the private Docker daemon (scripts/docker_image.sh) as the MPI operator runs its pods.
#
#   scripts/docker_mpijob.sh up JOB.yaml CLAIM_DIR   # the workers, once ready the launcher (its container: NAME-launcher)
#   scripts/docker_mpijob.sh ranks JOB.yaml          # 'POD ADDRESS rank=R size=N host=H' per `twostream train` running
#   scripts/docker_mpijob.sh down JOB.yaml           # every container of the job removed, the network removed
#
# What the operator (kubeflow/mpi-operator, pkg/controller/mpi_job_controller.go) makes, made here by hand:
# - the Secret NAME-ssh: one key pair (ECDSA P-521 in PEM, named id_rsa), as id_rsa, id_rsa.pub and authorized_keys,
#   mode 0600, mounted read-only at /root/.ssh in every pod;
# - the ConfigMap NAME-config at /etc/mpi on the launcher: hostfile ('NAME-worker-I.NAME.NS.svc slots=S', 0444) and
#   discover_hosts.sh (0555);
# - the launcher's environment: K_MPI_JOB_ROLE=launcher, OMPI_MCA_orte_keep_fqdn_hostnames=true,
#   OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile, OMPI_MCA_plm_rsh_args='-o ConnectionAttempts=10',
#   OMPI_MCA_orte_set_default_slots=S, NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES empty; workers
#   K_MPI_JOB_ROLE=worker; each pod's hostname its name, the Service's DNS names (here /etc/hosts) for every pod;
# - the launcher created once every worker answers on port 22 (launcherCreationPolicy: WaitForWorkersReady).
# From JOB.yaml, as written: each container's command, our ConfigMap (the config) and the claim's mount path
# (CLAIM_DIR plays the ReadWriteMany claim), terminationGracePeriodSeconds (`docker stop -t` it, by hand).
#
# The network: Docker puts a container in a network namespace of its own, so each pod is a host of the
# namespace bed (scripts/hosts.sh's layout: a bridge in a namespace of its own, host i at SUBNET.1i; the launcher
# host 1, worker I host I+2). As Kubernetes does, a pod is a sandbox container (`sleep infinity`, the pause
# container's place, --network none) whose namespace gets a veth to the bridge as eth0, as the CNI bridge plugin
# does, before the pod's container joins it (--network container:SANDBOX, sharing its hostname and /etc/hosts):
# nothing runs before the pod has its address. HOSTS_PREFIX (tsd) and HOSTS_SUBNET (10.79.0) keep it apart from
# other beds. Root, `ip` and `nsenter`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${HOSTS_PREFIX:-tsd}
SUBNET=${HOSTS_SUBNET:-10.79.0}
PY=${PY:-$ROOT/.venv/bin/python}
STATES=${TWOSTREAM_DOCKER_DIR:-/tmp/twostream-docker}/jobs

log() { echo "docker_mpijob.sh: $*" >&2; }
die() { log "$*"; exit 2; }
docker_() { "$ROOT/scripts/docker_image.sh" docker "$@"; }

# Sets NAME, NAMESPACE, WORKERS, SLOTS, IMAGE, LAUNCHER_CMD and WORKER_CMD (arrays), WORKER_MOUNTS (docker -v
# arguments) from JOB.yaml, and writes our ConfigMap's files under STATE.
read_job() {
  [[ -r $1 ]] || die "no job file $1"
  local claim=${2:-} name
  name=$("$PY" -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"] == "MPIJob")["metadata"]["name"])' "$1")
  STATE=$STATES/$name
  eval "$("$PY" - "$1" "$STATE" "$claim" <<'PY'
import os, shlex, sys, yaml
path, state, claim = sys.argv[1:]
docs = list(yaml.safe_load_all(open(path)))
job = next(d for d in docs if d["kind"] == "MPIJob")
maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
spec, q = job["spec"], shlex.quote
launcher = spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
worker_pod = spec["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
worker = worker_pod["containers"][0]
mounts = []
for volume in worker_pod.get("volumes", []):   # ours: a ConfigMap from the file, the claim from CLAIM_DIR
    mount = next(m for m in worker["volumeMounts"] if m["name"] == volume["name"])
    if volume.get("emptyDir", {}).get("medium") == "Memory" and mount["mountPath"] == "/dev/shm":
        mounts += ["--shm-size", volume["emptyDir"]["sizeLimit"].removesuffix("Mi") + "m"]   # a tmpfs of that size
        continue
    if "configMap" in volume:
        source = os.path.join(state, "configmaps", volume["configMap"]["name"])
        os.makedirs(source, exist_ok=True)
        for key, text in maps[volume["configMap"]["name"]].items():
            with open(os.path.join(source, key), "w") as f:
                f.write(text)
    else:
        source = claim
    mounts += ["-v", f"{source}:{mount['mountPath']}" + (":ro" if mount.get("readOnly") or "configMap" in volume else "")]
print(f"NAME={q(job['metadata']['name'])} NAMESPACE={q(job['metadata'].get('namespace', 'default'))}")
print(f"WORKERS={spec['mpiReplicaSpecs']['Worker']['replicas']} SLOTS={spec['slotsPerWorker']} IMAGE={q(worker['image'])}")
print(f"SSH_DIR={q(spec['sshAuthMountPath'])}")
print("LAUNCHER_CMD=(" + " ".join(map(q, launcher["command"])) + ")")
print("WORKER_CMD=(" + " ".join(map(q, worker["command"])) + ")")
print("WORKER_MOUNTS=(" + " ".join(map(q, mounts)) + ")")
PY
  )"
}

address() { echo "$SUBNET.$((10 + $1))"; }   # host i, as scripts/hosts.sh numbers them
fqdn() { echo "$1.$NAME.$NAMESPACE.svc"; }   # the operator's hostfile names (no cluster domain)

# The pod's sandbox on host $2: its network namespace wired to the bridge with host $2's address.
sandbox() {
  local pod=$1 host=$2 pid i hosts=()
  for ((i = 0; i < WORKERS; i++)); do
    hosts+=(--add-host "$(fqdn "$NAME-worker-$i") $NAME-worker-$i:$(address $((i + 2)))")
  done
  hosts+=(--add-host "$(fqdn "$NAME-launcher") $NAME-launcher:$(address 1)")
  # (its warning that IPv4 forwarding is off is dropped: nothing is forwarded, the pods share one bridge)
  docker_ run -d --name "$pod-pod" --label "twostream.mpijob=$NAME" --hostname "$pod" --network none \
    "${hosts[@]}" --entrypoint sleep "$IMAGE" infinity 2>&1 >/dev/null | { grep -v 'IPv4 forwarding' >&2 || true; }
  pid=$(docker_ inspect -f '{{.State.Pid}}' "$pod-pod")
  ip link add "${PREFIX}v$host" netns "${PREFIX}w" type veth peer name eth0 netns "$pid"
  ip -n "${PREFIX}w" link set "${PREFIX}v$host" master br0 up
  nsenter --net="/proc/$pid/ns/net" ip addr add "$(address "$host")/24" dev eth0
  nsenter --net="/proc/$pid/ns/net" ip link set eth0 up
}

# The pod's container, in its sandbox: `command` as the entrypoint, as Kubernetes runs a container's command.
container() {
  local pod=$1 cmd
  shift
  cmd=$1
  shift
  docker_ run -d --name "$pod" --label "twostream.mpijob=$NAME" --network "container:$pod-pod" \
    -v "$STATE/ssh:$SSH_DIR:ro" --entrypoint "$cmd" "$@" >/dev/null
}

up() {
  [[ $# == 2 ]] || die "usage: up JOB.yaml CLAIM_DIR"
  [[ -d $2 ]] || die "no claim folder $2"
  read_job "$1" "$(cd "$2" && pwd)"
  [[ -e /run/netns/${PREFIX}w ]] && die "a bed with prefix $PREFIX is up; 'down' its job first or set HOSTS_PREFIX"
  local i pid slots
  mkdir -p "$STATE/ssh" "$STATE/mpi"
  # the Secret NAME-ssh: the operator's key type (ECDSA P-521, PEM), under the names it gives the files
  rm -f "$STATE/ssh/"*
  ssh-keygen -q -t ecdsa -b 521 -m PEM -N '' -C '' -f "$STATE/ssh/id_rsa"
  cp "$STATE/ssh/id_rsa.pub" "$STATE/ssh/authorized_keys"
  chmod 0600 "$STATE/ssh/"*   # the operator's defaultMode when sshAuthMountPath is /root/.ssh
  ip netns add "${PREFIX}w"
  ip -n "${PREFIX}w" link add br0 type bridge
  ip -n "${PREFIX}w" link set br0 up
  for ((i = 0; i < WORKERS; i++)); do
    sandbox "$NAME-worker-$i" $((i + 2))
    container "$NAME-worker-$i" "${WORKER_CMD[0]}" -e K_MPI_JOB_ROLE=worker "${WORKER_MOUNTS[@]}" \
      "$IMAGE" "${WORKER_CMD[@]:1}"
  done
  # WaitForWorkersReady: each worker's readinessProbe (tcpSocket, port 22) passes, from the worker's own network
  for ((i = 0; i < WORKERS; i++)); do
    pid=$(docker_ inspect -f '{{.State.Pid}}' "$NAME-worker-$i-pod")
    for ((slots = 0; ; slots++)); do
      nsenter --net="/proc/$pid/ns/net" bash -c "exec 3<>/dev/tcp/$(address $((i + 2)))/22" 2>/dev/null && break
      ((slots < 120)) || die "$NAME-worker-$i: nothing answers on port 22 after 60 s"
      sleep 0.5
    done
  done
  # the ConfigMap NAME-config, as the operator writes it once the workers run
  : >"$STATE/mpi/hostfile"
  printf '#!/bin/sh\n' >"$STATE/mpi/discover_hosts.sh"
  for ((i = 0; i < WORKERS; i++)); do
    echo "$(fqdn "$NAME-worker-$i") slots=$SLOTS" >>"$STATE/mpi/hostfile"
    echo "echo $(fqdn "$NAME-worker-$i")" >>"$STATE/mpi/discover_hosts.sh"
  done
  chmod 0444 "$STATE/mpi/hostfile"
  chmod 0555 "$STATE/mpi/discover_hosts.sh"
  sandbox "$NAME-launcher" 1
  container "$NAME-launcher" "${LAUNCHER_CMD[0]}" -v "$STATE/mpi:/etc/mpi:ro" -e K_MPI_JOB_ROLE=launcher \
    -e OMPI_MCA_orte_keep_fqdn_hostnames=true -e OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile \
    -e "OMPI_MCA_plm_rsh_args=-o ConnectionAttempts=10" -e "OMPI_MCA_orte_set_default_slots=$SLOTS" \
    -e NVIDIA_VISIBLE_DEVICES= -e NVIDIA_DRIVER_CAPABILITIES= "$IMAGE" "${LAUNCHER_CMD[@]:1}"
  log "$NAME-launcher started on $(address 1); workers $(for ((i = 0; i < WORKERS; i++)); do
    echo -n "$NAME-worker-$i@$(address $((i + 2))) "; done)"
}

# The ranks' placement, from each `twostream train` process's environment (horovodrun's HOROVOD_* for it).
ranks() {
  read_job "$1"
  local i pid args
  for ((i = 0; i < WORKERS; i++)); do
    while read -r pid args; do
      [[ $args == *twostream\ train* ]] || continue
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | awk -v pod="$NAME-worker-$i" -v addr="$(address $((i + 2)))" \
        -F= '/^HOROVOD_(RANK|SIZE|HOSTNAME)=/ { v[$1] = $2 }
             END { if ("HOROVOD_RANK" in v) printf "%s %s rank=%s size=%s host=%s\n", pod, addr,
                   v["HOROVOD_RANK"], v["HOROVOD_SIZE"], v["HOROVOD_HOSTNAME"] }'
    done < <(docker_ top "$NAME-worker-$i" -eo pid,args 2>/dev/null | tail -n +2)
  done | sort -u
}

down() {
  read_job "$1"
  local ids
  ids=$(docker_ ps -aq --filter "label=twostream.mpijob=$NAME")
  if [[ -n $ids ]]; then docker_ rm -f $ids >/dev/null; fi
  if [[ -e /run/netns/${PREFIX}w ]]; then ip netns del "${PREFIX}w"; fi
  rm -rf "$STATE"
}

case ${1:-} in
  up | ranks | down) cmd=$1; shift; "$cmd" "$@" ;;
  *) die "usage: docker_mpijob.sh up JOB.yaml CLAIM_DIR | ranks JOB.yaml | down JOB.yaml" ;;
esac
