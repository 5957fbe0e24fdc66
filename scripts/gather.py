"""Gather the collection's embeddings.npy from the shards and the old collection's reused rows.

Written straight into a memory-mapped ``.npy`` in the new collection folder (numpy's
``open_memmap``): the vectors are never held twice, and the pages written are file-backed, so
the kernel can write them out and drop them under memory pressure. Reused rows are copied from the
old collection's (memory-mapped) embeddings.npy byte for byte, BLOCK_ROWS rows at a time; new ones
a shard at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.shards import n_shards, read_shard, shard_path
from search_core.errors import BuildError

BLOCK_ROWS = 16_384        # 32 MiB of 512-d float32 per copied block


@dataclass(frozen=True)
class Gathered:
    """The collection's rows, and what became of the source rows that were embedded or not."""

    rows: np.ndarray           # int64 source rows in collection order (row i = source row rows[i])
    embedded: np.ndarray       # int64 source rows embedded (by this run or a resumed one)
    skipped: list[tuple[int, str]]   # (source row, reason) not embedded, in source row order
    vectors: np.ndarray        # float32 [len(rows), dim], memory-mapped embeddings.npy


def skipped_and_embedded(work: Path, job_rows: int, shard_size: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Every shard's embedded and skipped source rows, without reading a vector."""
    embedded, skipped = [], []
    for s in range(n_shards(job_rows, shard_size)):
        shard = read_shard(shard_path(work, s), vectors=False)
        embedded.append(shard.rows)
        skipped.extend(zip(shard.skipped_rows.tolist(), shard.skipped_reasons))
    done = np.concatenate(embedded) if embedded else np.zeros(0, np.int64)
    return done, sorted(skipped)


def gather(out: Path, *, order: np.ndarray, reuse: np.ndarray, old_vectors: np.ndarray | None,
           work: Path, job_rows: int, shard_size: int, dim: int) -> Gathered:
    """Write `out` (an embeddings.npy) for the source rows in `order` (collection order) that are
    reused (reuse[source row] >= 0: that old row's vector) or were embedded; skipped rows drop out."""
    embedded, skipped = skipped_and_embedded(work, job_rows, shard_size)
    present = reuse >= 0
    present[embedded] = True
    rows = order[present[order]]
    if len(rows) == 0:
        raise BuildError("No image of the source could be embedded.")
    row_of = np.full(len(reuse), -1, np.int64)
    row_of[rows] = np.arange(len(rows))

    vectors = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(rows), dim))
    kept = rows[reuse[rows] >= 0]                 # in collection order: sequential writes
    for start in range(0, len(kept), BLOCK_ROWS):
        block = kept[start:start + BLOCK_ROWS]
        vectors[row_of[block]] = old_vectors[reuse[block]]
    for s in range(n_shards(job_rows, shard_size)):
        shard = read_shard(shard_path(work, s))
        if len(shard.rows):
            if shard.vectors.shape[1] != dim:
                raise BuildError(f"Shard {s} in {work} holds {shard.vectors.shape[1]}-d vectors, not {dim}-d.")
            vectors[row_of[shard.rows]] = shard.vectors
    vectors.flush()
    return Gathered(rows=rows, embedded=embedded, skipped=skipped, vectors=vectors)
