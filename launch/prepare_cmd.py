"""`twostream prepare`: precomputes a dataset's optical flow into the flow cache (resumable, with a progress bar)."""
from __future__ import annotations

import json
import os


def add_parser(commands) -> None:
    parser = commands.add_parser("prepare", help="precompute flow for a dataset into the flow cache (resumable)")
    parser.add_argument("--data", required=True, help="dataset folder (sets data.root)")
    parser.add_argument("--preset", help="a shipped config preset whose clip size and flow settings are used")
    parser.add_argument("--config", help="a YAML config file (applied after the preset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value; repeatable, e.g. --set clip.size=112")
    parser.add_argument("--clean", action="store_true", help="delete the flow cache instead of filling it")
    parser.set_defaults(run=run)


def run(args) -> int:
    from twostream.data.flow_cache import FlowCache
    from twostream.data.manifest import load_manifest
    from twostream.data.prepare import prepare
    from twostream.trainer import config as config_lib
    config = config_lib.load(args.preset, args.config, list(args.overrides) + [f"data.root={args.data}"])
    folder = config.data.flow_cache_folder(for_writing=True)   # the folder `twostream train` reads by default
    cache = FlowCache(folder, config.data.flow_cache_bytes, config.clip.flow_params())
    if args.clean:
        freed = cache.clear()
        _remove_empty(folder)   # gone, so that training no longer finds a default cache there
        print(json.dumps({"cache": folder, "freed_bytes": freed}))
        return 0
    records = load_manifest(config.data.root, config.data.manifest).records
    summary = prepare(records, config.clip, cache)
    print(json.dumps({"cache": folder, "computed": summary["computed"], "already_cached": summary["cached"],
                      "failed": summary["failed"], "cache_bytes": cache.total_bytes()}))
    if config.data.flow_cache_dir:
        print(f"train with the cache: --set data.flow_cache_dir={folder} (and the same clip settings)")
    else:
        print(f"`twostream train --data {args.data}` reads this cache (with the same clip settings)")
    return 0


def _remove_empty(folder: str) -> None:
    """Removes the cache's folder and its sub-folders if nothing but cache entries were in them."""
    for directory, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(directory)
        except OSError:   # not empty: something else lives there; leave it
            pass
