"""Projects a GPU cluster from CPU ms per clip measured here: cores per GPU to keep it fed, weak scaling at 8-512 GPUs.

Usage: .venv/bin/python benchmarks/projection.py [--sizes 112,224] [--clips 24] [--models two_stream_resnet50,...]
                                                 [--cpu-ms 112=12.1,80.4,15.0 --cpu-ms 224=...] [--batch 16]
                                                 [--gpu-ms benchmarks/results/gpu_step_h200.jsonl]
What it measures (unless --cpu-ms gives decode,online,cached ms per clip for a size): CPU ms per clip in this
process (time.process_time, OpenCV and PyAV single-threaded, as in a decode actor) of the project's code on
H.264 videos it writes (340x256, 30 fps, 10 s, keyframe every 48 frames, 3 B-frames, a noisy test pattern so
frames cost what footage costs), 8-frame clips at seeded random positions, medians:
  decode   the clip's 8 frames decoded through the frame index and resized (what an RGB-only model needs);
  online   ClipLoader.load without a cache: the 8 frames and their successors, DIS flow (what training runs
           without `twostream prepare`);
  cached   ClipLoader.load with a filled flow cache (PNG): the 8 frames plus the cached flow read.
What it counts: forward FLOPs per clip and gradient bytes of each model (models/cost.py, ModelSpec defaults).
What it assumes (every figure a flag; the defaults and their sources are in docs/performance.md):
  GPU time per clip = the training step measured on a GPU by benchmarks/gpu_step.py, for the models and sizes
  that --gpu-ms files hold; else training FLOPs (3 x forward) / a ResNet-50 training FLOP rate, i.e. the model
  runs at ResNet-50's achieved utilisation: the rate of those files' ResNet50 images/s, or else the one NVIDIA
  published for one A100 80GB with mixed precision (2,470 images/s, 224 px); allreduce of fp32 gradients per step,
  ring model
  2(N-1)/N x bytes / bus bandwidth + 2(N-1) x per-hop latency per fused buffer (Horovod's 64 MiB fusion),
  NVLink inside a node of 8 GPUs, InfiniBand between nodes; the allreduce hidden under the backward pass
  (2/3 of the step) up to --overlap of it; the data pipeline running on --cores-per-gpu cores beside the GPU.
Prints: per model and size, GPU ms per clip and cores per GPU needed (decode only, online flow, cache); then
weak-scaling efficiency (per-GPU throughput / that of one perfectly fed GPU) at 8 to 512 GPUs, online flow vs
cache vs free data (the allreduce alone), as "no overlap/overlap".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from twostream.data.decode import transforms  # noqa: E402
from twostream.data.decode.clip_spec import ClipSpec  # noqa: E402
from twostream.data.decode.clips import ClipLoader  # noqa: E402
from twostream.data.decode.flow_cache import FlowCache  # noqa: E402
from twostream.data.decode.frame_index import FrameIndexes  # noqa: E402
from twostream.data.decode.sampling import TrainView, sample_frames  # noqa: E402
from twostream.data.decode.video import decode_selected  # noqa: E402

GPU_COUNTS = (8, 16, 32, 64, 128, 256, 512)
NUM_FRAMES = 8
NUM_CLASSES = 101  # UCF101's; only the heads' size depends on it
BACKWARD_SHARE = 2 / 3  # of a training step: backward ~ 2 x forward, the usual convention (3 x forward FLOPs)


def write_video(path: str, seconds: int, seed: int) -> str:
    """A 340x256 H.264 test pattern with noise (a typical prepared-dataset size: short side 256)."""
    from lavfi_video import write_pattern  # benchmarks/, the script's folder (here: tests import this file alone)

    source = f"testsrc2=size=340x256:rate=30:duration={seconds},noise=alls=8:allf=t,hue=h={seed * 40}"
    # keyframe every 48 frames, 3 B-frames, no scene-cut keyframes: a typical long-GOP H.264 file
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-pix_fmt", "yuv420p", "-g", "48"]
    return write_pattern(path, source, [*x264, "-sc_threshold", "1000000000"])


def cpu_ms(call) -> float:
    start = time.process_time()
    call()
    return (time.process_time() - start) * 1000


def decode_clip(path: str, spec: ClipSpec, indexes: FrameIndexes, seed: int) -> None:
    """The RGB half of a clip: sampled frames decoded at native size through the index, resized to the base."""
    rng = np.random.default_rng(seed)
    frames, _ = decode_selected(path, None, lambda n: sample_frames(n, NUM_FRAMES, "dense", 1, rng), indexes=indexes)
    for frame in frames.values():
        transforms.resize(frame, spec.base_shape(*frame.shape[:2]))


def measure_cpu(size: int, clips: int, videos: list[str], folder: str) -> dict[str, float]:
    """{decode, online, cached: median CPU ms per clip} at `size` px; indexes and the cache are built first."""
    spec = ClipSpec(num_frames=NUM_FRAMES, size=size)
    online = ClipLoader(spec)
    cached = ClipLoader(spec, FlowCache(os.path.join(folder, f"cache{size}"), 1 << 32, spec.flow_params()))
    for path in videos:  # one-off work kept out of the per-clip figures: frame indexes, the flow cache
        online.load(path, TrainView(0))
        cached.video_flow(path)
        cached.load(path, TrainView(0))
    times = {"decode": [], "online": [], "cached": []}
    for clip in range(clips):  # interleaved, so a busy neighbour slows the three alike
        path, seed = videos[clip % len(videos)], 1000 + clip
        times["decode"].append(cpu_ms(lambda: decode_clip(path, spec, online.indexes, seed)))
        times["online"].append(cpu_ms(lambda: online.load(path, TrainView(seed))))
        times["cached"].append(cpu_ms(lambda: cached.load(path, TrainView(seed))))
    return {name: float(np.median(values)) for name, values in times.items()}


def model_costs(names: list[str], size: int) -> dict[str, tuple[float, int]]:
    """{model: (forward FLOPs per clip, trainable parameters)} at `size` px, 8 frames, ModelSpec defaults."""
    import keras

    from twostream.models.cost import flops_per_clip
    from twostream.models.registry import build_model
    from twostream.models.two_stream import ModelSpec

    costs = {}
    for name in names:
        spec = ClipSpec(num_frames=NUM_FRAMES, size=size)
        model = build_model(ModelSpec(name=name), NUM_CLASSES, spec.rgb_shape, spec.flow_shape)
        trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
        costs[name] = (float(flops_per_clip(model)), trainable)
        keras.backend.clear_session()
    return costs


def reference_flops() -> float:
    """Forward FLOPs of one 224 px image through keras.applications' ResNet50, counted like the models."""
    import keras

    from twostream.models.cost import flops_per_clip

    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    flops = float(flops_per_clip(model))
    keras.backend.clear_session()
    return flops


