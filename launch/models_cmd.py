"""`twostream models`: every registered model with its parameter count and FLOPs per clip at the configured size."""
from __future__ import annotations

import argparse
import dataclasses


def add_parser(commands) -> None:
    parser = commands.add_parser("models", help="list the registered models with parameters and FLOPs per clip")
    parser.add_argument("--preset", help="a shipped config preset whose clip and model sizes are used, e.g. demo")
    parser.add_argument("--config", help="a YAML config file (applied after the preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value; repeatable, e.g. --set clip.size=112")
    parser.add_argument("--classes", type=int, default=2, help="output classes (only the heads depend on it)")
    parser.set_defaults(run=run)


def model_rows(config, classes: int) -> list[tuple[str, str, int, int]]:
    """(name, fusion, parameters, FLOPs per clip) for every model; two-stream models once per fusion."""
    import keras
    from twostream.models.cost import flops_per_clip, parameter_count
    from twostream.models.registry import MODELS, build_model
    from twostream.models.two_stream import FUSIONS
    rows = []
    for name in sorted(MODELS):
        for fusion in FUSIONS if name.startswith("two_stream") else ("-",):
            spec = dataclasses.replace(config.model, name=name, fusion=fusion if fusion != "-" else "concat",
                                       weights="")   # sizes only: never read a weights file here
            model = build_model(spec, classes, config.clip.rgb_shape, config.clip.flow_shape)
            rows.append((name, fusion, parameter_count(model), flops_per_clip(model)))
            keras.backend.clear_session()   # free each graph before building the next
    return rows


def run(args: argparse.Namespace) -> int:
    from twostream.trainer import config as config_lib
    config = config_lib.load(args.preset, args.config, args.overrides)
    clip = config.clip
    print(f"clip {clip.num_frames} frames of {clip.size}x{clip.size}, width {config.model.width}, depth "
          f"{config.model.depth}, {config.model.precision}; FLOPs = 2 x conv/dense multiply-adds per clip "
          f"(* = the configured model)")
    print(f"{'model':24} {'fusion':13} {'parameters':>12} {'MFLOPs/clip':>12}")
    for name, fusion, parameters, flops in model_rows(config, args.classes):
        configured = name == config.model.name and fusion in (config.model.fusion, "-")
        print(f"{name:24} {fusion:13} {parameters:12,d} {flops / 1e6:12,.1f}{' *' if configured else ''}")
    return 0
