"""Precomputes every video's flow and frame index into the flow cache, with a progress bar; a rerun skips what is
cached.

Before it starts, it prints the disk use it projects for the dataset, from each video's frame index.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from twostream.data.decode.boxes import BoxTracks, region_boxes
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.video import build_index, frame_shape
from twostream.data.manifest import VideoRecord

log = logging.getLogger(__name__)

# Stored bytes per pixel per frame pair: "raw" exactly; "png" and "webp" (lossless) as measured on the synthetic sets
# and on noisy 640x480 H.264 at 64-224 px (benchmarks/flow_cache.py); real footage may fall outside these ranges.
BYTES_PER_PIXEL = {"raw": (2.0, 2.0), "png": (0.10, 0.21), "webp": (0.05, 0.13)}


def prepare(
    records: Sequence[VideoRecord],
    spec: ClipSpec,
    cache: FlowCache,
    progress: bool = True,
    boxes: BoxTracks | None = None,
) -> dict:
    """Fills `cache` for `records` (each video's flow of its region when `boxes` has its track); returns
    {"computed", "cached", "failed": ["path: reason", ...], "projected_bytes", "without_box", "sequential"};
    sequential: videos whose decoded timestamps come out of order, read from the start (data/decode/video.py)."""
    loader = ClipLoader(spec, cache)
    tracks = {r.path: boxes.for_record(r) if boxes is not None else None for r in records}
    paths = sorted(tracks)
    projected = projected_bytes(paths, spec, cache, loader, tracks)
    if progress:
        print(describe(projected, cache), file=sys.stderr, flush=True)
    without_box = sum(track is None for track in tracks.values()) if boxes is not None else 0
    summary: dict[str, Any] = {
        "computed": 0,
        "cached": 0,
        "failed": [],
        "projected_bytes": [projected["low"], projected["high"]],
        "without_box": without_box,
    }
    for path in tqdm(paths, desc="flow", unit="video", disable=not progress, dynamic_ncols=True):
        try:
            track = tracks[path]
            cached = cache.get(path, track.digest() if track is not None else "")
            if cached is not None:  # done by an earlier (possibly interrupted) run
                loader.agree_with_cache(path, len(cached) + 1)  # its frame index, if that run left none
                summary["cached"] += 1
                continue
            loader.video_flow(path, track)  # stores the frame index of the same decoding pass
            summary["computed"] += 1
        except Exception as error:  # a bad file is reported and skipped; training will replace its clips
            log.warning("cannot prepare %s: %s", path, error)
            summary["failed"].append(f"{path}: {error}")
    summary["sequential"] = loader.sequential_videos()
    return summary


def projected_bytes(
    paths: Sequence[str], spec: ClipSpec, cache: FlowCache, loader: ClipLoader, tracks: dict | None = None
) -> dict:
    """{"videos", "pairs", "low", "high"}: frame pairs counted from the frame indexes (stored for later), times the
    pixels of each video's base resolution (of its region, with a track), times bytes."""
    pairs, readable, pixels = 0, 0, 0
    for path in paths:
        try:
            count = max(0, len(loader.indexes.get(path, build_index)) - 1)
            height, width = frame_shape(path)
        except Exception:  # reported by the preparing pass itself
            continue
        track = (tracks or {}).get(path)
        if track is not None:
            x0, y0, x1, y1 = region_boxes(track, height, width)[0]
            height, width = y1 - y0, x1 - x0
        base_height, base_width = spec.base_shape(height, width)
        pairs, readable, pixels = pairs + count, readable + 1, pixels + count * base_height * base_width
    low, high = BYTES_PER_PIXEL[cache.fmt]
    return {"videos": readable, "pairs": pairs, "low": int(pixels * low), "high": int(pixels * high)}


def describe(projected: dict, cache: FlowCache) -> str:
    low, high = BYTES_PER_PIXEL[cache.fmt]
    amount = _size(projected["low"]) if low == high else f"{_size(projected['low'])} to {_size(projected['high'])}"
    line = (
        f"prepare: {projected['videos']} videos, {projected['pairs']} frame pairs: projected {amount} as "
        f"{cache.fmt} ({low:g}{'' if low == high else f'-{high:g}'} bytes per pixel per frame pair) in "
        f"{cache.folder}, bound {_size(cache.max_bytes)}"
    )
    if projected["high"] > 0.9 * cache.max_bytes:
        line += (
            "; that may exceed the bound, so the least recently used entries would be evicted and computed "
            "again: raise data.flow_cache_gb"
        )
    return line


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
