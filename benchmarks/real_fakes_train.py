"""Trains the CPU-size `footage` recipe (benchmarks/real_footage.py's small(), DIS medium, region crops) on one or more
labelled sets, per seed and variant, and prints one JSON line per run with its held-out video AUC.

    .venv/bin/python benchmarks/real_fakes_train.py --set-dir real=runs/real_fakes/base \
        --synthetic realistic=runs/synth_scenes/videos --seeds 0,1 --out runs/real_fakes_train

--synthetic KIND=DIR writes a realistic synthetic set into DIR unless one is there: 12 pairs a scene, a third of
the scenes held out (--synthetic-scenes 6: 144 videos, 2 held out, as in benchmarks/real_footage.py; 12: 288
videos, 4 held out); KIND `realistic` (SceneSpec's defaults) or `like_real` (data/make/synthetic_scenes.py's
LIKE_REAL_FAKES); the set is named KIND. A variant is a name and its overrides
(`--variant b5e24=clip.flow_bound=5,train.epochs=24`); `base` (no override) runs first unless --no-base. Each
set's flow goes to a cache in its own folder under --out, computed before the first run trains.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # real_footage.py's helpers: the same shrunk preset, the same path

from real_footage import fill_flow_cache, small  # noqa: E402

from twostream.data.make.synthetic_scenes import LIKE_REAL_FAKES, SceneSpec, synthesize_scenes  # noqa: E402
from twostream.trainer import config as config_lib  # noqa: E402
from twostream.trainer.video.video_task import train  # noqa: E402

RECIPE = ["clip.dis_preset=medium"]  # the footage preset's flow; small() sets DIS fast for real_footage's groups


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set-dir", action="append", default=[], metavar="NAME=DIR", help="a labelled set")
    parser.add_argument("--synthetic", action="append", default=[], metavar="KIND=DIR", help="realistic|like_real")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=K=V,K=V", help="overrides")
    parser.add_argument("--synthetic-scenes", type=int, default=6, help="scenes of a --synthetic set (1 in 3 held out)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--no-base", action="store_true", help="skip the base variant (already measured)")
    parser.add_argument("--out", default="runs/real_fakes_train")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--short-side", type=int, default=72)
    parser.add_argument("--epochs", type=int, default=12)
    return parser.parse_args()


def variants(args) -> dict[str, list[str]]:
    """{name: overrides}: base first, then each --variant in order."""
    found = {} if args.no_base else {"base": []}
    for text in args.variant:
        name, _, overrides = text.partition("=")
        found[name] = [o for o in overrides.split(",") if o]
    return found


def synthetic_set(kind: str, folder: str, scenes: int = 6) -> str:
    """Writes the realistic synthetic set of that kind (12 pairs a scene, a third of the scenes held out) into
    folder unless one is there; returns the folder."""
    if not os.path.isfile(os.path.join(folder, "manifest.csv")):
        extra = {"realistic": {}, "like_real": LIKE_REAL_FAKES}[kind]
        synthesize_scenes(folder, SceneSpec(num_videos=24 * scenes, scenes=scenes, val_scenes=scenes // 3, **extra))
    return folder


def run(args, videos: str, workdir: str, overrides: list[str], seed: int) -> dict:
    """Fills the flow cache, trains, and returns the last and best epochs' held-out video metrics."""
    cache = os.path.join(os.path.dirname(workdir.rstrip("/")), "..", "flow_cache")
    base = [*small(args), *RECIPE, f"data.root={videos}", f"data.boxes={videos}/boxes", f"train.seed={seed}"]
    config = config_lib.load("footage", overrides=[*base, *overrides])
    fill_flow_cache(config, cache)
    config = config_lib.load("footage", overrides=[*base, *overrides, f"data.flow_cache_dir={cache}"])
    train(config, workdir)
    epochs = [r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if r["kind"] == "epoch"]
    return {
        "auc": round(epochs[-1]["val_video_roc_auc"], 3),
        "best_auc": round(max(e["val_video_roc_auc"] for e in epochs), 3),
        "train_loss": round(epochs[-1]["train_loss"], 3),
        "val_videos": epochs[-1]["val_videos"],
        "steps": epochs[-1]["step"],
    }


def main() -> None:
    args = parse_args()
    sets = dict(text.split("=", 1) for text in args.set_dir)
    sets.update(
        {
            kind: synthetic_set(kind, folder, args.synthetic_scenes)
            for kind, folder in (t.split("=", 1) for t in args.synthetic)
        }
    )
    for variant, overrides in variants(args).items():
        for name, videos in sets.items():
            for seed in (int(s) for s in args.seeds.split(",")):
                workdir = os.path.join(args.out, name, "runs", f"{variant}_seed{seed}")
                row = {"set": name, "variant": variant, "overrides": overrides, "seed": seed}
                print(json.dumps({**row, **run(args, videos, workdir, overrides, seed)}), flush=True)


if __name__ == "__main__":
    main()
