"""Near-duplicate groups for `imagesearch build`: rows whose cosine reaches a threshold, transitively.

How, without an O(n²) pass: every row asks the collection's own FAISS index for its NEIGHBOURS
nearest rows (in batches, on every core, at a search setting lighter than the tuned one: a row's
near-duplicates are its very nearest neighbours); pairs whose index score comes within the index's
own score error of the threshold are re-scored exactly from the vectors; the pairs at or above the
threshold are joined into connected components (scipy's, the union-find result). A group's id is
its smallest row (search_core/collapse.py reads it). Cost at 1M rows against the build: BENCHMARKS.md.

The threshold: DUPLICATE_THRESHOLD = 0.95, measured by benchmarks/bench_duplicates.py on generated
copies (re-encoded at JPEG quality 95-30, rescaled 0.5-1.5x, cropped 4-8%, shifted 3-6%):
- with the tiny test CLIP, re-encoded and rescaled copies scored 0.95-1.0 against their original
  (one JPEG-30 copy in 40 fell to 0.953) and distinct pictures at most 0.91; its 32-pixel, 4x4-patch
  input is not shift-invariant, so cropped and shifted copies scored anywhere from 0.1 to 0.96;
- with the real ViT-B/32 configuration but random weights every image lands in one narrow cone
  (distinct pictures 0.86-0.9995), so random weights cannot place a threshold at all.
0.95 is also the usual starting point for trained CLIP (openai/CLIP#260). Real weights must be
checked: run `python -m benchmarks.bench_duplicates --model PATH_TO_REAL_CLIP`, and build with
`--duplicate-threshold` where the BL scans ask for another value.

Groups chain (single linkage): A~B and B~C put A and C together even when A and C fall below the
threshold. A high threshold keeps chains short; the build prints the largest group so a runaway
chain shows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np

from scripts.indexing import all_threads
from search_core.errors import BuildError
from search_core.layout import DuplicateInfo
from search_core.rerank import is_exact

log = logging.getLogger(__name__)

DUPLICATE_THRESHOLD = 0.95
# Nearest rows asked per row: each copy of a group needs only a link into the rest of it, so
# groups far larger than this still connect.
NEIGHBOURS = 16
# Search settings for the neighbour pass (never above the tuned ones). The nearest neighbours are
# found far earlier than a recall@10 target needs; measured in benchmarks/bench_duplicates.py.
GROUPING_NPROBE = 4
GROUPING_EF_SEARCH = 32
BATCH_ROWS = 16_384
# Pairs whose index score and exact score are compared to size the re-scoring margin.
MARGIN_SAMPLE_ROWS = 2_000


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


def find_duplicate_groups(vectors: np.ndarray, index: faiss.Index, threshold: float = DUPLICATE_THRESHOLD,
                          *, neighbours: int = NEIGHBOURS) -> Grouping:
    """Group the rows of `vectors` (unit rows, the ids of `index`) whose cosine reaches `threshold`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    started = time.perf_counter()
    threshold = check_threshold(threshold)
    n = len(vectors)
    k = min(neighbours + 1, n)       # +1: a row finds itself
    params = _grouping_params(index)
    exact = is_exact(index)
    pairs_i: list[np.ndarray] = []
    pairs_j: list[np.ndarray] = []
    margin: float | None = 0.0 if exact else None
    with all_threads():
        for lo in range(0, n if k > 1 else 0, BATCH_ROWS):
            hi = min(n, lo + BATCH_ROWS)
            queries = np.ascontiguousarray(vectors[lo:hi], dtype=np.float32)
            scores, rows = index.search(queries, k, params=params)
            valid = (rows >= 0) & (rows != np.arange(lo, hi)[:, None])
            if margin is None:
                margin = _score_margin(vectors, lo, scores, rows, valid)
                log.info("grouping: index scores within %.4f of exact; re-scoring pairs above %.4f",
                         margin, threshold - margin)
            qi, col = np.nonzero(valid & (scores >= threshold - margin))
            i, j = qi + lo, rows[qi, col]
            close = np.einsum("ij,ij->i", vectors[i], vectors[j]) >= threshold
            pairs_i.append(i[close])
            pairs_j.append(j[close])
    i = np.concatenate(pairs_i) if pairs_i else np.empty(0, np.int64)
    j = np.concatenate(pairs_j) if pairs_j else np.empty(0, np.int64)
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


def _grouping_params(index: faiss.Index) -> faiss.SearchParameters | None:
    """A light search setting of the index's own kind, never heavier than the one it was tuned to."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return faiss.SearchParametersIVF(nprobe=max(1, min(ivf.nprobe, GROUPING_NPROBE)))
    hnsw = faiss.downcast_index(index)
    if isinstance(hnsw, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(efSearch=max(NEIGHBOURS + 1, min(hnsw.hnsw.efSearch, GROUPING_EF_SEARCH)))
    return None


def _score_margin(vectors: np.ndarray, lo: int, scores: np.ndarray, rows: np.ndarray, valid: np.ndarray) -> float:
    """How far the index's scores stray from exact cosines (quantised codes): twice the largest
    error seen on the first batch's pairs, so no pair at the threshold is dropped before its
    exact check."""
    qi, col = np.nonzero(valid[:MARGIN_SAMPLE_ROWS])
    if qi.size == 0:
        return 0.05
    exact = np.einsum("ij,ij->i", vectors[qi + lo], vectors[rows[qi, col]])
    return float(2.0 * np.abs(scores[qi, col] - exact).max()) + 1e-4
