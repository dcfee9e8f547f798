"""Precomputes every video's flow and frame index into the flow cache, with a progress bar; a rerun skips what is cached."""
from __future__ import annotations

import logging
from typing import Sequence

from tqdm import tqdm

from twostream.data.clips import ClipLoader, ClipSpec
from twostream.data.flow_cache import FlowCache
from twostream.data.manifest import VideoRecord

log = logging.getLogger(__name__)


def prepare(records: Sequence[VideoRecord], spec: ClipSpec, cache: FlowCache, progress: bool = True) -> dict:
    """Fills `cache` for `records`; returns {"computed", "cached", "failed": ["path: reason", ...]}."""
    loader = ClipLoader(spec, cache)
    summary = {"computed": 0, "cached": 0, "failed": []}
    paths = sorted({r.path for r in records})
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
