"""`twostream prepare`: precomputes a dataset's optical flow into the flow cache (resumable, with a progress bar)."""

from __future__ import annotations

import os

from twostream.data.decode.boxes import PICKS
from twostream.launch import config_args
from twostream.launch.records import print_record


def add_parser(commands) -> None:
    parser = commands.add_parser("prepare", help="precompute flow for a dataset into the flow cache (resumable)")
    parser.add_argument("--data", required=True, help="dataset folder (sets data.root)")
    config_args.add_preset_args(
        parser, "a shipped config preset whose clip size and flow settings are used", "clip.size=112"
    )
    parser.add_argument("--clean", action="store_true", help="delete the flow cache instead of filling it")
    parser.add_argument(
        "--detect-faces",
        nargs="?",
        const="builtin",
        metavar="MODEL.onnx",
        help="first write face tracks to data.boxes (default DATA/.boxes), then fill the flow cache with each "
        "video's face region; alone (or `builtin`): the built-in detector (MTCNN, nothing downloaded); "
        "with a YuNet ONNX file: OpenCV's YuNet",
    )
    parser.add_argument(
        "--pick-face",
        choices=PICKS,
        default="largest",
        help="with --detect-faces: the face a track takes where it has none to follow (the first face, after a "
        "cut): the largest (default), the most confident, or the one nearest the frame's centre",
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    from twostream.data.decode.boxes import BoxError, BoxTracks
    from twostream.data.decode.flow_cache import FlowCache
    from twostream.data.make.faces import FaceModelError
    from twostream.data.make.prepare import prepare
    from twostream.data.manifest import from_config
    from twostream.trainer import config as config_lib

    config = config_lib.load(args.preset, args.config, list(args.overrides) + [f"data.root={args.data}"])
    folder = config.data.flow_cache_folder(for_writing=True)  # the folder `twostream train` reads by default
    cache = FlowCache(folder, config.data.flow_cache_bytes, config.clip.flow_params())
    if args.clean:
        freed = cache.clear()
        _remove_empty(folder)  # gone, so that training no longer finds a default cache there
        print_record({"cache": folder, "freed_bytes": freed})
        return 0
    records = from_config(config.data).records
    try:  # a bad model file or box file: one message (the CLI prints ConfigErrors), before any work
        if args.detect_faces:
            config = _detect_faces(config, records, args.detect_faces, args.pick_face)
        boxes = BoxTracks(config.data.boxes, config.data.box_margin) if config.data.boxes else None
        if boxes:
            for record in records:
                boxes.for_record(record)
    except (BoxError, FaceModelError) as error:
        raise config_lib.ConfigError(str(error)) from None
    summary = prepare(records, config.clip, cache, boxes=boxes)
    print_record(
        {
            "cache": folder,
            "computed": summary["computed"],
            "already_cached": summary["cached"],
            "failed": summary["failed"],
            "cache_bytes": cache.total_bytes(),
            "without_box": summary["without_box"],
            "read_sequentially": summary["sequential"],
        }
    )
    if config.data.flow_cache_dir:
        print(f"train with the cache: --set data.flow_cache_dir={folder} (and the same clip settings)")
    else:
        print(f"`twostream train --data {args.data}` reads this cache (with the same clip settings)")
    return 0


def _detect_faces(config, records, model: str, pick: str):
    """Writes face tracks to data.boxes (DATA/.boxes when unset); returns the config reading them."""
    import dataclasses

    from twostream.data.make.faces import detect_faces

    folder = config.data.boxes or os.path.join(config.data.root, ".boxes")
    faces = detect_faces(records, model, folder, pick=pick)
    print_record({"boxes": folder, **faces})
    print(f"train on the face regions: --set data.boxes={folder}")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, boxes=folder))


def _remove_empty(folder: str) -> None:
    """Removes the cache's folder and its sub-folders if nothing but cache entries were in them."""
    for directory, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(directory)
        except OSError:  # not empty: something else lives there; leave it
            pass
