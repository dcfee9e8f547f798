"""Real-footage choices side by side on the realistic synthetic set, split by source scene: frame handling, flow
method, backbone.

Every variant is the `footage` preset shrunk to CPU size (small() below; no ImageNet file here, so every backbone
trains from scratch, with AdamW at 0.002 instead of the preset's SGD fine-tuning rate), run through the real
training path (twostream.trainer.video.video_task.train) for the same epochs, on the same videos, from the same seed:

- frames: squash to size x size | short side + crop (shape kept) | region crop (the set's box tracks);
- flow: DIS fast | DIS medium | Farneback | TV-L1, on region crops; CPU ms per frame pair comes from
  benchmarks/flow_methods.py's timing at the variants' base resolution;
- backbone: the preset's ImageNet path is not run (no weights file); c3d vs mobilenetv3small, both from scratch.

The held-out videos are whole scenes the model never saw (data/make/synthetic_scenes.py). Each variant's flow is
computed once into a shared flow cache before it trains (`prepare`, timed), so training reads cached flow.
Reported: the last epoch's held-out video-level ROC-AUC and accuracy (no selection on the held-out set), the
best epoch's AUC (optimistic: chosen on the same videos), seconds (prepare s: the whole set's flow, one process).
Several --seeds give the spread; --table-from LOG prints the tables of an earlier run's output.

    .venv/bin/python benchmarks/real_footage.py --out runs/real_footage --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the table

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from flow_methods import time_pairs, video_frames  # noqa: E402 (benchmarks/, the script's folder)

from twostream.data.decode.boxes import BoxTracks  # noqa: E402
from twostream.data.decode.flow import FlowEngine  # noqa: E402
from twostream.data.decode.flow_cache import FlowCache  # noqa: E402
from twostream.data.make.prepare import prepare  # noqa: E402
from twostream.data.make.synthetic_scenes import SceneSpec, synthesize_scenes  # noqa: E402
from twostream.data.manifest import load_manifest  # noqa: E402
from twostream.trainer import config as config_lib  # noqa: E402
from twostream.trainer.video.video_task import train  # noqa: E402

PRESET = "footage"
REGION = "data.boxes={videos}/boxes"
# Each run: its overrides on top of the shrunk preset. "region" is the reference of the flow and backbone groups.
RUNS = {
    "region": [REGION],
    "short_side": [],
    "squash": ["clip.resize=squash", "clip.scale_jitter=[]"],
    "dis_medium": [REGION, "clip.dis_preset=medium"],
    "farneback": [REGION, "clip.flow_method=farneback"],
    "tvl1": [REGION, "clip.flow_method=tvl1"],
    "mobilenetv3small": [REGION, "model.name=two_stream_mobilenetv3small"],
}
# The tables: (row, run, flow method for the CPU column)
GROUPS = {
    "frames": [
        ("region crop (data.boxes)", "region", None),
        ("short side + crop", "short_side", None),
        ("squash", "squash", None),
    ],
    "flow (region crop)": [
        ("dis fast", "region", "dis:fast"),
        ("dis medium", "dis_medium", "dis:medium"),
        ("farneback", "farneback", "farneback"),
        ("tvl1", "tvl1", "tvl1"),
    ],
    "backbone from scratch (region crop)": [("c3d", "region", None), ("mobilenetv3small", "mobilenetv3small", None)],
}
FLOW_METHODS = [method for rows in GROUPS.values() for _, _, method in rows if method]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/real_footage", help="videos/, flow_cache/ and one workdir per run")
    parser.add_argument("--videos", type=int, default=144, help="realistic videos, real/fake pairs (x 2 x scenes)")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--val-scenes", type=int, default=2, help="whole scenes held out")
    parser.add_argument("--size", type=int, default=64, help="clip side, pixels")
    parser.add_argument("--short-side", type=int, default=72, help="base short side, pixels (224/256 x this = size)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", default="0", help="comma-separated train.seed values; each runs every variant")
    parser.add_argument("--only", default="", help=f"comma-separated runs (default: all): {', '.join(RUNS)}")
    parser.add_argument("--flow-only", action="store_true", help="print the flow methods' CPU ms only, train nothing")
    parser.add_argument(
        "--table-from", metavar="LOG", help="print the tables from an earlier run's output, train nothing"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an extra override applied to every variant",
    )
    return parser.parse_args()


def small(args) -> list[str]:
    """The footage preset at CPU size: spatial values scaled by size / 224, DIS fast, a from-scratch c3d, one clip
    per validation video (its 3 spatial crops kept), one decode actor."""
    jitter_top = round(args.short_side * 320 / 256)
    return [
        f"clip.size={args.size}",
        f"clip.short_side={args.short_side}",
        f"clip.scale_jitter=[{args.short_side}, {jitter_top}]",
        "clip.flow_method=dis",
        "clip.dis_preset=fast",  # every group's reference flow, whatever the preset's
        "model.name=two_stream_c3d",
        "model.width=16",
        "model.depth=3",
        "model.pretrained=",
        "model.freeze_bn=none",
        "model.temporal_shift=0",
        "train.optimizer=adamw",
        "train.lr=0.002",
        f"train.epochs={args.epochs}",
        "eval.views=1",
        "data.num_actors=1",
    ]


def variant_config(args, videos: str, extra: list[str], seed: int) -> config_lib.Config:
    """The shrunk preset with the run's overrides, on `videos`, from `seed`."""
    overrides = [
        *small(args),
        f"data.root={videos}",
        f"train.seed={seed}",
        *(o.format(videos=videos) for o in extra),
        *args.overrides,
    ]
    return config_lib.load(PRESET, overrides=overrides)


