# syntax=docker/dockerfile:1
# The image every pod of a `twostream launch k8s` MPIJob runs: Python 3.11, twostream with Horovod 0.28.1 built from
# source against its TensorFlow (scripts/build_horovod.sh), and OpenSSH set up as the Kubeflow MPI operator's own
# images set it up, as root (the MPIJob mounts the operator's SSH key at /root/.ssh; sshd listens on port 22), and
# launch/jobs/k8s_entrypoint.sh, every pod's first process, which passes Kubernetes' SIGTERM on to the training ranks.
#   CPU: docker build -t registry.example.com/twostream:0.1.0 .
#   GPU: docker build --build-arg VARIANT=gpu -t registry.example.com/twostream:0.1.0-gpu .
# The GPU variant installs tensorflow[and-cuda] and builds Horovod's allreduce on NCCL (no GPU needed to build).
ARG BASE=python:3.11-slim-bookworm

# ---- the Horovod pin alone: setup.cfg's horovod== line, so that no other change to setup.cfg redoes the compile ----
FROM ${BASE} AS horovod-pin
COPY setup.cfg /src/
RUN grep -E '^ *horovod==' /src/setup.cfg > /horovod-pin.cfg

# ---- build: requirements, Horovod compiled against their TensorFlow, then twostream; everything under /usr/local ----
FROM ${BASE} AS build
ARG VARIANT=cpu
ARG CUDA_VERSION=12.8
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# The compilers Horovod needs; for the GPU variant also nvcc and the CUDA runtime headers, from NVIDIA's Debian 12
# repository (TensorFlow 2.21 is built for CUDA 12). Debian's versions are not pinned: a point release replaces them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make cmake ca-certificates curl \
 && if [ "$VARIANT" = gpu ]; then \
      curl -fsSLo /tmp/cuda-keyring.deb \
        https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
      && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb && apt-get update \
      && apt-get install -y --no-install-recommends "cuda-nvcc-${CUDA_VERSION/./-}" "cuda-cudart-dev-${CUDA_VERSION/./-}"; \
    fi \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.txt ./
RUN if [ "$VARIANT" = gpu ]; then sed -i 's/^tensorflow-cpu==/tensorflow[and-cuda]==/' requirements.txt; fi \
 && pip install --no-cache-dir pip==26.3 setuptools==84.2.1 wheel==0.48.0 \
 && pip install --no-cache-dir -r requirements.txt
# build_horovod.sh reads the Horovod version from ./setup.cfg; the pin's line is all it needs before the sources.
COPY --from=horovod-pin /horovod-pin.cfg setup.cfg
COPY scripts/build_horovod.sh scripts/
# GPU: Horovod links the NCCL that tensorflow[and-cuda] installed (nvidia-nccl-cu12), so both use one NCCL.
RUN if [ "$VARIANT" = gpu ]; then \
      nccl=/usr/local/lib/python3.11/site-packages/nvidia/nccl \
      && ln -sf libnccl.so.2 "$nccl/lib/libnccl.so" \
      && export HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_LINK=SHARED HOROVOD_NCCL_INCLUDE="$nccl/include" \
                HOROVOD_NCCL_LIB="$nccl/lib" HOROVOD_CUDA_HOME="/usr/local/cuda-$CUDA_VERSION" \
                PATH="/usr/local/cuda-$CUDA_VERSION/bin:$PATH" \
                LD_LIBRARY_PATH="$nccl/lib:/usr/local/cuda-$CUDA_VERSION/lib64"; \
    fi \
 && PY=python TWOSTREAM_WHEEL_CACHE=/tmp/wheels scripts/build_horovod.sh \
 && rm -rf /tmp/wheels
COPY setup.cfg pyproject.toml README.md ./
COPY trainer trainer
COPY models models
COPY data data
COPY launch launch
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && rm -rf /src

# ---- runtime: the installed Python, and sshd ----
FROM ${BASE}
ARG VARIANT=cpu
ARG CUDA_VERSION=12.8
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server openssh-client \
 && rm -rf /var/lib/apt/lists/*
# As the operator's images do (build/base/Dockerfile, examples/v2beta1/horovod/Dockerfile in kubeflow/mpi-operator):
# sshd's privilege-separation folder; no ownership checks on the key folder the operator mounts from a Secret
# (StrictModes no); the client connects to pods it has not met (StrictHostKeyChecking no; horovodrun --gloo asks
# for it itself, mpirun does not) and writes no known_hosts into that read-only mount.
RUN mkdir -p /var/run/sshd \
 && printf 'Port 22\nStrictModes no\n' > /etc/ssh/sshd_config.d/twostream.conf \
 && printf 'Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n' \
      > /etc/ssh/ssh_config.d/twostream.conf \
 && ssh-keygen -A
COPY --from=build /usr/local /usr/local
# COPY, then chmod: COPY --chmod needs BuildKit, and Docker's classic builder (Debian 12's docker.io) builds this too.
COPY launch/jobs/k8s_entrypoint.sh /usr/local/bin/twostream-k8s-entrypoint
# Ranks started over SSH do not see the image's ENV; the loader finds the GPU variant's NCCL and CUDA runtime here.
RUN chmod 0755 /usr/local/bin/twostream-k8s-entrypoint \
 && if [ "$VARIANT" = gpu ]; then \
      printf '%s\n' /usr/local/lib/python3.11/site-packages/nvidia/nccl/lib "/usr/local/cuda-$CUDA_VERSION/lib64" \
        > /etc/ld.so.conf.d/twostream-gpu.conf; \
    fi \
 && ldconfig \
 && horovodrun --check-build \
 && twostream --help > /dev/null
# No USER: the base image's root, whom the MPIJob assumes (sshd binds port 22 and reads keys from /root/.ssh).
WORKDIR /workspace
EXPOSE 22
# The workers' command in the MPIJob (sshd below it); the launcher's is 'twostream-k8s-entrypoint launcher horovodrun ...'.
CMD ["/usr/local/bin/twostream-k8s-entrypoint", "worker"]
