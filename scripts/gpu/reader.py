"""Read a batch's encoded image bytes, not images: the GPU path's first stage.

The GPU anchors (anchors/gpu_decode_results.md) found that feeding bytes, not decoding, was the
wall: one DataLoader item per file topped out at 2,800-3,600 files/s, while nvJPEG decodes
26,000-30,000 images/s. So a whole batch is read at once on reader threads: a saved or Hub
dataset's Arrow data already holds the bytes (the build's fetch takes them out of the Arrow
table for the whole batch, undecoded); an image folder's files are read by a pool of threads
(file reads release the GIL) with the build's own `scripts.decode.read_bytes`, so an unreadable
file is listed with the reason the CPU build gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from scripts.decode import UnusableImage, read_bytes


@dataclass
class EncodedBatch:
    """A batch's bytes, in build order; files that could not be read are listed with the reason."""

    positions: list[int]
    data: list[bytes]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def read_batch(positions: Sequence[int], items: Sequence[Any], pool: Executor | None = None) -> EncodedBatch:
    """Read every item of one batch, on `pool`'s threads when given; never raises for one bad file."""
    def one(item: Any) -> bytes | UnusableImage:
        try:
            return read_bytes(item)
        except UnusableImage as exc:
            return exc

    # Bytes already in memory (Arrow) need no thread; only paths are worth sending to the pool.
    needs_io = pool is not None and any(not (isinstance(i, dict) and i.get("bytes") is not None) for i in items)
    results = list(pool.map(one, items)) if needs_io else [one(i) for i in items]  # type: ignore[union-attr]
    batch = EncodedBatch(positions=[], data=[])
    for position, result in zip(positions, results):
        if isinstance(result, UnusableImage):
            batch.skipped.append((position, str(result)))
        else:
            batch.positions.append(position)
            batch.data.append(result)
    return batch
