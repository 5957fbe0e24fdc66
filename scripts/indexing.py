"""Build the FAISS index over the embeddings, and tune an approximate one for recall.

Ids are row numbers (vectors are added in row order, no id map) and the metric is inner
product, which is cosine on the L2-normalised vectors. An approximate index gets the smallest
search setting (nprobe for IVF, efSearch for HNSW) whose recall@10 against exact search on a
sample of the collection's own rows (each not counting itself), after search_core's exact
re-rank, reaches TARGET_RECALL; the setting and the measured recall go into IndexInfo, so
search_core applies the same setting and users can see what they get.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from search_core.errors import BuildError
from search_core.layout import IndexInfo
from search_core.rerank import candidate_count, is_exact, rerank

log = logging.getLogger(__name__)

TARGET_RECALL = 0.97
RECALL_K = 10
RECALL_QUERIES = 1000
NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)
# k-means needs about 30-256 training points per IVF list (FAISS's guideline; it warns below 39).
# Training on every row instead costs minutes at 1M rows and buys no recall.
TRAIN_POINTS_PER_LIST = 64


@contextmanager
def all_threads() -> Iterator[None]:
    """Use every core while building (training and adding are batch work), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_index(vectors: np.ndarray, spec: str, *, seed: int = 0) -> tuple[faiss.Index, IndexInfo]:
    """Index `vectors` (float32 [n, dim], unit rows) with the factory string `spec`.

    Raises BuildError for a spec FAISS does not understand or cannot train on this many rows.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BuildError(f"FAISS does not understand the index {spec!r}.") from exc
    with all_threads():
        try:
            if not index.is_trained:
                index.train(_training_sample(index, vectors, seed))
            index.add(vectors)   # in row order: ids are row numbers and ascend within each IVF list
        except RuntimeError as exc:
            raise BuildError(f"Could not build the index {spec!r} on {n} rows: "
                             f"{str(exc).strip().splitlines()[-1]}") from exc
        if is_exact(index):
            return index, IndexInfo(spec=spec)
        params, recall = tune(index, vectors, seed=seed)
    log.info("index %s: %s, recall@%d %.3f", spec, params, RECALL_K, recall)
    return index, IndexInfo(spec=spec, params=params, recall_at_10=recall)


def _training_sample(index: faiss.Index, vectors: np.ndarray, seed: int) -> np.ndarray:
    """All rows, or for an IVF index TRAIN_POINTS_PER_LIST random rows per list."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or len(vectors) <= ivf.nlist * TRAIN_POINTS_PER_LIST:
        return vectors
    rows = np.random.default_rng(seed).choice(len(vectors), ivf.nlist * TRAIN_POINTS_PER_LIST, replace=False)
    return vectors[np.sort(rows)]


def _search_param(index: faiss.Index) -> tuple[str, tuple[int, ...]] | None:
    """The knob that trades speed for recall on this index, and the values to try."""
    if faiss.try_extract_index_ivf(index) is not None:
        nlist = faiss.extract_index_ivf(index).nlist
        steps = tuple(v for v in NPROBE_STEPS if v < nlist) + (nlist,)
        return "nprobe", steps
    if "HNSW" in type(faiss.downcast_index(index)).__name__:
        return "efSearch", EF_SEARCH_STEPS
    return None


def tune(index: faiss.Index, vectors: np.ndarray, *, seed: int = 0) -> tuple[dict[str, int], float]:
    """Smallest setting reaching TARGET_RECALL (else the best tried); returns (params, recall).

    The queries are a sample of the collection's own rows, and each query's own row is left out
    of both the exact truth and what the index finds: a row always finds itself, so counting it
    would be a free hit per query, report a recall users' queries do not get, and stop the
    tuning at too small a setting.
    """
    rng = np.random.default_rng(seed)
    n = len(vectors)
    k = min(RECALL_K, n - 1)
    if k < 1:
        return {}, 1.0     # a single row: there is no other row to miss
    sample = rng.choice(n, size=min(RECALL_QUERIES, n), replace=False)
    queries = vectors[sample]
    _, nearest = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = np.array([_without(rows, own, k) for rows, own in zip(nearest.tolist(), sample.tolist())])

    knob = _search_param(index)
    if knob is None:
        return {}, recall_at_k(index, queries, truth, vectors, query_rows=sample)
    name, steps = knob
    space = faiss.ParameterSpace()
    best: tuple[dict[str, int], float] = ({}, -1.0)
    for value in steps:
        space.set_index_parameter(index, name, value)
        recall = recall_at_k(index, queries, truth, vectors, query_rows=sample)
        log.debug("%s=%d: recall@%d %.3f", name, value, k, recall)
        if recall > best[1]:
            best = ({name: value}, recall)
        if recall >= TARGET_RECALL:
            break
    space.set_index_parameter(index, name, best[0][name])
    if best[1] < TARGET_RECALL:
        log.warning("index reaches recall@%d of only %.3f (target %.2f) at %s", k, best[1],
                    TARGET_RECALL, best[0])
    return best


def _without(rows: list[int], own: int, k: int) -> list[int]:
    """The first k of ``rows`` other than ``own`` (the query's own row)."""
    return [r for r in rows if r != own][:k]


def recall_at_k(index: faiss.Index, queries: np.ndarray, truth: np.ndarray,
                vectors: np.ndarray | None = None, query_rows: np.ndarray | None = None) -> float:
    """Share of the exact top-k ids that search returns in its top-k.

    With ``vectors`` (the embeddings), candidates are re-ranked exactly as search_core does for
    an approximate index, so this is the recall users get. With ``query_rows`` (the rows the
    queries were taken from), each query's own row is dropped from what search found, as it
    must be from ``truth``: it is not a neighbour to find.
    """
    k = truth.shape[1]
    fetch = k if query_rows is None else k + 1
    if vectors is None:
        _, found = index.search(queries, fetch)
        found_rows = found.tolist()
    else:
        _, candidates = index.search(queries, candidate_count(fetch))
        found_rows = [rerank(vectors, q, c, fetch)[1].tolist() for q, c in zip(queries, candidates)]
    if query_rows is not None:
        found_rows = [_without(f, own, k) for f, own in zip(found_rows, query_rows.tolist())]
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found_rows))
    return hits / truth.size