def fill_flow_cache(config: config_lib.Config, cache_dir: str) -> float:
    """Computes the variant's flow for every video into the shared cache; returns the seconds it took."""
    cache = FlowCache(cache_dir, config.data.flow_cache_bytes, config.clip.flow_params())
    boxes = BoxTracks(config.data.boxes, config.data.box_margin) if config.data.boxes else None
    start = time.perf_counter()
    prepare(
        load_manifest(config.data.root, config.data.manifest).records, config.clip, cache, progress=False, boxes=boxes
    )
    return time.perf_counter() - start


def flow_cpu_ms(short_side: int, rounds: int = 7, pairs: int = 3) -> dict[str, float]:
    """CPU ms per frame pair of each flow method on short_side x short_side frames (a region crop's base
    resolution), one core, methods interleaved in a rotating order per round (benchmarks/flow_methods.py's
    timing, so a busy neighbour slows them alike); medians over rounds."""
    cv2.setNumThreads(1)  # as in every decode actor
    frames = video_frames(short_side, pairs + 1)
    left = (frames.shape[2] - short_side) // 2
    frames = np.ascontiguousarray(frames[:, :, left : left + short_side])
    engines = {method: FlowEngine(*method.split(":")) for method in FLOW_METHODS}
    times = {method: [] for method in engines}
    for engine in engines.values():
        engine.between_frames(frames[:2])  # warm-up: first calls allocate pyramids and buffers
    for round_index in range(rounds):
        order = FLOW_METHODS[round_index % len(FLOW_METHODS) :] + FLOW_METHODS[: round_index % len(FLOW_METHODS)]
        for method in order:
            times[method].append(time_pairs(engines[method], frames)[0])
    return {method: float(np.median(t)) for method, t in times.items()}


