"""Exact re-ranking of an approximate index's candidates from the stored embeddings.

Why: quantised codes (IVF-SQ8) cannot order near-ties, so on tie-heavy neighbourhoods the
index alone plateaus below the recall we promise (0.945 at 1M synthetic rows, at any nprobe).
Scoring a few dozen candidates exactly against ``embeddings.npy`` fixes the order and gives users
exact cosine scores. The file is memory-mapped, so this reads a few dozen rows from the page
cache (shared between processes) and adds nothing to the index's memory.

The build measures recall through this same function, so the recall it prints is the recall
search delivers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Candidates re-ranked per 10 wanted hits unless the build tuned another depth (IndexInfo.rerank):
# at 100k easy synthetic rows 2x took recall@10 from 0.980 to 1.000 for +0.015 ms per query.
DEFAULT_RERANK = 20
RERANK_MIN_EXTRA = 10
# The tuned depth serves the first this many hits: the build measures recall@10.
RECALL_HITS = 10


def is_exact(index: Any) -> bool:
    """Whether ``index`` scores every row exactly (Flat), so its hits need no re-ranking.

    Every other index (IVF, HNSW, quantised codes) trades recall for speed: search re-ranks its
    candidates and the build tunes and measures its recall. One definition keeps the two agreeing.
    """
    import faiss  # lazily: importing this module must stay cheap for callers that only re-rank

    return isinstance(faiss.downcast_index(index), faiss.IndexFlat)


def inner_products(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``rows @ query`` on this thread with FAISS's SIMD loop instead of numpy's BLAS.

    BLAS runs a product of this size on every core, and beside a busy process its threads wait
    for each other: 1,031 x 512 rows took 13 ms that way and 0.1 ms this way (2 cores, under load).
    """
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    out = np.empty(len(rows), np.float32)
    if len(rows):
        faiss.fvec_inner_products_ny(faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(rows),
                                     rows.shape[1], len(rows))
    return out


def row_inner_products(embeddings: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``embeddings[rows] @ query`` without copying the rows out first.

    FAISS reads each row where it lies (in the memory map): for 150 scattered rows of a 1M-row
    ``embeddings.npy`` 56-63 us, against 117-164 us to gather them and then score the copy.
    """
    import faiss

    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if embeddings.dtype != np.float32 or not embeddings.flags.c_contiguous:
        return inner_products(embeddings[rows], query)
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    out = np.empty(len(rows), np.float32)
    if len(rows):
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(embeddings),
                                         faiss.swig_ptr(rows), embeddings.shape[1], 1, len(rows))
    return out


def candidate_count(n: int, per_ten: int | None = None) -> int:
    """How many candidates to fetch from an approximate index to return n hits: for the first
    10, `per_ten` (the build's tuned depth, measured for recall@10; None: DEFAULT_RERANK); for
    every hit, DEFAULT_RERANK per 10; always at least n + 10.

    Past the first 10 the tuned depth is not scaled up: at 1M hard rows (PCAR256, 150 per 10) a
    first ranking tier of 30 would re-rank 450 rows instead of 150 for the same recall@10.
    """
    tuned = math.ceil(min(n, RECALL_HITS) * (per_ten or DEFAULT_RERANK) / 10)
    return max(tuned, math.ceil(n * DEFAULT_RERANK / 10), n + RERANK_MIN_EXTRA)


def rerank(embeddings: np.ndarray, query: np.ndarray, candidates: np.ndarray,
           n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top n of ``candidates`` (row numbers; -1 = none) by exact inner product with ``query``.

    Returns (scores, rows), best first, ties broken by row number so pages are stable.
    """
    return score_rows(embeddings, query, np.unique(candidates[candidates >= 0]), n)


def score_rows(embeddings: np.ndarray, query: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top n of ``rows`` (a book's, a group's, an index's candidates): (scores, rows), best
    first, ties broken by row number so pages are stable. Rows are read in ascending order."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if rows.size == 0 or n <= 0:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    scores = row_inner_products(embeddings, rows, query)
    order = np.lexsort((rows, -scores))[:n]
    return scores[order], rows[order]