def allreduce_ms(gpus: int, grad_bytes: float, args) -> float:
    """Ring allreduce of the step's gradients over `gpus` GPUs (0 for one GPU)."""
    if gpus == 1:
        return 0.0
    inside_node = gpus <= args.gpus_per_node
    bus_gbs = args.nvlink_gbs if inside_node else args.nics_per_node * args.nic_gbit / 8 * args.net_efficiency
    transfer_s = 2 * (gpus - 1) / gpus * grad_bytes / (bus_gbs * 1e9)
    buffers = math.ceil(grad_bytes / (args.fusion_mib * 2**20))
    latency_s = buffers * 2 * (gpus - 1) * args.hop_latency_us * 1e-6
    return (transfer_s + latency_s) * 1000


def efficiency(gpus: int, gpu_ms: float, data_ms: float, grad_bytes: float, overlap: float, args) -> float:
    """Per-GPU clips/s at `gpus` GPUs / that of one GPU fed for free: the step waits for data or for the allreduce."""
    compute = args.batch * gpu_ms
    exposed = max(0.0, allreduce_ms(gpus, grad_bytes, args) - overlap * BACKWARD_SHARE * compute)
    data = args.batch * data_ms / args.cores_per_gpu  # the batch's CPU work spread over the GPU's cores
    return compute / max(data, compute + exposed)


