#!/usr/bin/env bash
# Builds Horovod (the version setup.cfg pins) from source against the venv's TensorFlow, once per TensorFlow version, and installs it.
#
# Why from source: Horovod's last release (setup.cfg: horovod==...) predates TensorFlow 2.21 and ships no wheels. Two fixes are needed
# (see ../shared/notes/horovod-on-tf2.21.md): CMake >= 4 rejects its bundled gloo (CMAKE_POLICY_VERSION_MINIMUM),
# and xla_mpi_ops.cc includes XLA headers the TF wheel lacks (dropped from the build; only used with XLA ops).
# The built wheel is kept in $TWOSTREAM_WHEEL_CACHE, keyed by TensorFlow version, so a second set-up skips the build.
set -euo pipefail

PY=${PY:-.venv/bin/python}
HVD_VERSION=$(sed -n 's/^ *horovod==\([0-9.]*\).*/\1/p' "$(dirname "$0")/../setup.cfg")   # the one place it is written
if [ "${1:-}" = "--print-version" ]; then
  echo "$HVD_VERSION"
  exit 0
fi
TF_VERSION=$("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)
CACHE=${TWOSTREAM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twostream/wheels}/horovod-$HVD_VERSION-tf$TF_VERSION

installed_ok() {
  HVD_VERSION=$HVD_VERSION "$PY" - <<'PY' 2>/dev/null
import os, horovod, horovod.tensorflow as hvd
assert horovod.__version__ == os.environ["HVD_VERSION"] and hvd.gloo_built()
PY
}

if installed_ok; then
  echo "horovod $HVD_VERSION already installed for TensorFlow $TF_VERSION"
  exit 0
fi

if ! ls "$CACHE"/horovod-*.whl >/dev/null 2>&1; then
  echo "building horovod $HVD_VERSION for TensorFlow $TF_VERSION (2-3 minutes on 2 cores) ..."
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$src"
  tar xzf "$src/horovod-$HVD_VERSION.tar.gz" -C "$src"
  sed -i '/xla_mpi_ops.cc/d' "$src/horovod-$HVD_VERSION/horovod/tensorflow/CMakeLists.txt"
  gpu_ops=()
  if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpu_ops=(HOROVOD_GPU_OPERATIONS=NCCL)   # allreduce on the GPUs; needs NCCL headers on the machine
  fi
  mkdir -p "$CACHE"
  env CMAKE_POLICY_VERSION_MINIMUM=3.5 HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
      HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo \
      MAKEFLAGS="-j$(nproc)" "${gpu_ops[@]}" \
      "$PY" -m pip wheel --no-build-isolation --no-deps -w "$CACHE" "$src/horovod-$HVD_VERSION"
fi
"$PY" -m pip install --quiet --no-deps "$CACHE"/horovod-*.whl
# Horovod's own runtime dependencies (the wheel was installed without them to avoid a resolver pass).
"$PY" -m pip install --quiet "cloudpickle" "psutil" "pyyaml" "packaging" "cffi>=1.4.0"
installed_ok
echo "horovod $HVD_VERSION installed from $CACHE"
