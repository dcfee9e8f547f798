"""Ray actors that decode clips and compute their flow, and an ordered, bounded dispatcher over them."""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from twostream.data.decode.boxes import Track
from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.decode.clips import ClipLoader
from twostream.data.decode.flow_cache import FlowCache
from twostream.data.decode.sampling import View
from twostream.data.distributed import shared_slots
from twostream.data.distributed.shared_slots import SlotFile, SlotLayout, SlotRef

log = logging.getLogger(__name__)
ACTOR_DEATH_ERRORS = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


@dataclass(frozen=True)
class ClipRequest:
    path: str
    view: View  # TrainView(seed) or EvalView(clip k of N, crop k of M): data/decode/sampling.py
    track: Track | None = None  # the video's region of interest (data/decode/boxes.py); None: the full frame


@dataclass
class ClipResult:
    """One clip, as DecoderPool.map yields it; rgb and flow are views into its call's ClipBatch."""

    rgb: np.ndarray | None  # uint8 (T, H, W, 3), None when the clip failed
    flow: np.ndarray | None  # uint8 (T, H, W, 2)
    error: str | None = None
    path: str = ""  # the clip this result is of, as the actor saw it (tests check none is lost)
    pid: int = 0  # the decoding process: a new one after Ray restarted a dead actor
    sequential: bool = False  # the video had to be read from the start (its seeks disagree with such a read)
    call: ClipBatch | None = None  # read in place from a slot: the call's clips, this one at `position` of them
    position: int = 0


@dataclass
class ClipBatch:
    """What one actor call returns: its clips in two contiguous arrays, in the call's shared-memory slot
    (data/distributed/shared_slots.py) or, without one, moved by Ray (two buffers per call, read in place from the
    object store). A failed clip's arrays are zeros, its error set."""

    rgb: np.ndarray  # uint8 (n, T, H, W, 3); empty when the clips are in the slot
    flow: np.ndarray  # uint8 (n, T, H, W, 2)
    errors: list[str | None]  # per clip: why it failed, None when it loaded
    paths: list[str]
    pid: int
    unknown_tracks: bool = False  # a request named a track this actor never received (it restarted): resend
    sequential: list[bool] = field(default_factory=list)  # per clip: its video is read from the start
    busy_s: float = 0.0  # wall seconds the actor spent on this call
    cpu_s: float = 0.0  # CPU seconds of its decoding thread in them (less: asleep, or queued for a core)
    in_slot: bool = False  # the clips are in the call's slot, not in rgb and flow

    def results(self, in_place: bool = False) -> list[ClipResult]:
        """One result per clip; `in_place`: each result names this call and its place in it (ClipResult.call)."""
        call = self if in_place else None
        return [
            ClipResult(None, None, error, path, self.pid, from_start, call, i)
            if error is not None
            else ClipResult(self.rgb[i], self.flow[i], None, path, self.pid, from_start, call, i)
            for i, (error, path, from_start) in enumerate(zip(self.errors, self.paths, self.sequential))
        ]


@dataclass
class PoolStats:
    """What the calls of one DecoderPool.map cost (EpochStream reports its epoch's)."""

    calls: int = 0
    actor_busy_s: float = 0.0  # ClipBatch.busy_s, summed
    actor_cpu_s: float = 0.0  # ClipBatch.cpu_s, summed
    driver_wait_s: float = 0.0  # time the driver blocked in ray.get on a call's result (the actors were behind)
    # Calls the actors still had to finish (sent, result not ready) when the driver came for the oldest, counted
    # while the pool was full (not in an epoch's last calls): 0 means the actors had run dry, waiting for the driver.
    in_flight_sum: int = 0
    in_flight_samples: int = 0
    in_flight_min: int | None = None
    remote_bytes: int = 0  # decoded frames (rgb + flow) from actors on another Ray node: what crossed the network
    # Calls of actors with a slot file that came back through Ray's object store: every slot was in use (more
    # calls in flight and batches held than the slots were sized for), or the actor could not map the file.
    calls_without_slot: int = 0

    def count_call(self, batch: ClipBatch, waited_s: float) -> None:
        self.calls += 1
        self.actor_busy_s += batch.busy_s
        self.actor_cpu_s += batch.cpu_s
        self.driver_wait_s += waited_s

    def count_in_flight(self, in_flight: int) -> None:
        self.in_flight_min = in_flight if self.in_flight_min is None else min(self.in_flight_min, in_flight)
        self.in_flight_sum += in_flight
        self.in_flight_samples += 1


