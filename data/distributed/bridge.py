"""The one bridge into TensorFlow: every epoch's local batches (EpochStream) read through one long-lived iterator.

Building a tf.data iterator instantiates its functions (graph rewrites, oneDNN's layout pass, grappler): about 15 ms of
CPU (benchmarks/bridge.py), 0.03 ms per clip of a 480-clip epoch at 112 px, near a fifth of the trainer process's CPU
per clip there (0.17 ms: benchmarks/data_pipeline.py). So a Bridge builds one dataset and one iterator per element
signature and keeps them: each epoch hands its stream over and reads that stream's elements back.

The generator behind the iterator never ends. It tags each element with a marker: a batch of stream `n`, the end of
stream `n`, stream `n`'s error (kept, and raised as itself to that stream's reader), or idle (no stream handed over:
tf.data's prefetch buffer then fills with idle elements and its thread waits in TensorFlow, never in Python). A reader
skips what is not its own: idle elements, and what is left of a stream whose reader stopped early.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Generator, Iterable, Iterator

import numpy as np
import tensorflow as tf

from twostream.data.decode.clip_spec import ClipSpec
from twostream.data.distributed.batch_buffers import aligned_empty
from twostream.data.distributed.pipeline import Batch

IDLE = -1
BATCH, END, ERROR = 0, 1, 2  # marker = 4 * stream number + one of these


def _marker(stream: int, kind: int) -> int:
    return 4 * stream + kind


class Bridge:
    """A tf.data dataset over the streams handed to it, and its one iterator. Static shapes, uint8 over the wire,
    batches prefetched; EpochStream's batches (64-byte aligned) become tensors without a copy. Elements are (inputs,
    labels, weights), plus each clip's (record, view) when `with_index` (evaluation)."""

    def __init__(self, spec: ClipSpec, local_batch: int, prefetch: int, with_index: bool):
        self.with_index = with_index
        self._handed: collections.deque[tuple[int, Iterator[Batch]]] = collections.deque()
        self._numbers = itertools.count()  # each stream's number
        self._stopped: set[int] = set()  # streams whose reader stopped early: the generator leaves them
        self._errors: dict[int, BaseException] = {}  # by stream number, until its reader raises it
        self._reader: int | None = None  # the stream being read
        self._iterator: Generator | None = None  # _marked(TensorFlow's iterator)
        self.element_spec = (
            {
                "rgb": tf.TensorSpec((local_batch, *spec.rgb_shape), tf.uint8),
                "flow": tf.TensorSpec((local_batch, *spec.flow_shape), tf.uint8),
            },
            tf.TensorSpec((local_batch,), tf.int32),
            tf.TensorSpec((local_batch,), tf.float32),
        ) + ((tf.TensorSpec((local_batch, 2), tf.int32),) if with_index else ())
        self._filler = tuple(  # what a marker without a batch carries (never read)
            {name: aligned_empty(tuple(part.shape)) for name, part in s.items()}
            if isinstance(s, dict)
            else np.zeros(s.shape, s.dtype.as_numpy_dtype)
            for s in self.element_spec
        )
        options = tf.data.Options()
        options.autotune.enabled = False  # nothing to tune here
        options.experimental_optimization.apply_default_optimizations = False  # nothing to rewrite in generator ->
        #                                                                        prefetch
        signature = (tf.TensorSpec((), tf.int64), self.element_spec)
        dataset = tf.data.Dataset.from_generator(self._generate, output_signature=signature).prefetch(prefetch)
        self.dataset = dataset.with_options(options)

    def read(self, batches: Iterator[Batch]) -> Iterator:
        """The elements made of `batches` (one epoch's), in order; an error the stream raised is raised here. One
        stream is read at a time: a read started meanwhile ends this one (an epoch left for the next)."""
        number, finished = next(self._numbers), False
        if self._reader is not None:
            self._stopped.add(self._reader)
        self._reader = number
        self._handed.append((number, batches))
        try:
            while not finished and self._reader == number:
                marker, element = next(self._elements())
                if marker == _marker(number, BATCH):
                    yield element
                elif marker == _marker(number, ERROR):
                    finished = True
                    raise self._errors.pop(number)
                finished = marker == _marker(number, END)
        finally:
            if self._reader == number:  # else a later read ended this one, and told the generator
                self._reader = None
                if not finished:  # the reader stopped early: the generator leaves what it has not sent of the stream
                    self._stopped.add(number)

    def close(self) -> None:
        """Ends the iterator now, while Python can still run the generator's finalizer (left to the interpreter's
        exit, TensorFlow warns that it could not finalize it); the next read makes a new one."""
        if self._reader is not None:
            self._stopped.add(self._reader)
        if self._iterator is not None:
            self._iterator.close()  # _marked: drops TensorFlow's iterator, which finalizes the generator

    def _elements(self) -> Iterator:
        """(marker, element) pairs from the one iterator, made on first use and again after TensorFlow failed (the
        reader's thread alone sets and clears it)."""
        if self._iterator is None:
            self._iterator = self._marked(iter(self.dataset))
        return self._iterator

    def _marked(self, iterator) -> Generator:
        try:
            for marker, element in iterator:
                yield int(marker), element
        finally:
            self._iterator = None

    def _generate(self):
        """Runs in tf.data's thread for as long as the iterator lives."""
        while True:
            if not self._handed:
                yield IDLE, self._filler
                continue
            number, batches = self._handed.popleft()
            self._stopped.difference_update([n for n in list(self._stopped) if n < number])  # streams gone by
            yield from self._stream(number, batches)

    def _stream(self, number: int, batches: Iterator[Batch]):
        try:
            for rgb, flow, labels, weights, index in batches:
                if number in self._stopped:
                    break
                yield (
                    _marker(number, BATCH),
                    ({"rgb": rgb, "flow": flow}, labels, weights) + ((index,) if self.with_index else ()),
                )
            else:
                yield _marker(number, END), self._filler
        except Exception as error:  # raised to the stream's reader, as itself
            self._errors[number] = error
            yield _marker(number, ERROR), self._filler
        finally:
            close = getattr(batches, "close", None)
            if close is not None:  # a stream left early gives its decode calls' slots back (DecoderPool.map)
                close()


class EpochDataset:
    """One epoch's batches through its Bridge: iterating it gives the elements made of them."""

    def __init__(self, bridge: Bridge, batches: Iterator[Batch]):
        self._bridge, self._batches = bridge, batches
        self.element_spec = bridge.element_spec

    def __iter__(self):
        return self._bridge.read(self._batches)


_BRIDGES: dict[tuple, Bridge] = {}  # by element signature: a run reads its train and eval datasets over and over


def to_dataset(
    stream: Iterable[Batch], spec: ClipSpec, local_batch: int, prefetch: int = 2, with_index: bool = False
) -> EpochDataset:
    """`stream`'s batches as tf.data elements (Bridge); the stream starts now, so the actors decode its first
    clips while the previous epoch ends."""
    key = (spec.rgb_shape, spec.flow_shape, local_batch, prefetch, with_index)
    if key not in _BRIDGES:
        _BRIDGES[key] = Bridge(spec, local_batch, prefetch, with_index)
    return EpochDataset(_BRIDGES[key], iter(stream))


def close_bridges() -> None:
    """Ends every bridge's iterator (a run's inputs closing)."""
    for bridge in _BRIDGES.values():
        bridge.close()
