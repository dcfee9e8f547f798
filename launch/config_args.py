"""The config arguments every launcher shares (--preset/--config/--set/--data/--debug), checked and passed on."""

from __future__ import annotations

import argparse
import os
from importlib import resources

import yaml

DEBUG_SWITCHES = ["train.eager=true", "train.debug=true"]  # eager steps; deterministic ops + shapes logged


def add_preset_args(
    parser: argparse.ArgumentParser,
    preset_help: str = "a shipped config preset, e.g. demo or tiny",
    set_example: str = "train.epochs=3",
) -> None:
    """--preset, --config and --set: the config a command resolves (every command that reads one has them)."""
    parser.add_argument("--preset", help=preset_help)
    parser.add_argument("--config", help="a YAML config file (applied after the preset)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one config value; repeatable, e.g. --set {set_example}",
    )


def add_config_args(parser: argparse.ArgumentParser, data_required: bool = False) -> None:
    add_preset_args(parser)
    parser.add_argument("--data", required=data_required, help="dataset folder (sets data.root)")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="eager steps, the tiny preset's sizes, deterministic ops, first batch's shapes logged",
    )


def debug_overrides() -> list[str]:
    """The tiny preset's values as section.key=value overrides, plus the debug switches."""
    tiny = yaml.safe_load((resources.files("twostream.trainer") / "presets" / "tiny.yaml").read_text())
    return [
        f"{section}.{key}={value}" for section, values in tiny.items() for key, value in values.items()
    ] + DEBUG_SWITCHES


def overrides(args) -> list[str]:
    """Preset <- --config <- (--debug: tiny sizes, eager, deterministic) <- --set <- --data."""
    return (
        (debug_overrides() if args.debug else [])
        + list(args.overrides)
        + ([f"data.root={args.data}"] if args.data else [])
    )


def load_config(args, need_data: bool = True):
    """The resolved Config, or ConfigError naming the bad key; checked here so N ranks do not all fail later."""
    from twostream.trainer import config as config_lib

    config = config_lib.load(args.preset, args.config, overrides(args))
    if need_data and not config.data.root:
        raise config_lib.ConfigError("no data: pass --data DIR (a folder with one sub-folder of videos per class)")
    return config


def preflight(args, world_sizes):
    """Every launcher's check before it starts anything: the config (every value) and its fit to the number
    of ranks, for each world size the job may run with (one, or an elastic job's range). Returns the config."""
    from twostream.trainer import config as config_lib

    config = load_config(args)
    config_lib.check_world(config, world_sizes)
    return config


def forward(args) -> list[str]:
    """The same config as arguments for `twostream train` on another process or machine (paths made absolute)."""
    forwarded = []
    if args.preset:
        forwarded += ["--preset", args.preset]
    if args.config:
        forwarded += ["--config", os.path.abspath(args.config)]
    for item in args.overrides:
        forwarded += ["--set", item]
    if args.data:
        forwarded += ["--data", args.data]
    if args.debug:
        forwarded.append("--debug")
    return forwarded
