"""Near-duplicate groups for `imagesearch build`: rows whose cosine reaches a threshold, transitively.

How, without an O(n²) pass: FAISS k-means splits the rows into about sqrt(n) cells of nearby rows
(1,000 of ~1,000 rows at 1M); a row about as close to its second centroid as to its first is put
in both cells, so a pair on either side of a border still meets; within each cell every pair is
scored exactly, one matrix product per cell, on every core; the pairs at or above the threshold are
joined into connected components (scipy's, the union-find result). A group's id is its smallest
row (search_core/collapse.py reads it).

Measured on hard-ish vectors with planted groups (benchmarks/bench_duplicates.py, 2 busy cores):
- a k-nearest-neighbour search of every row through the collection's index cost 3.9 CPU-seconds
  at 100k rows through IVF1264,SQ8 at nprobe 1-2 (mostly its coarse quantizer) and 14.6 through
  HNSW32,SQ8 at efSearch 17, growing ~10x at 1M: as much as building the HNSW index;
- the IVF index's own lists as cells (250 rows each at 1M) cost 12 s at 1M, but split 683 of
  10,863 planted groups across lists (420 with border rows added);
- these k-means cells: 55 CPU-seconds at 1M rows (166 s of wall time on 2 cores shared with ~10
  busy processes; it spreads over every core, so far less beside a GPU's 16), 7 of 10,863 groups
  split, no distinct rows merged.

The threshold: DUPLICATE_THRESHOLD = 0.97, measured by benchmarks/bench_duplicates.py on generated
copies of 24 pictures (re-encoded at JPEG quality 95-30, rescaled 0.5-1.5x, cropped 4-8%, shifted
3-6%; BENCHMARKS.md):
- with the tiny test CLIP, re-encoded and rescaled copies scored 0.981-1.0 against their original
  and distinct pictures at most 0.960 (0.8% of distinct pairs reach 0.95, none 0.97): 0.97 keeps
  every such copy and merges no distinct pair. Its 32-pixel, 4x4-patch input is not
  shift-invariant, so its cropped and shifted copies (0.08-0.96) say nothing about real CLIP's;
- with the real ViT-B/32 configuration but random weights every image lands in one narrow cone
  (distinct pictures at a median 0.993, half of their pairs above 0.97), so random weights cannot
  place a threshold at all.
Of the window the tiny model leaves (0.960-0.981) the upper side is taken: a wrongly merged pair
hides an image behind another, a missed one only shows a copy twice. It is also within the range
used with trained CLIP (0.95 the usual starting point, openai/CLIP#260). Real weights must be
checked: run `python -m benchmarks.bench_duplicates --model PATH_TO_REAL_CLIP`, and build with
`--duplicate-threshold` where the BL scans ask for another value.

Groups chain (single linkage): A~B and B~C put A and C together even when A and C fall below the
threshold. A high threshold keeps chains short; the build prints the largest group so a runaway
chain shows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from scripts.indexing import all_threads
from search_core.errors import BuildError
from search_core.layout import DuplicateInfo

log = logging.getLogger(__name__)

DUPLICATE_THRESHOLD = 0.97
# Up to this many rows, one cell: every pair is compared (8k rows: 34 GFLOP, well under a second).
SINGLE_CELL_ROWS = 8_192
# k-means cells: sqrt(n) of them (about 1,000 rows each at 1M), which balances assigning rows to
# cells (n x cells x dim) against comparing within them (n x rows per cell x dim).
KMEANS_ITERATIONS = 10
KMEANS_POINTS_PER_CELL = 40
# Cosine by which a row's second centroid may be farther than its first for the row to join the
# second cell too. At 100k hard-ish rows: none joined, 61 of 8,000 copies split from their group;
# 0.01, 1.18x rows in cells and none split; 0.02 (kept, for margin) 1.34x rows and none split.
BORDER_MARGIN = 0.02
BLOCK_ROWS = 2_048          # rows of a cell compared at once: a BLOCK x cell score matrix


@dataclass(frozen=True)
class Grouping:
    group_of: np.ndarray      # int32 [rows]: the smallest row of each row's group
    info: DuplicateInfo
    seconds: float


def check_threshold(threshold: float) -> float:
    """The threshold as a float; BuildError unless 0 < threshold <= 1."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as exc:
        raise BuildError(f"--duplicate-threshold must be a number, not {threshold!r}.") from exc
    if not 0.0 < value <= 1.0:
        raise BuildError(f"--duplicate-threshold must be above 0 and at most 1 (a cosine); got {threshold}.")
    return value


