"""Fusion ablation: RGB-only, flow-only and every two-stream fusion, trained for the same budget on synthetic video.

The synthetic clips are motion-defined (twostream.data.make.synthetic): a single frame does not tell real from
fake, the flow does. Each variant runs the real training path (twostream.trainer.video.video_task.train) from the `demo`
preset with the same overrides, in its own workdir, and the held-out accuracies are printed side by side.

    .venv/bin/python benchmarks/fusion_ablation.py --out runs/fusion_ablation
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the table

from twostream.data.make.synthetic import SynthSpec, synthesize  # noqa: E402 (after the env)
from twostream.trainer import config as config_lib  # noqa: E402
from twostream.trainer.video.video_task import train  # noqa: E402

# (row label, model.name, model.fusion); the single-stream ablations ignore the fusion
VARIANTS = [
    ("rgb only", "rgb_only_{backbone}", "concat"),
    ("flow only", "flow_only_{backbone}", "concat"),
    ("two-stream, late (0.5)", "two_stream_{backbone}", "late"),
    ("two-stream, late (learned)", "two_stream_{backbone}", "late_learned"),
    ("two-stream, concat + head", "two_stream_{backbone}", "concat"),
    ("two-stream, conv fusion", "two_stream_{backbone}", "conv"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fusion_ablation", help="videos/ and one workdir per variant")
    parser.add_argument("--videos", type=int, default=240, help="synthetic clips, half real, half fake")
    parser.add_argument("--size", type=int, default=64, help="frame side, pixels")
    parser.add_argument("--backbone", default="c3d", choices=["c3d", "r2plus1d", "tsn"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=16, help="channels of the first backbone stage")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an extra override applied to every variant",
    )
    return parser.parse_args()


def train_variant(args, videos: str, name: str, fusion: str) -> tuple[float, float]:
    """Trains one variant from scratch in its own workdir; returns (held-out accuracy, seconds)."""
    overrides = [
        f"data.root={videos}",
        f"clip.size={args.size}",
        f"model.name={name}",
        f"model.fusion={fusion}",
        f"model.width={args.width}",
        f"train.epochs={args.epochs}",
        *args.overrides,
    ]
    config = config_lib.load("demo", overrides=overrides)
    workdir = os.path.join(args.out, f"{name}-{fusion}")
    start = time.perf_counter()
    metrics, _ = train(config, workdir)
    return metrics["accuracy"], time.perf_counter() - start


def main() -> None:
    args = parse_args()
    videos = os.path.join(args.out, "videos")
    if not os.path.isdir(videos):
        synthesize(videos, SynthSpec(num_videos=args.videos, size=args.size))
    rows = []
    for label, name, fusion in VARIANTS:
        name = name.format(backbone=args.backbone)
        accuracy, seconds = train_variant(args, videos, name, fusion)
        rows.append((label, name, fusion, accuracy, seconds))
        print(
            json.dumps(
                {
                    "variant": label,
                    "model": name,
                    "fusion": fusion,
                    "val_accuracy": accuracy,
                    "seconds": round(seconds, 1),
                }
            ),
            flush=True,
        )
    print(
        f"\n{args.videos} synthetic clips at {args.size}x{args.size}, {args.backbone} width {args.width}, "
        f"{args.epochs} epochs each (demo preset otherwise)\n"
    )
    print(f"| {'variant':28} | {'model':22} | held-out accuracy | train s |")
    print(f"|{'-' * 30}|{'-' * 24}|-------------------|---------|")
    for label, name, _fusion, accuracy, seconds in rows:
        print(f"| {label:28} | {name:22} | {accuracy:17.3f} | {seconds:7.0f} |")


if __name__ == "__main__":
    main()