def run_variant(args, videos: str, run: str, seed: int) -> dict:
    """Fills the flow cache for the run's settings, trains it, and reads its epochs' held-out video metrics."""
    config = variant_config(args, videos, RUNS[run], seed)
    cache_dir = os.path.join(args.out, "flow_cache")
    prepare_s = fill_flow_cache(config, cache_dir)
    config = variant_config(args, videos, RUNS[run] + [f"data.flow_cache_dir={cache_dir}"], seed)
    workdir = os.path.join(args.out, f"seed{seed}", run)
    start = time.perf_counter()
    train(config, workdir)
    train_s = time.perf_counter() - start
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    epochs = [r for r in records if r["kind"] == "epoch"]
    aucs = [r["val_video_roc_auc"] for r in epochs if r.get("val_video_roc_auc") is not None]
    return {
        "run": run,
        "seed": seed,
        "auc": epochs[-1]["val_video_roc_auc"],
        "accuracy": epochs[-1]["val_video_accuracy"],
        "best_auc": max(aucs),
        "videos": epochs[-1]["val_videos"],
        "prepare_s": round(prepare_s, 1),
        "train_s": round(train_s, 1),
    }


def spread(values: list[float]) -> str:
    """One value, or the mean over seeds with (min-max)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def print_tables(rows: list[dict], flow_ms: dict[str, float], args) -> None:
    seeds = sorted({r["seed"] for r in rows})
    print(
        f"\n{args.videos} realistic videos ({args.scenes} scenes, {args.val_scenes} held out: "
        f"{rows[0]['videos']} videos), clip {args.size} px from short side {args.short_side}, {args.epochs} epochs; "
        f"seeds {seeds}" + (": mean (min-max)" if len(seeds) > 1 else "") + "\n"
    )
    for group, table in GROUPS.items():
        flow = group.startswith("flow")
        header = "| variant |" + (
            f" CPU ms / pair at {args.short_side}x{args.short_side} | x DIS fast | prepare s |" if flow else ""
        )
        header += " video AUC (last epoch) | video accuracy (last epoch) | best-epoch AUC | train s |"
        print(f"{group}\n{header}\n|" + "---|" * (header.count("|") - 1))
        for row, run, method in table:
            mine = [r for r in rows if r["run"] == run]
            if not mine:
                continue
            cells = [
                spread([r["auc"] for r in mine]),
                spread([r["accuracy"] for r in mine]),
                spread([r["best_auc"] for r in mine]),
                f"{statistics.mean(r['train_s'] for r in mine):.0f}",
            ]
            if flow:
                computed = max(r["prepare_s"] for r in mine)  # the first seed's; later seeds find the cache full
                cells = [
                    f"{flow_ms[method]:.2f}",
                    f"{flow_ms[method] / flow_ms['dis:fast']:.1f}",
                    f"{computed:.0f}",
                    *cells,
                ]
            print(f"| {row} | " + " | ".join(cells) + " |")
        print()


def tables_from(log: str, args) -> None:
    """The tables of an earlier (possibly stopped) run, from the JSON lines it printed."""
    lines = [json.loads(line) for line in open(log) if line.startswith("{")]
    flow_ms = next(line["flow_cpu_ms_per_pair"] for line in lines if "flow_cpu_ms_per_pair" in line)
    print_tables([line for line in lines if "run" in line], flow_ms, args)


def main() -> None:
    args = parse_args()
    if args.table_from:
        return tables_from(args.table_from, args)
    videos = os.path.join(args.out, "videos")
    if not os.path.isfile(os.path.join(videos, "manifest.csv")):
        synthesize_scenes(videos, SceneSpec(num_videos=args.videos, scenes=args.scenes, val_scenes=args.val_scenes))
    runs = [run for run in RUNS if not args.only or run in args.only.split(",")]
    flow_ms = flow_cpu_ms(args.short_side)
    print(
        json.dumps({"flow_cpu_ms_per_pair": flow_ms, "resolution": f"{args.short_side}x{args.short_side}"}), flush=True
    )
    if args.flow_only:
        return
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for run in runs:
            rows.append(run_variant(args, videos, run, seed))
            print(json.dumps(rows[-1]), flush=True)
    print_tables(rows, flow_ms, args)


if __name__ == "__main__":
    main()
