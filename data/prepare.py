"""Precomputes every video's flow into the flow cache, with a progress bar; a rerun skips what is cached."""
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
            if cache.get(path) is not None:   # done by an earlier (possibly interrupted) run
                summary["cached"] += 1
                continue
            loader.video_flow(path)
            summary["computed"] += 1
        except Exception as error:   # a bad file is reported and skipped; training will replace its clips
            log.warning("cannot prepare %s: %s", path, error)
            summary["failed"].append(f"{path}: {error}")
    return summary
