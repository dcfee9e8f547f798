"""Flow methods side by side: CPU ms per frame pair and end-point error of DIS, Farneback, TV-L1, DeepFlow, PCAFlow.

Usage: python benchmarks/flow_methods.py [--sizes 112,224] [--methods dis:fast,dis:medium,farneback,tvl1,...]
                                         [--pairs 3] [--rounds 3]
Frames come from the realistic synthetic set (data/make/synthetic_scenes.py: a 4:3 scene with a moving camera and a
face-like region), resized so that the short side is each size (112 -> 149x112, 224 -> 299x224), as the
shape-keeping pipeline computes flow. OpenCV runs single-threaded (the decode actors' setting), so CPU ms per pair is
one core's cost. Methods run interleaved, `pairs` consecutive frame pairs each per round, in a rotating order, so a
busy neighbour slows them alike; each figure is the median over rounds. End-point error (EPE, pixels) is measured on
a pair with known motion: the scene's background moved by a shift, a 2% zoom and a 1 degree rotation, so the true
flow is exact everywhere (median and 90th percentile over the frame minus a 10% border). Ratios to DIS fast close.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from twostream.data.decode.flow import FlowEngine, available_methods
from twostream.data.make.synthetic_scenes import SceneSpec, make_scene, render_pair

DEFAULT_METHODS = "dis:ultrafast,dis:fast,dis:medium,farneback,tvl1,deepflow,pcaflow"
SHIFT, ZOOM, ROTATION_DEG = (1.6, -0.9), 1.02, 1.0  # the known motion of the EPE pair


def video_frames(short_side: int, count: int) -> np.ndarray:
    """`count` consecutive RGB frames of a realistic synthetic video, resized to the given short side (4:3)."""
    spec = SceneSpec(width=320, height=240, region=64, frames=count, seed=7)
    frames = render_pair(make_scene(spec, 0), spec, 0)["fake"][0]
    size = (round(short_side * 4 / 3), short_side)
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA)[..., ::-1] for f in frames])


def known_motion_pair(short_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB frames of a scene background and the exact flow between them (H, W, 2) in pixels."""
    width, height = round(short_side * 4 / 3), short_side
    world = make_scene(SceneSpec(width=width, height=height, seed=7), 1).world
    top_left = (np.array(world.shape[1::-1]) - (width, height)) // 2
    first = world[top_left[1] : top_left[1] + height, top_left[0] : top_left[0] + width]
    # Frame 2 shows frame 1's content moved by `motion`: zoom and rotation about the centre, then the shift.
    centre = np.array([width, height]) / 2
    motion = cv2.getRotationMatrix2D(tuple(centre), ROTATION_DEG, ZOOM)
    motion[:, 2] += SHIFT
    full = np.vstack([motion, [0, 0, 1]])
    to_world = np.array([[1, 0, top_left[0]], [0, 1, top_left[1]], [0, 0, 1]], float)
    second_from_world = np.linalg.inv(to_world @ np.linalg.inv(full))[:2]  # world -> frame 2
    second = cv2.warpAffine(world, second_from_world, (width, height), flags=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    moved = np.stack([xs, ys, np.ones_like(xs)], -1) @ motion.T
    truth = (moved - np.stack([xs, ys], -1)).astype(np.float32)
    return np.stack([first[..., ::-1], second[..., ::-1]]), truth


def end_point_error(engine: FlowEngine, pair: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    flow = engine.between_frames(pair)[0]
    h, w = truth.shape[:2]
    inner = (slice(h // 10, h - h // 10), slice(w // 10, w - w // 10))
    error = np.linalg.norm(flow[inner] - truth[inner], axis=-1)
    return float(np.median(error)), float(np.percentile(error, 90))


def time_pairs(engine: FlowEngine, frames: np.ndarray) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame pair over consecutive pairs of `frames`."""
    cpu, wall = time.process_time(), time.perf_counter()
    engine.between_frames(frames)
    pairs = len(frames) - 1
    return (time.process_time() - cpu) * 1e3 / pairs, (time.perf_counter() - wall) * 1e3 / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="112,224", help="short sides, pixels")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="method or dis:PRESET, comma-separated")
    parser.add_argument("--pairs", type=int, default=3, help="consecutive frame pairs per method per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in every decode actor: one core per worker
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [v for v in args.methods.split(",") if v.split(":")[0] in available_methods()]
    skipped = [v for v in args.methods.split(",") if v not in variants]
    if skipped:
        print(f"skipped (not in this OpenCV; install opencv-contrib-python-headless): {', '.join(skipped)}")
    engines = {v: FlowEngine(*v.split(":")) for v in variants}
    cpu = {(v, s): [] for v in variants for s in sizes}
    wall = {(v, s): [] for v in variants for s in sizes}
    frames = {s: video_frames(s, args.pairs + 1) for s in sizes}
    for s in sizes:
        for v in variants:  # warm-up: first calls allocate pyramids and buffers
            engines[v].between_frames(frames[s][:2])
    for round_index in range(args.rounds):
        order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
        for s in sizes:
            for v in order:
                c, w = time_pairs(engines[v], frames[s])
                cpu[v, s].append(c)
                wall[v, s].append(w)
    print(
        f"CPU ms per frame pair (one core; median of {args.rounds} rounds x {args.pairs} pairs), wall ms, and EPE "
        f"on known motion (shift {SHIFT} px, zoom {ZOOM}, rotation {ROTATION_DEG} deg)"
    )
    print(
        f"{'method':15s} {'size':>8s} {'CPU ms':>9s} {'wall ms':>9s} {'x DIS fast':>10s} {'EPE med':>8s} "
        f"{'EPE p90':>8s}"
    )
    for s in sizes:
        pair, truth = known_motion_pair(s)
        base = np.median(cpu["dis:fast", s]) if ("dis:fast", s) in cpu else None
        for v in variants:
            c, w = np.median(cpu[v, s]), np.median(wall[v, s])
            median_error, p90_error = end_point_error(engines[v], pair, truth)
            ratio = f"{c / base:10.1f}" if base else f"{'':10s}"
            shape = f"{frames[s].shape[2]}x{s}"
            print(f"{v:15s} {shape:>8s} {c:9.2f} {w:9.2f} {ratio} {median_error:8.3f} {p90_error:8.3f}")
    if len(sizes) > 1:
        print(
            f"cost of {sizes[-1]} px over {sizes[0]} px (CPU): "
            + ", ".join(f"{v} {np.median(cpu[v, sizes[-1]]) / np.median(cpu[v, sizes[0]]):.1f}x" for v in variants)
        )


if __name__ == "__main__":
    main()