def parse_cpu_ms(given: list[str]) -> dict[int, dict[str, float]]:
    table = {}
    for item in given:
        size, values = item.split("=")
        decode, online, cached = (float(v) for v in values.split(","))
        table[int(size)] = {"decode": decode, "online": online, "cached": cached}
    return table


def load_gpu_ms(files: list[str]) -> tuple[dict[tuple[str, int], float], float | None]:
    """benchmarks/gpu_step.py's JSON lines: ({(model, size): measured GPU ms per clip}, ResNet50 images/s or None)."""
    measured, images_per_s = {}, None
    for path in files:
        with open(path) as lines:
            for result in map(json.loads, filter(str.strip, lines)):
                if "ms_per_clip" in result:
                    measured[(result["model"], result["size"])] = result["ms_per_clip"]
                elif "images_per_s" in result:
                    images_per_s = result["images_per_s"]
    return measured, images_per_s


def gpu_ms_per_clip(name: str, size: int, flops: float, rate: float, measured: dict) -> float:
    """Measured on a GPU where --gpu-ms has it, else the FLOP-scaled estimate."""
    return measured.get((name, size), 3 * flops / rate * 1000)


def report(sizes, cpu, costs, ref_flops, measured, images_per_s, args) -> None:
    rate = images_per_s * 3 * ref_flops  # achieved ResNet-50 training FLOP/s on the reference GPU
    print(
        f"GPU: {images_per_s:.0f} ResNet-50 images/s x 3 x {ref_flops / 1e9:.2f} GFLOPs = "
        f"{rate / 1e12:.1f} TFLOP/s achieved in training ({rate / 1e12 / args.peak_tflops:.0%} of "
        f"{args.peak_tflops:.0f} peak); batch {args.batch} clips per GPU; {args.cores_per_gpu} cores per GPU"
    )
    if measured:
        print(
            f"GPU ms per clip measured (benchmarks/gpu_step.py) for {len(measured)} model/size pairs, marked *; "
            "the others are FLOP-scaled"
        )
    for size in sizes:
        c = cpu[size]
        print(
            f"CPU ms per clip at {size}px: decode {c['decode']:.1f}, online flow {c['online']:.1f}, "
            f"cached flow {c['cached']:.1f}"
        )
    print(
        f"\n{'model':28s} {'px':>4s} {'GFLOPs':>7s} {'grad MB':>8s} {'GPU ms':>7s}  cores per GPU: "
        f"{'decode':>7s} {'online':>7s} {'cached':>7s}"
    )
    for size in sizes:
        for name, (flops, params) in costs[size].items():
            gpu_ms = gpu_ms_per_clip(name, size, flops, rate, measured)
            needed = {k: v * args.overhead / gpu_ms for k, v in cpu[size].items()}
            mark = "*" if (name, size) in measured else " "
            print(
                f"{name:28s} {size:4d} {flops / 1e9:7.1f} {params * 4 / 1e6:8.1f} {gpu_ms:6.2f}{mark}  "
                f"{'':15s}{needed['decode']:7.1f} {needed['online']:7.1f} {needed['cached']:7.1f}"
            )
    print(
        f"\nweak-scaling efficiency, no overlap/overlap {args.overlap:g} of the backward pass "
        f"(1.00 = every GPU as busy as one fed for free)"
    )
    print(f"{'model':28s} {'px':>4s} {'flow':7s} " + " ".join(f"{n:>9d}" for n in GPU_COUNTS))
    for size in sizes:
        for name, (flops, params) in costs[size].items():
            gpu_ms, grad_bytes = gpu_ms_per_clip(name, size, flops, rate, measured), params * 4
            for flow in ("online", "cached", "free"):  # free: data costs nothing, the allreduce alone
                data_ms = cpu[size][flow] * args.overhead if flow != "free" else 0.0
                cells = [
                    f"{efficiency(n, gpu_ms, data_ms, grad_bytes, 0.0, args):.2f}/"
                    f"{efficiency(n, gpu_ms, data_ms, grad_bytes, args.overlap, args):.2f}"
                    for n in GPU_COUNTS
                ]
                print(f"{name:28s} {size:4d} {flow:7s} " + " ".join(f"{cell:>9s}" for cell in cells))
    print(
        "\nallreduce ms per step: "
        + ", ".join(
            f"{name} {size}px: " + "/".join(f"{allreduce_ms(n, p * 4, args):.1f}" for n in (8, 64, 512))
            for size in sizes[-1:]
            for name, (_, p) in costs[size].items()
        )
        + "  (at 8/64/512 GPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="112,224", help="comma-separated clip sizes, pixels")
    parser.add_argument("--clips", type=int, default=24, help="clips measured per size and variant")
    parser.add_argument(
        "--cpu-ms",
        action="append",
        default=[],
        metavar="SIZE=DECODE,ONLINE,CACHED",
        help="CPU ms per clip to use instead of measuring (per size)",
    )
    parser.add_argument("--models", default="", help="comma-separated model names; default: every two_stream_*")
    parser.add_argument(
        "--overhead",
        type=float,
        default=1.0,
        help="pipeline CPU per clip / the loader's own (benchmarks/data_pipeline.py's Ray / tight loop)",
    )
    parser.add_argument(
        "--gpu-ms",
        action="append",
        default=[],
        metavar="FILE.jsonl",
        help="benchmarks/gpu_step.py output: its measured ms per clip replace the FLOP-scaled ones, "
        "its ResNet50 images/s replaces --images-per-s",
    )
    parser.add_argument("--images-per-s", type=float, default=2470.0, help="published ResNet-50 training images/s")
    parser.add_argument("--peak-tflops", type=float, default=312.0, help="that GPU's dense fp16 peak (only printed)")
    parser.add_argument("--batch", type=int, default=16, help="clips per GPU per step")
    parser.add_argument("--cores-per-gpu", type=float, default=16.0, help="CPU cores beside each GPU for the data")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--nvlink-gbs", type=float, default=195.0, help="allreduce bus bandwidth inside a node, GB/s")
    parser.add_argument("--nic-gbit", type=float, default=200.0, help="line rate of each node NIC, Gbit/s")
    parser.add_argument("--nics-per-node", type=int, default=8)
    parser.add_argument(
        "--net-efficiency",
        type=float,
        default=0.87,
        help="achieved share of the NICs' line rate (0.87-0.88: Gloo's ring between 2 and 3 test hosts at "
        "1 Gbit/s, benchmarks/allreduce_hosts.py)",
    )
    parser.add_argument("--hop-latency-us", type=float, default=5.0, help="latency of one ring step, microseconds")
    parser.add_argument(
        "--fusion-mib", type=float, default=64.0, help="Horovod's fusion buffer (HOROVOD_FUSION_THRESHOLD)"
    )
    parser.add_argument(
        "--overlap", type=float, default=1.0, help="share of the backward pass the allreduce can hide under"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cpu = parse_cpu_ms(args.cpu_ms)
    cv2.setNumThreads(1)  # as in every decode actor
    if any(size not in cpu for size in sizes):
        with tempfile.TemporaryDirectory() as folder:
            videos = [write_video(os.path.join(folder, f"v{i}.mp4"), 10, i) for i in range(2)]
            for size in sizes:
                if size not in cpu:
                    cpu[size] = measure_cpu(size, args.clips, videos, folder)
                    print(f"measured at {size}px: {cpu[size]}", flush=True)
    from twostream.models.registry import MODELS

    names = args.models.split(",") if args.models else [m for m in MODELS if m.startswith("two_stream_")]
    costs = {size: model_costs(names, size) for size in sizes}
    measured, images_per_s = load_gpu_ms(args.gpu_ms)
    report(sizes, cpu, costs, reference_flops(), measured, images_per_s or args.images_per_s, args)


if __name__ == "__main__":
    main()
