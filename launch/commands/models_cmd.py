"""`twostream models`: every registered model with its parameter count and FLOPs per clip at the configured size."""

from __future__ import annotations

import argparse
import dataclasses

from twostream.launch import config_args


def add_parser(commands) -> None:
    parser = commands.add_parser("models", help="list the registered models with parameters and FLOPs per clip")
    config_args.add_preset_args(
        parser, "a shipped config preset whose clip and model sizes are used, e.g. demo", "clip.size=112"
    )
    parser.add_argument("--classes", type=int, default=2, help="output classes (only the heads depend on it)")
    parser.add_argument(
        "--match",
        default="",
        help="only the models whose name contains this, e.g. tsn or "
        "resnet50 (the ImageNet networks take seconds each to build)",
    )
    parser.set_defaults(run=run)


def model_rows(config, classes: int, match: str = "") -> list[tuple]:
    """(name, fusion, parameters, FLOPs per clip) for every model, two-stream models once per fusion; for a
    network whose minimum frame size is above clip.size: (name, fusion, None, why)."""
    import keras

    from twostream.models.cost import flops_per_clip, parameter_count
    from twostream.models.registry import MODELS, build_model, spec_problem
    from twostream.models.two_stream import FUSIONS

    rows: list[tuple[str, str, int | None, int | str]] = []  # FLOPs, or why the network does not fit
    for name in sorted(name for name in MODELS if match in name):
        for fusion in FUSIONS if name.startswith("two_stream") else ("-",):
            spec = dataclasses.replace(
                config.model,
                name=name,
                fusion=fusion if fusion != "-" else "concat",
                weights="",
                pretrained="",
                freeze_bn="none",
                temporal_shift=0.0,
            )
            # sizes only: never read a weights file here, nor apply options that do not change the cost
            too_small = spec_problem(spec, config.clip.size)  # a network with a minimum frame size
            if too_small:
                rows.append((name, fusion, None, too_small))
                continue
            model = build_model(spec, classes, config.clip.rgb_shape, config.clip.flow_shape)
            rows.append((name, fusion, parameter_count(model), flops_per_clip(model)))
            keras.backend.clear_session()  # free each graph before building the next
    return rows


def run(args: argparse.Namespace) -> int:
    from twostream.trainer import config as config_lib

    config = config_lib.load(args.preset, args.config, args.overrides)
    clip = config.clip
    print(
        f"clip {clip.num_frames} frames of {clip.size}x{clip.size}, width {config.model.width}, depth "
        f"{config.model.depth}, {config.model.precision}; FLOPs = 2 x conv/dense multiply-adds per clip "
        f"(* = the configured model)"
    )
    print(f"{'model':28} {'fusion':13} {'parameters':>12} {'MFLOPs/clip':>12}")
    for name, fusion, parameters, flops in model_rows(config, args.classes, args.match):
        configured = name == config.model.name and fusion in (config.model.fusion, "-")
        if parameters is None:
            print(f"{name:28} {fusion:13} {'-':>12} {'-':>12}  ({flops})")
            continue
        print(f"{name:28} {fusion:13} {parameters:12,d} {flops / 1e6:12,.1f}{' *' if configured else ''}")
    return 0
