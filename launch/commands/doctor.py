"""`twostream doctor`: a preflight of versions, Horovod's build, optical-flow methods and GPUs, with fixes."""

from __future__ import annotations

import glob
import importlib
import importlib.metadata
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass

PACKAGES = [
    ("tensorflow", "tensorflow"),
    ("keras", "keras"),
    ("horovod", "horovod"),
    ("ray", "ray"),
    ("cv2", "opencv"),
    ("numpy", "numpy"),
    ("yaml", "pyyaml"),
]
# pip wheels that each install a cv2 module; more than one at once leaves a mixed cv2 folder.
OPENCV_WHEELS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
SETUP_FIX = "run `make setup` in the repository (it installs the pinned requirements and builds Horovod)"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def check_packages() -> list[Check]:
    checks = []
    for module, name in PACKAGES:
        try:
            imported = importlib.import_module(module)
            version = getattr(imported, "__version__", None) or importlib.metadata.version(name)
            checks.append(Check(name, True, version))
        except Exception as error:  # a broken install raises anything, not only ImportError
            checks.append(Check(name, False, f"cannot import {module}: {error}", SETUP_FIX))
    return checks


def check_versions() -> list[Check]:
    """The combinations this project is built and tested with (DESIGN.md: TF 2.21 + Keras 3 + Horovod 0.28.1)."""
    checks = []
    wanted = {
        "tensorflow": ("2.21.", "tensorflow-cpu==2.21.0 (or tensorflow[and-cuda]==2.21.0)"),
        "keras": ("3.", "keras==3.15.1"),
        "horovod": ("0.28.1", "scripts/build_horovod.sh"),
    }
    for module, (prefix, fix) in wanted.items():
        try:
            version = importlib.import_module(module).__version__
        except Exception:
            continue  # already reported by check_packages
        if not version.startswith(prefix):
            checks.append(Check(f"{module} version", False, f"{version}, expected {prefix}*", f"install {fix}"))
    return checks


def check_horovod() -> list[Check]:
    try:
        from twostream.trainer import dist

        info = dist.build_info()
    except Exception as error:
        return [
            Check(
                "horovod: TensorFlow framework",
                False,
                f"horovod.tensorflow does not load: {error}",
                "rebuild Horovod against this TensorFlow: scripts/build_horovod.sh (it patches 0.28.1 for TF 2.21)",
            )
        ]
    frameworks = ["TensorFlow"] + [
        name for name, library in [("PyTorch", "torch/mpi_lib_v2"), ("MXNet", "mxnet/mpi_lib")] if _built(library)
    ]
    controllers = [name for name, built in info["controllers"].items() if built]
    operations = [name for name, built in info["tensor_operations"].items() if built]
    checks = [
        Check("horovod: frameworks", True, ", ".join(frameworks)),
        Check(
            "horovod: controllers",
            bool(controllers),
            ", ".join(controllers) or "none",
            "rebuild with HOROVOD_WITH_GLOO=1 (scripts/build_horovod.sh)",
        ),
        Check(
            "horovod: tensor operations",
            bool(operations),
            ", ".join(operations) or "none",
            "rebuild with HOROVOD_CPU_OPERATIONS=gloo (scripts/build_horovod.sh)",
        ),
    ]
    for name in ("horovodrun", "twostream"):
        path = os.path.join(os.path.dirname(sys.executable), name)
        found = path if os.access(path, os.X_OK) else shutil.which(name)
        checks.append(
            Check(
                f"command {name}",
                bool(found),
                found or "not found",
                f"install twostream into this Python's environment ({SETUP_FIX})",
            )
        )
    return checks


def _built(library: str) -> bool:
    """Whether Horovod's compiled extension for a framework exists (importing it would fail loudly when not)."""
    import horovod

    return bool(glob.glob(os.path.join(os.path.dirname(horovod.__file__), library + ".*.so")))


def check_flow() -> list[Check]:
    try:
        from twostream.data.decode.clip_spec import CONTRIB_METHODS
        from twostream.data.decode.flow import available_methods
    except Exception:
        return []  # cv2 itself is reported by check_packages
    available = available_methods()
    checks = [
        Check(
            "optical flow: methods",
            "dis" in available,
            ", ".join(available),
            "install opencv-contrib-python-headless (DIS is the default flow method)",
        )
    ]
    missing = [name for name in CONTRIB_METHODS if name not in available]
    if missing:
        checks.append(
            Check(
                "optical flow: contrib methods",
                False,
                f"{', '.join(missing)} missing: no cv2.optflow (DIS and Farneback work)",
                "only for clip.flow_method=" + "|".join(missing) + ": pip "
                "uninstall opencv-python-headless, then pip install opencv-contrib-python-headless",
                required=False,
            )
        )
    wheels = [name for name in OPENCV_WHEELS if _installed(name)]
    if len(wheels) > 1:  # they share the cv2 folder, so whichever installed last half-overwrote the other
        checks.append(
            Check(
                "optical flow: OpenCV wheels",
                False,
                f"{', '.join(wheels)} installed together",
                f"pip uninstall -y {' '.join(wheels)}, then pip install opencv-contrib-python-headless",
            )
        )
    return checks


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def check_gpus() -> list[Check]:
    try:
        import tensorflow as tf
    except Exception:
        return []
    gpus = tf.config.list_physical_devices("GPU")
    built = tf.test.is_built_with_cuda()
    detail = f"{len(gpus)} visible ({', '.join(g.name for g in gpus) or 'none'}); TensorFlow built with CUDA: {built}"
    fix = (
        ""
        if gpus
        else (
            "install tensorflow[and-cuda]==2.21.0 in place of tensorflow-cpu, and rebuild Horovod with "
            "HOROVOD_GPU_OPERATIONS=NCCL"
            if not built
            else "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
        )
    )
    return [Check("GPUs", bool(gpus), detail, fix, required=False)]


def run_checks() -> list[Check]:
    checks = []
    for group in (check_packages, check_versions, check_horovod, check_flow, check_gpus):
        try:
            checks += group()
        except Exception as error:  # a preflight reports a broken install, it does not crash on one
            checks.append(Check(group.__name__.replace("check_", ""), False, f"check failed: {error!r}", SETUP_FIX))
    return checks


def report(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"       fix: {check.fix}")
    broken = [c for c in checks if c.required and not c.ok]
    lines.append(f"{len(broken)} required problem(s)" if broken else "all required checks passed")
    return "\n".join(lines)


def run(args) -> int:
    checks = run_checks()
    print(json.dumps([asdict(c) for c in checks], indent=1) if args.json else report(checks))
    return 1 if any(c.required and not c.ok for c in checks) else 0


def add_parser(commands) -> None:
    parser = commands.add_parser("doctor", help="preflight: versions, Horovod build, flow methods, GPUs, and fixes")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(run=run)
