"""Embed images with decoding and preprocessing overlapped with the model.

Design from measurements (anchors/cpu_embed_results.md, gpu_embed_results.md):
- CPU, 2 cores: the model is the wall (~17 images/s); DataLoader worker processes took CPU from
  torch and were slower. So ONE background thread reads, decodes and preprocesses the next batch
  while the main thread runs the model on this one.
- CUDA: decoding is the wall (~250 images/s per core with PIL) and the fp16 model does
  ~29,000/s, so many threads prepare batches in parallel (PIL decode and resize release the GIL)
  and hand over pinned tensors already in the model's dtype.
Whole batches move between threads (not one item at a time), which the GPU anchors showed
matters once the model is fast.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.decode import UnusableImage, load_image
from search_core.encoder import Encoder

log = logging.getLogger(__name__)


@dataclass
class PreparedBatch:
    """One batch after decoding: model inputs for the good images, reasons for the rest."""

    positions: list[int]                                   # build-order positions that decoded
    features: dict | None                                  # Encoder.preprocess_images output
    skipped: list[tuple[int, str]] = field(default_factory=list)   # (position, reason)


@dataclass
class EmbeddedBatch:
    positions: list[int]
    vectors: np.ndarray                                    # float32 [len(positions), dim]
    skipped: list[tuple[int, str]]


def prepare_batch(encoder: Encoder, positions: Sequence[int], items: Sequence[Any],
                  dtype: Any = None, pin: bool = False) -> PreparedBatch:
    """Decode and preprocess; a file that cannot be used is listed, never raised."""
    good: list[int] = []
    images = []
    skipped: list[tuple[int, str]] = []
    for position, item in zip(positions, items):
        try:
            images.append(load_image(item))
            good.append(position)
        except UnusableImage as exc:
            skipped.append((position, str(exc)))
    features = None
    if images:
        features = encoder.preprocess_images(images)
        if dtype is not None or pin:
            features = {k: _to_host(v, dtype, pin) for k, v in features.items()}
    return PreparedBatch(positions=good, features=features, skipped=skipped)


def _to_host(value: Any, dtype: Any, pin: bool) -> Any:
    if not hasattr(value, "is_floating_point"):
        return value
    if dtype is not None and value.is_floating_point():
        value = value.to(dtype)
    return value.pin_memory() if pin else value


def embed_stream(encoder: Encoder, batches: Iterable[tuple[list[int], Callable[[], Sequence[Any]]]],
                 *, workers: int = 1) -> Iterator[EmbeddedBatch]:
    """Embed batches in order. Each batch is (positions, fetch) where fetch() returns the
    undecoded image items; fetching, decoding and preprocessing run in `workers` threads, up to
    workers + 1 batches ahead of the model."""
    dtype, pin = _transfer_settings(encoder)

    def prepare(positions: list[int], fetch: Callable[[], Sequence[Any]]) -> PreparedBatch:
        return prepare_batch(encoder, positions, fetch(), dtype=dtype, pin=pin)

    pending: deque[Future[PreparedBatch]] = deque()
    source = iter(batches)
    # Preparing threads run at normal priority. On a 2-core CPU one of them pre-empts an OpenMP
    # thread of the model now and then (measured: overlap 85-87% of the model alone, serial 87%);
    # idle priority (SCHED_IDLE) measured no better and can starve the build outright when another
    # process (the bot, say) keeps the cores busy.
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prepare") as pool:
        def refill() -> None:
            while len(pending) < workers + 1:
                nxt = next(source, None)
                if nxt is None:
                    return
                pending.append(pool.submit(prepare, *nxt))

        try:
            refill()
            while pending:
                prepared = pending.popleft().result()
                refill()   # queue the next batch before the model blocks this thread
                if prepared.features is None:
                    vectors = np.zeros((0, 0), dtype=np.float32)
                else:
                    vectors = encoder.embed_preprocessed(prepared.features)
                yield EmbeddedBatch(prepared.positions, vectors, prepared.skipped)
        finally:
            for fut in pending:
                fut.cancel()


def _transfer_settings(encoder: Encoder) -> tuple[Any, bool]:
    """On CUDA: hand over inputs pinned and in the model's dtype (fp16 weights need fp16 input)."""
    if not str(encoder.device).startswith("cuda"):
        return None, False
    try:
        param = next(encoder.model.parameters())
    except (StopIteration, AttributeError):
        return None, True
    return param.dtype, True
