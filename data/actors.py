"""Ray actors that decode clips and compute their flow, and an ordered, bounded dispatcher over them."""
from __future__ import annotations

import collections
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from twostream.data.boxes import Track
from twostream.data.clips import ClipLoader, ClipSpec
from twostream.data.flow_cache import FlowCache

log = logging.getLogger(__name__)
ACTOR_DEATH_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


@dataclass(frozen=True)
class ClipRequest:
    path: str
    seed: int | None   # None: deterministic centred window (evaluation)
    view: int = 0      # evaluation: which of `views` evenly spread deterministic clips
    views: int = 1
    crop: int = 0      # evaluation: which of `crops` spatial crops along the long side (data/transforms.py)
    crops: int = 1
    track: Track | None = None   # the video's region of interest (data/boxes.py); None: the full frame


@dataclass
class ClipResult:
    rgb: np.ndarray | None     # uint8 (T, H, W, 3), None when the clip failed
    flow: np.ndarray | None    # uint8 (T, H, W, 2)
    error: str | None = None
    path: str = ""             # the clip this result is of, as the actor saw it (tests check none is lost)
    pid: int = 0               # the decoding process: a new one after Ray restarted a dead actor


@dataclass(frozen=True)
class CacheSettings:
    folder: str               # empty: no flow cache, flow computed online every time
    max_bytes: int            # the cache's size bound (config: data.flow_cache_gb)


NO_CACHE = CacheSettings("", 0)


def make_loader(spec: ClipSpec, cache: CacheSettings = NO_CACHE) -> ClipLoader:
    flow_cache = FlowCache(cache.folder, cache.max_bytes, spec.flow_params()) if cache.folder else None
    return ClipLoader(spec, flow_cache)


# Ray restarts a dead actor (e.g. a decoder crashed in native code); DecoderPool re-sends its lost work.
@ray.remote(max_restarts=-1)
class ClipDecoder:
    """One decoding worker: several clips per call, arrays returned as uint8 to keep transfers small."""

    def __init__(self, spec: ClipSpec, cache: CacheSettings = NO_CACHE):
        import cv2
        cv2.setNumThreads(1)   # one core per actor; parallelism comes from the number of actors
        self.loader = make_loader(spec, cache)

    def load(self, requests: list[ClipRequest]) -> list[ClipResult]:
        results = []
        for request in requests:
            try:
                rgb, flow = self.loader.load(request.path, request.seed, request.view, request.views, request.crop,
                                             request.crops, request.track)
                results.append(ClipResult(rgb, flow, None, request.path, os.getpid()))
            except Exception as error:   # any bad file becomes a reported failure, never a dead actor
                results.append(ClipResult(None, None, f"{request.path}: {error}", request.path, os.getpid()))
        return results

    def pid(self) -> int:
        return os.getpid()

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()