def find_duplicate_groups(vectors: np.ndarray, threshold: float = DUPLICATE_THRESHOLD, *,
                          seed: int = 0) -> Grouping:
    """Group the rows of `vectors` (float32 [n, dim], unit rows) whose cosine reaches `threshold`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    started = time.perf_counter()
    threshold = check_threshold(threshold)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    with all_threads():
        cells = list(_cells(vectors, seed))
    # One BLAS thread per product and one product per core: a cell's product is small (a few
    # hundred rows), and a multi-threaded BLAS spends more on handing it out than on computing it.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        pairs = list(pool.map(lambda rows: _close_pairs(vectors, rows, threshold), cells))
    i = np.concatenate([p[0] for p in pairs]) if pairs else np.empty(0, np.int64)
    j = np.concatenate([p[1] for p in pairs]) if pairs else np.empty(0, np.int64)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    _, first_row = np.unique(labels, return_index=True)   # rows ascend: the first is the smallest
    group_of = first_row[labels].astype(np.int32)
    sizes = np.bincount(labels, minlength=count)
    info = DuplicateInfo(threshold=threshold, groups=int(count), grouped_rows=int(sizes[sizes > 1].sum()),
                         largest=int(sizes.max()) if n else 0)
    seconds = time.perf_counter() - started
    log.info("grouping: %d rows in %d groups of near-duplicates (largest %d) in %.1f s",
             info.grouped_rows, int(np.count_nonzero(sizes > 1)), info.largest, seconds)
    return Grouping(group_of=group_of, info=info, seconds=seconds)


def no_groups(rows: int, threshold: float = DUPLICATE_THRESHOLD) -> Grouping:
    """Every row a group of its own."""
    return Grouping(group_of=np.arange(rows, dtype=np.int32),
                    info=DuplicateInfo(threshold=threshold, groups=rows, grouped_rows=0, largest=min(rows, 1)),
                    seconds=0.0)


def _cells(vectors: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """Row numbers of each cell, ascending: all rows in one, or k-means cells with border rows in two."""
    n = len(vectors)
    if n <= SINGLE_CELL_ROWS:
        yield np.arange(n)
        return
    first, second, margin, cells = _kmeans_assignment(vectors, seed)
    border = np.flatnonzero(margin < BORDER_MARGIN)
    rows = np.concatenate([np.arange(n), border])
    assigned = np.concatenate([first, second[border]])
    order = np.argsort(assigned, kind="stable")
    bounds = np.searchsorted(assigned[order], np.arange(cells + 1))
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if hi - lo > 1:
            yield np.sort(rows[order[lo:hi]])


def _kmeans_assignment(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(nearest k-means cell, second nearest, how much worse that one scores, cells) for sqrt(n) cells."""
    n = len(vectors)
    cells = int(np.sqrt(n))
    kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=KMEANS_ITERATIONS, seed=seed, spherical=True,
                          max_points_per_centroid=KMEANS_POINTS_PER_CELL)
    sample = np.random.default_rng(seed).choice(n, min(n, cells * KMEANS_POINTS_PER_CELL), replace=False)
    kmeans.train(vectors[np.sort(sample)])
    similarity, nearest = kmeans.index.search(vectors, 2)     # spherical k-means: inner products
    return nearest[:, 0], nearest[:, 1], similarity[:, 0] - similarity[:, 1], cells


def _close_pairs(vectors: np.ndarray, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j, as rows) of `rows` whose exact cosine reaches `threshold`."""
    cell = vectors[rows]
    found_i, found_j = [], []
    for lo in range(0, len(rows), BLOCK_ROWS):
        scores = cell[lo:lo + BLOCK_ROWS] @ cell[lo:].T      # this block against itself and later rows
        a, b = np.nonzero(scores >= threshold)
        later = b > a
        found_i.append(rows[lo + a[later]])
        found_j.append(rows[lo + b[later]])
    return np.concatenate(found_i), np.concatenate(found_j)
