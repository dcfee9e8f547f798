"""Precomputes every video's flow and frame index into the flow cache, with a progress bar; a rerun skips what is cached.

Before it starts, it prints the disk use it projects for the dataset, from each video's frame index.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence

from tqdm import tqdm

from twostream.data.clips import ClipLoader, ClipSpec
from twostream.data.flow_cache import FlowCache
from twostream.data.manifest import VideoRecord
from twostream.data.video import build_index

log = logging.getLogger(__name__)

# Stored bytes per pixel per frame pair: "raw" exactly; "png" and "webp" (lossless) as measured on the synthetic sets
# and on noisy 640x480 H.264 at 64-224 px (benchmarks/flow_cache.py); real footage may fall outside these ranges.
BYTES_PER_PIXEL = {"raw": (2.0, 2.0), "png": (0.10, 0.21), "webp": (0.05, 0.13)}


def prepare(records: Sequence[VideoRecord], spec: ClipSpec, cache: FlowCache, progress: bool = True) -> dict:
    """Fills `cache` for `records`; returns {"computed", "cached", "failed": ["path: reason", ...], "projected_bytes"}."""
    loader = ClipLoader(spec, cache)
    paths = sorted({r.path for r in records})
    projected = projected_bytes(paths, spec, cache, loader)
    if progress:
        print(describe(projected, cache), file=sys.stderr, flush=True)
    summary = {"computed": 0, "cached": 0, "failed": [], "projected_bytes": [projected["low"], projected["high"]]}
    for path in tqdm(paths, desc="flow", unit="video", disable=not progress, dynamic_ncols=True):
        try:
            cached = cache.get(path)
            if cached is not None:   # done by an earlier (possibly interrupted) run
                loader.agree_with_cache(path, len(cached) + 1)   # its frame index, if that run left none
                summary["cached"] += 1
                continue
            loader.video_flow(path)   # stores the frame index of the same decoding pass
            summary["computed"] += 1
        except Exception as error:   # a bad file is reported and skipped; training will replace its clips
            log.warning("cannot prepare %s: %s", path, error)
            summary["failed"].append(f"{path}: {error}")
    return summary


def projected_bytes(paths: Sequence[str], spec: ClipSpec, cache: FlowCache, loader: ClipLoader) -> dict:
    """{"videos", "pairs", "low", "high"}: frame pairs counted from the frame indexes (stored for later), times bytes."""
    pairs, readable = 0, 0
    for path in paths:
        try:
            pairs += max(0, len(loader.indexes.get(path, build_index)) - 1)
            readable += 1
        except Exception:   # reported by the preparing pass itself
            continue
    low, high = BYTES_PER_PIXEL[cache.fmt]
    pixels = pairs * spec.size * spec.size
    return {"videos": readable, "pairs": pairs, "low": int(pixels * low), "high": int(pixels * high)}


def describe(projected: dict, cache: FlowCache) -> str:
    low, high = BYTES_PER_PIXEL[cache.fmt]
    amount = _size(projected["low"]) if low == high else f"{_size(projected['low'])} to {_size(projected['high'])}"
    line = (f"prepare: {projected['videos']} videos, {projected['pairs']} frame pairs: projected {amount} as "
            f"{cache.fmt} ({low:g}{'' if low == high else f'-{high:g}'} bytes per pixel per frame pair) in "
            f"{cache.folder}, bound {_size(cache.max_bytes)}")
    if projected["high"] > 0.9 * cache.max_bytes:
        line += ("; that may exceed the bound, so the least recently used entries would be evicted and computed "
                 "again: raise data.flow_cache_gb")
    return line


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