class DecoderPool:
    """A fixed set of ClipDecoder actors fed round-robin, with at most `calls_in_flight` calls outstanding."""

    def __init__(self, spec: ClipSpec, num_actors: int, clips_per_call: int, cpus_per_actor: float = 1.0,
                 start_timeout_s: float = 120.0, cache: CacheSettings = NO_CACHE):
        self.clips_per_call = clips_per_call
        self.calls_in_flight = 2 * num_actors   # one call running and one queued per actor
        # On this process's node when it has room (soft): decoded frames then never cross the network.
        self.node = ray.get_runtime_context().get_node_id()
        here = NodeAffinitySchedulingStrategy(self.node, soft=True)
        self.actors = [ClipDecoder.options(num_cpus=cpus_per_actor, scheduling_strategy=here).remote(spec, cache)
                       for _ in range(num_actors)]
        self._next_actor = 0
        self._wait_until_placed(cpus_per_actor, start_timeout_s)
        places = ray.get([actor.where.remote() for actor in self.actors])
        self.actor_nodes = [node for _, node in places]
        self._pids = {pid for pid, _ in places}   # see `restarts`
        self._first_pids = len(self._pids)
        elsewhere = sum(node != self.node for node in self.actor_nodes)
        (log.warning if elsewhere else log.info)(
            "%d decode actors, %d of them on this process's Ray node %s%s", num_actors, num_actors - elsewhere,
            self.node[:12], " (no room left there: their frames cross the network)" if elsewhere else "")

    def _wait_until_placed(self, cpus_per_actor: float, timeout_s: float) -> None:
        """Fails loudly, instead of waiting forever, when the cluster has no room for the actors."""
        ready, _ = ray.wait([a.__ray_ready__.remote() for a in self.actors], num_returns=len(self.actors),
                            timeout=timeout_s)
        if len(ready) < len(self.actors):
            self.shutdown()
            raise RuntimeError(
                f"only {len(ready)} of {len(self.actors)} decode actors ({cpus_per_actor} CPU each) started within "
                f"{timeout_s:.0f}s; the Ray cluster has {ray.cluster_resources().get('CPU', 0)} CPUs. "
                "Lower data.num_actors or data.cpus_per_actor, or add nodes.")
        ray.get(ready)   # re-raises an actor's constructor error (e.g. an unknown flow method)

    def map(self, requests: Iterable[ClipRequest]) -> Iterator[ClipResult]:
        """An iterator over one result per request, in request order; memory stays bounded by calls_in_flight.

        The first calls_in_flight calls are sent now, before the first next(): the actors start decoding
        while the caller is still setting up (e.g. TensorFlow building the epoch's iterator).
        """
        chunks = _chunks(iter(requests), self.clips_per_call)
        first = itertools.islice(chunks, self.calls_in_flight)
        pending = collections.deque((self._submit(chunk), chunk) for chunk in first)
        return self._in_order(pending, chunks)

    def _in_order(self, pending: collections.deque, chunks: Iterator[list]) -> Iterator[ClipResult]:
        """Collects the oldest call and sends the next chunk before yielding its results, so every actor keeps
        a call queued behind the running one while the consumer works through the results."""
        while pending:
            results = self._collect(*pending.popleft())
            chunk = next(chunks, None)
            if chunk is not None:
                pending.append((self._submit(chunk), chunk))
            yield from results

    def _submit(self, chunk: list[ClipRequest]) -> ray.ObjectRef:
        """Round-robin over the actors."""
        actor = self.actors[self._next_actor]
        self._next_actor = (self._next_actor + 1) % len(self.actors)
        return actor.load.remote(chunk)

    def _collect(self, ref: ray.ObjectRef, chunk: list[ClipRequest]) -> list[ClipResult]:
        """The chunk's results; if its actor died, the chunk is sent again (Ray restarts the actor), then
        clip by clip, so a clip that kills its decoder becomes one reported failure and no other clip is lost."""
        try:
            return self._seen(ray.get(ref))
        except ACTOR_DEATH_ERRORS as error:
            log.warning("decode actor died (%s); re-sending its %d clips", type(error).__name__, len(chunk))
        try:
            return self._seen(ray.get(self._submit(chunk)))
        except ACTOR_DEATH_ERRORS:
            return [self._one_by_one(request) for request in chunk]

    def _one_by_one(self, request: ClipRequest) -> ClipResult:
        try:
            return self._seen(ray.get(self._submit([request])))[0]
        except ACTOR_DEATH_ERRORS as error:
            return ClipResult(None, None, f"{request.path}: its decode actor died twice ({type(error).__name__})")

    def _seen(self, results: list[ClipResult]) -> list[ClipResult]:
        self._pids.update(result.pid for result in results)
        return results

    @property
    def restarts(self) -> int:
        """Decode actors Ray has restarted so far (after a crash or a kill), counted as the new worker
        processes seen returning results (an actor restarted after its last call is counted later)."""
        return len(self._pids) - self._first_pids

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