@dataclass(frozen=True)
class Call:
    """One actor call in flight: its result, the actor's number, the slot its clips go to (None: the object store)."""

    ref: ray.ObjectRef
    actor: int
    slot: int | None = None


@dataclass(frozen=True)
class CacheSettings:
    folder: str  # empty: no flow cache, flow computed online every time
    max_bytes: int  # the cache's size bound (config: data.flow_cache_gb)


NO_CACHE = CacheSettings("", 0)


def make_loader(spec: ClipSpec, cache: CacheSettings = NO_CACHE) -> ClipLoader:
    flow_cache = FlowCache(cache.folder, cache.max_bytes, spec.flow_params()) if cache.folder else None
    return ClipLoader(spec, flow_cache)


# Ray restarts a dead actor (e.g. a decoder crashed in native code); DecoderPool re-sends its lost work.
@ray.remote(max_restarts=-1)
class ClipDecoder:
    """One decoding worker: several clips per call, returned as one ClipBatch of uint8 arrays."""

    def __init__(self, spec: ClipSpec, cache: CacheSettings = NO_CACHE):
        import cv2

        cv2.setNumThreads(1)  # one core per actor; parallelism comes from the number of actors
        self.spec = spec
        self.loader = make_loader(spec, cache)
        self.tracks: dict[str, Track] = {}  # by video path, each sent once (DecoderPool._submit)
        self.slot_files: dict[str, SlotFile] = {}  # the driver's slot files this actor has mapped, by path

    def load(
        self,
        requests: list[ClipRequest],
        tracks: dict[str, Track] | None = None,
        keys: Sequence[str | None] = (),
        slot: SlotRef | None = None,
    ) -> ClipBatch:
        """The requests' clips, in order, written into `slot` where given (and mapped here), else returned. A
        request's track comes with it, or is one this actor keeps (`tracks` adds to them): keys[i], where given and
        not None, names request i's (DecoderPool._submit sends each once)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        batch = self._load(requests, tracks or {}, list(keys) or [None] * len(requests), slot)
        batch.busy_s, batch.cpu_s = time.perf_counter() - started, time.thread_time() - cpu_started
        return batch

    def _load(
        self, requests: list[ClipRequest], tracks: dict[str, Track], keys: list[str | None], slot: SlotRef | None
    ) -> ClipBatch:
        self.tracks.update(tracks)
        if any(key is not None and key not in self.tracks for key in keys):
            return ClipBatch(np.empty(0, np.uint8), np.empty(0, np.uint8), [], [], os.getpid(), unknown_tracks=True)
        slot_file = shared_slots.open_ref(slot, self.slot_files) if slot is not None else None
        if slot_file is not None:
            assert slot is not None
            rgb, flow = slot_file.arrays(slot.index, len(requests))
        else:  # each clip written below: no memset
            rgb = np.empty((len(requests), *self.spec.rgb_shape), np.uint8)
            flow = np.empty((len(requests), *self.spec.flow_shape), np.uint8)
        errors: list[str | None] = [None] * len(requests)
        for i, (request, key) in enumerate(zip(requests, keys)):
            track = self.tracks[key] if key is not None else request.track
            try:
                self.loader.load(request.path, request.view, track, out=(rgb[i], flow[i]))
            except Exception as error:  # any bad file becomes a reported failure, never a dead actor
                errors[i] = f"{request.path}: {error}"
                rgb[i], flow[i] = 0, 0
        paths = [r.path for r in requests]
        if slot_file is not None:
            rgb, flow = np.empty(0, np.uint8), np.empty(0, np.uint8)  # the driver reads them from the slot
        return ClipBatch(
            rgb,
            flow,
            errors,
            paths,
            os.getpid(),
            sequential=[self.loader.read_sequentially(path) for path in paths],
            in_slot=slot_file is not None,
        )

    def pid(self) -> int:
        return os.getpid()

    def where(self) -> tuple[int, str]:
        """(process id, Ray node id) of this actor."""
        return os.getpid(), ray.get_runtime_context().get_node_id()


class DecoderPool:
    """A fixed set of ClipDecoder actors fed round-robin, each with `calls_in_flight` calls outstanding. Actors on
    this process's Ray node write their clips into shared-memory slots (data/distributed/shared_slots.py), the
    others return them through Ray's object store."""

    def __init__(
        self,
        spec: ClipSpec,
        num_actors: int,
        clips_per_call: int,
        cpus_per_actor: float = 1.0,
        start_timeout_s: float = 120.0,
        cache: CacheSettings = NO_CACHE,
        shared_memory: bool = True,
        calls_in_flight: int = 2,
        slots: int = 4,
    ):
        """`calls_in_flight`: per actor (data.calls_in_flight): one running, the rest queued behind it. `slots`: per
        actor, at least `calls_in_flight` (shared_slots.slots_per_actor). `shared_memory`: actors on this process's
        Ray node write their clips into shared-memory slots (False: every actor's go through Ray's object store, e.g.
        to compare the two: benchmarks/data_pipeline.py)."""
        self.clips_per_call = clips_per_call
        self.start_timeout_s = start_timeout_s
        self.calls_in_flight = calls_in_flight * num_actors  # the pool's
        # On this process's node while it has room: decoded frames then never cross the network. Soft alone
        # spills only when the node could never hold an actor; _spill_on_unavailable also when it is full now
        # (e.g. horovod.ray packed several ranks' CPUs there), else the actors would wait for CPUs that never free.
        self.node = ray.get_runtime_context().get_node_id()
        here = NodeAffinitySchedulingStrategy(self.node, soft=True, _spill_on_unavailable=True)
        # mypy keeps a decorated class's own type, so ray.remote's ActorClass (and its options) is hidden from it
        self.actors = [
            ClipDecoder.options(  # type: ignore[attr-defined]
                num_cpus=cpus_per_actor, scheduling_strategy=here
            ).remote(spec, cache)
            for _ in range(num_actors)
        ]
        self._next_actor = 0
        self._tracks_sent: list[dict[str, Track]] = [{} for _ in self.actors]  # see `_submit`
        self._wait_until_placed(cpus_per_actor, start_timeout_s)
        places = ray.get([actor.where.remote() for actor in self.actors])
        self.actor_nodes = [node for _, node in places]
        self._pids = {pid for pid, _ in places}  # see `restarts`
        self._first_pids = len(self._pids)
        layout = SlotLayout.for_actor(spec, clips_per_call, max(slots, calls_in_flight))
        same_node = [shared_memory and node == self.node for node in self.actor_nodes]
        self._slot_files = [shared_slots.create(layout) if ours else None for ours in same_node]
        self._free_slots = [list(range(layout.slots)) if f is not None else [] for f in self._slot_files]
        self._draining: list[Call] = []  # calls of a map left unfinished: their slots are free once they end
        elsewhere = sum(node != self.node for node in self.actor_nodes)
        address = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}  # node id -> its IP
        (log.warning if elsewhere else log.info)(
            "%d decode actors, %d of them on this process's Ray node %s at %s%s; theirs at %s; %d write their clips "
            "into shared memory",
            num_actors,
            num_actors - elsewhere,
            self.node[:12],
            address.get(self.node, "?"),
            " (no room left there: their frames cross the network)" if elsewhere else "",
            ",".join(address.get(node, "?") for node in self.actor_nodes),
            sum(f is not None for f in self._slot_files),
        )

    def _wait_until_placed(self, cpus_per_actor: float, timeout_s: float) -> None:
        """Fails loudly, instead of waiting forever, when the cluster has no room for the actors."""
        ready, _ = ray.wait(
            [a.__ray_ready__.remote() for a in self.actors], num_returns=len(self.actors), timeout=timeout_s
        )
        if len(ready) < len(self.actors):
            started, wanted = len(ready), len(self.actors)  # counted before shutdown() empties the list
            self.shutdown()
            raise RuntimeError(
                f"only {started} of {wanted} decode actors ({cpus_per_actor} CPU each) started within "
                f"{timeout_s:.0f}s; the Ray cluster has {ray.cluster_resources().get('CPU', 0):g} CPUs. "
                "Lower data.num_actors or data.cpus_per_actor, or add nodes."
            )
        ray.get(ready)  # re-raises an actor's constructor error (e.g. an unknown flow method)

    def map(
        self,
        requests: Iterable[ClipRequest],
        stats: PoolStats | None = None,
        then: Callable[[], None] | None = None,
        in_place: bool = False,
    ) -> Iterator[ClipResult]:
        """An iterator over one result per request, in request order; memory stays bounded by calls_in_flight.

        The first calls_in_flight calls are sent now, before the first next(): the actors start decoding
        while the caller is still setting up (e.g. the trainer ending the phase before). The calls' costs
        are counted in `stats`; `then()` is called once the last call is sent (the next map's first calls then
        queue behind it, and the actors decode them while this map's consumer finishes). `in_place`: a result's
        arrays are views into its call's slot (ClipResult.call: the call's clips); the slot takes another call only
        once no view of it is alive, so a consumer may keep them (EpochStream hands whole batches of them to
        tf.data); otherwise they are the result's own.
        """
        chunks = _chunks(iter(requests), self.clips_per_call)
        first = itertools.islice(chunks, self.calls_in_flight)
        pending = collections.deque((self._submit(chunk), chunk) for chunk in first)
        return self._in_order(pending, chunks, stats or PoolStats(), then, in_place)

    def _in_order(
        self,
        pending: collections.deque,
        chunks: Iterator[list],
        stats: PoolStats,
        then: Callable[[], None] | None,
        in_place: bool,
    ) -> Iterator[ClipResult]:
        """Collects the oldest call and sends the next chunk before yielding its results, so every actor keeps
        a call queued behind the running one while the consumer works through the results."""
        lent: Call | None = None  # the call whose slot the consumer is reading (in_place)
        try:
            while pending:
                if len(pending) == self.calls_in_flight:
                    refs = [call.ref for call, _ in pending]
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
                    stats.count_in_flight(len(refs) - len(ready))
                call, sent = pending.popleft()
                results, read = self._collect(call, sent, stats, in_place)
                self._release(lent)
                lent = read
                chunk = next(chunks, None)
                if chunk is not None:
                    pending.append((self._submit(chunk), chunk))
                elif then is not None:
                    next_map, then = then, None
                    next_map()
                yield from results
        finally:  # also when the consumer stops early: calls still running keep their slots until they end
            self._release(lent)
            self._draining.extend(call for call, _ in pending if call.slot is not None)

    def _submit(self, chunk: list[ClipRequest], all_tracks: bool = False) -> Call:
        """The call, round-robin over the actors, with a free slot of its actor's where there is one. A request's
        track travels once per actor (by video path; `all_tracks`: with this call whatever was sent before); the
        request then goes without it, its key (the path) beside it, so a call carries no track twice."""
        number = self._next_actor
        self._next_actor = (self._next_actor + 1) % len(self.actors)
        sent, new = self._tracks_sent[number], {}
        wire: list[ClipRequest] = []
        keys: list[str | None] = []
        for request in chunk:
            key = None
            if request.track is not None:
                if all_tracks or sent.get(request.path) is not request.track:
                    new[request.path] = sent[request.path] = request.track
                request, key = dataclasses.replace(request, track=None), request.path
            wire.append(request)
            keys.append(key)
        slot = self._take_slot(number)
        ref = self.actors[number].load.remote(wire, new, keys, self._ref(number, slot))
        return Call(ref, number, slot)

    def _take_slot(self, number: int) -> int | None:
        """A free slot of actor `number`'s, or None (no slot file, or all in use: the call uses the object store)."""
        if self._draining:
            ended, _ = ray.wait([c.ref for c in self._draining], num_returns=len(self._draining), timeout=0)
            for call in [c for c in self._draining if c.ref in ended]:
                self._draining.remove(call)
                self._release(call)
        free, slot_file = self._free_slots[number], self._slot_files[number]
        for slot in reversed(free):  # the slot given back last first: its pages are the likeliest still cached
            if slot_file is not None and not slot_file.held(slot):  # a tensor may still read it (EpochStream)
                free.remove(slot)
                return slot
        return None

    def _ref(self, number: int, slot: int | None) -> SlotRef | None:
        slot_file = self._slot_files[number]
        return slot_file.ref(slot) if slot_file is not None and slot is not None else None

    def _release(self, call: Call | None) -> None:
        """Gives the slot of an ended call back: the pool reads it no more (`_take_slot` still waits for its views)."""
        if call is not None and call.slot is not None:
            self._free_slots[call.actor].append(call.slot)

    def _collect(
        self, call: Call, chunk: list[ClipRequest], stats: PoolStats, in_place: bool
    ) -> tuple[list[ClipResult], Call | None]:
        """The chunk's results, and the call whose slot they are read from in place (to release after). If its
        actor died, the chunk is sent again (Ray restarts the actor), then clip by clip, so a clip that kills its
        decoder becomes one reported failure and no other clip is lost. A call that failed so keeps its slot: an
        unreachable actor might still write into it."""
        try:
            return self._results(call, chunk, stats, in_place)
        except ACTOR_DEATH_ERRORS as error:
            log.warning("decode actor died (%s); re-sending its %d clips", type(error).__name__, len(chunk))
            self._await_restart(call.actor)
        try:
            return self._results(self._submit(chunk), chunk, stats, in_place=False)
        except ACTOR_DEATH_ERRORS:
            return [self._one_by_one(request, stats) for request in chunk], None

    def _results(
        self, call: Call, chunk: list[ClipRequest], stats: PoolStats, in_place: bool
    ) -> tuple[list[ClipResult], Call | None]:
        """Waits for one call; its clips are read in place from its slot when `in_place` (the call is returned, to
        release once read), else copied out of it. An actor that restarted has lost the tracks sent to it: the
        chunk goes again, its tracks with it."""
        try:
            batch = self._get(call.ref, stats)
        except ACTOR_DEATH_ERRORS:
            self._tracks_sent[call.actor].clear()  # Ray restarts it empty
            raise
        if batch.unknown_tracks:
            self._release(call)
            self._tracks_sent[call.actor].clear()
            call = self._submit(chunk, all_tracks=True)
            batch = self._get(call.ref, stats)
        self._pids.add(batch.pid)
        if batch.in_slot:  # else the clips came through the object store (no slot, or the actor could not map it)
            slot_file = self._slot_files[call.actor]
            assert slot_file is not None and call.slot is not None
            rgb, flow = slot_file.arrays(call.slot, len(batch.paths))
            batch.rgb, batch.flow = (rgb, flow) if in_place else (rgb.copy(), flow.copy())
        elif self._slot_files[call.actor] is not None:
            stats.calls_without_slot += 1
        if self.actor_nodes[call.actor] != self.node:
            stats.remote_bytes += batch.rgb.nbytes + batch.flow.nbytes
        lent = call if batch.in_slot and in_place else None
        if lent is None:
            self._release(call)  # nothing reads its slot any more
        return batch.results(in_place=lent is not None), lent

    @staticmethod
    def _get(ref: ray.ObjectRef, stats: PoolStats) -> ClipBatch:
        """One call's ClipBatch, its cost and the driver's wait for it counted in `stats`."""
        started = time.perf_counter()
        batch = ray.get(ref)
        stats.count_call(batch, time.perf_counter() - started)
        return batch

    def _await_restart(self, number: int) -> None:
        """Waits until Ray has restarted actor `number` (calls sent meanwhile fail as unavailable), for at most
        the start timeout; on a loaded machine a restart takes seconds."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                ray.get(self.actors[number].pid.remote(), timeout=self.start_timeout_s)
                return
            except ray.exceptions.ActorUnavailableError:
                time.sleep(0.2)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                return  # gone for good, or not back in time: the re-sent calls report it

    def _one_by_one(self, request: ClipRequest, stats: PoolStats) -> ClipResult:
        try:
            return self._results(self._submit([request]), [request], stats, in_place=False)[0][0]
        except ACTOR_DEATH_ERRORS as error:
            return ClipResult(None, None, f"{request.path}: its decode actor died twice ({type(error).__name__})")

    @property
    def restarts(self) -> int:
        """Decode actors Ray has restarted so far (after a crash or a kill), counted as the new worker
        processes seen returning results (an actor restarted after its last call is counted later)."""
        return len(self._pids) - self._first_pids

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        self._slot_files = []  # each file is removed once nothing maps it here (shared_slots.create)


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
