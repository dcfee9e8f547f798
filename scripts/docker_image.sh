#!/usr/bin/env bash
# Builds the project's Dockerfile for real on this machine, with a private Docker daemon and a base image made of Debian's packages.
#
#   scripts/docker_image.sh image      # install, start, base, build, stop: twostream:test in the private daemon
#   scripts/docker_image.sh install    # docker.io and mmdebstrap from Debian, when missing (root, apt-get)
#   scripts/docker_image.sh start      # the private dockerd; `stop` ends exactly that PID
#   scripts/docker_image.sh base       # twostream-debian:bookworm (mmdebstrap) and twostream-base:py3.11 on it
#   scripts/docker_image.sh build      # docker build --build-arg BASE=twostream-base:py3.11 -t twostream:test .
#   scripts/docker_image.sh docker ARGS...   # the docker client, talking to the private daemon
#   scripts/docker_image.sh clean      # stop, then remove the daemon's folder (its images and build cache)
#
# Why a private daemon: a site's own Docker (its socket, images, networks) stays untouched. Everything it keeps is
# under TWOSTREAM_DOCKER_DIR (default /tmp/twostream-docker): data-root, exec-root, pidfile, socket, log. It makes
# no bridge and no iptables rules (--bridge=none --iptables=false); builds use the machine's network (--network
# host) and scripts/docker_mpijob.sh wires its containers itself. The data-root is kept after `stop`: its layer
# cache is what makes a second build fast (Horovod's compile is one layer, redone only when the base image,
# requirements.txt or scripts/build_horovod.sh change). The host's cached Horovod wheel is not reused: the build
# context admits only the sources (.dockerignore), and a wheel from outside would make the image depend on the
# building machine.
#
# Why a Debian base: no image registry is reachable here (python:3.11-slim-bookworm cannot be pulled), Debian's
# package mirror is. scripts/docker_base.Dockerfile turns bookworm's python3.11 into a Python at /usr/local like
# the official image's, and adds the machine's extra CA certificates (a TLS-intercepting proxy's) for pip.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${TWOSTREAM_DOCKER_DIR:-/tmp/twostream-docker}
SOCK=$DIR/docker.sock
PIDFILE=$DIR/dockerd.pid
DEBIAN_IMAGE=twostream-debian:bookworm
BASE_IMAGE=${TWOSTREAM_BASE_IMAGE:-twostream-base:py3.11}
IMAGE=${TWOSTREAM_IMAGE:-twostream:test}
# The daemon's own client: a newer docker CLI elsewhere on the PATH wants buildx, which Debian 12 does not package.
CLIENT=/usr/bin/docker

log() { echo "docker_image.sh: $*" >&2; }
die() { log "$*"; exit 2; }

docker_() { DOCKER_CONFIG=$DIR/cli "$CLIENT" -H "unix://$SOCK" "$@"; }

install() {
  if [[ -x /usr/sbin/dockerd && -x $CLIENT ]] && command -v mmdebstrap >/dev/null; then return; fi
  [[ $(id -u) == 0 ]] || die "installing docker.io and mmdebstrap needs root (apt-get)"
  log "installing docker.io and mmdebstrap from Debian"
  # the package's service is not started here: policy-rc.d or no init decides; we start our own daemon below
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io mmdebstrap >/dev/null
}

running() { [[ -r $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  [[ $(id -u) == 0 ]] || die "a Docker daemon needs root"
  if running; then return; fi
  mkdir -p "$DIR/data" "$DIR/exec" "$DIR/cli"
  echo '{}' >"$DIR/daemon.json"   # not /etc/docker/daemon.json: a site's settings stay its own daemon's
  log "starting dockerd (socket $SOCK, log $DIR/dockerd.log)"
  setsid /usr/sbin/dockerd --config-file "$DIR/daemon.json" --data-root "$DIR/data" --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" -H "unix://$SOCK" --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
    >>"$DIR/dockerd.log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < 120; i++)); do
    docker_ version >/dev/null 2>&1 && return
    sleep 0.5
  done
  die "dockerd did not answer within 60 s; see $DIR/dockerd.log"
}

stop() {
  running || return 0
  local pid i
  pid=$(cat "$PIDFILE")
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for ((i = 0; i < 120; i++)); do   # it stops its containers and its containerd first
    kill -0 "$pid" 2>/dev/null || { unmount; return 0; }
    sleep 0.5
  done
  die "dockerd (pid $pid) still runs after 60 s"
}

# What a stopped dockerd leaves mounted in its folder (exec-root/netns/default, its bind of this machine's
# network namespace), deepest first.
unmount() {
  local mount
  # (grep finds nothing when the daemon left no mount: not a failure)
  findmnt -rn -o TARGET | { grep "^$DIR/" || true; } | sort -r | while read -r mount; do umount "$mount"; done
}

base() {
  if ! docker_ image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1; then
    log "making $DEBIAN_IMAGE with mmdebstrap"
    # the same sources as the official debian:bookworm image: the release, its updates and security
    mmdebstrap --quiet --variant=minbase bookworm - \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main" |
      docker_ import - "$DEBIAN_IMAGE" >/dev/null
  fi
  local context=$DIR/base-context   # only what the base Dockerfile copies
  rm -rf "$context"
  mkdir -p "$context/certs"
  cp /usr/local/share/ca-certificates/*.crt "$context/certs/" 2>/dev/null || true
  cp "$ROOT/scripts/docker_base.Dockerfile" "$context/Dockerfile"
  log "building $BASE_IMAGE"
  DOCKER_BUILDKIT=0 docker_ build --network host --build-arg "DEBIAN=$DEBIAN_IMAGE" -t "$BASE_IMAGE" "$context"
}

build() {
  log "building $IMAGE from $ROOT/Dockerfile on $BASE_IMAGE"
  # The classic builder: BuildKit would fetch the Dockerfile's `# syntax=docker/dockerfile:1` frontend from Docker Hub.
  DOCKER_BUILDKIT=0 docker_ build --network host --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" "$ROOT"
}

clean() {
  stop
  unmount   # also after a daemon that ended by itself
  log "removing $DIR"
  rm -rf --one-file-system "$DIR"
}

case ${1:-} in
  install | start | stop | base | build | clean) "$1" ;;
  image) install; start; trap stop EXIT; base; build ;;
  docker) shift; docker_ "$@" ;;
  *) die "usage: docker_image.sh image | install | start | stop | base | build | docker ARGS... | clean" ;;
esac
