"""Build the FAISS index over the embeddings, and tune an approximate one for recall.

Ids are row numbers (vectors are added in row order, no id map) and the metric is inner
product, which is cosine on the L2-normalised vectors. An approximate index gets the cheapest
search setting (nprobe for IVF, efSearch for HNSW) and re-rank depth whose recall@10 against
exact search, after search_core's exact re-rank, reaches TARGET_RECALL for two query sets:
image-like (a sample of the collection's own rows, each not counting itself) and text (the
shipped probe prompts encoded with the collection's model). Text queries sit apart from the
images (the modality gap) and need a wider search: on the hard benchmark data at 1M rows,
IVF4096,SQ8 reached 0.990 for image queries but 0.857 for text at nprobe 64. The setting, the
depth and both recalls go into IndexInfo, so search_core applies the same setting and users
can see what they get.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from search_core.errors import BuildError
from search_core.index_params import search_parameters
from search_core.layout import IndexInfo
from search_core.rerank import DEFAULT_RERANK, candidate_count, is_exact, rerank

log = logging.getLogger(__name__)

TARGET_RECALL = 0.97
# Tuning aims this far above the target: the probe prompts are a sample of a few hundred, and at
# 1M hard rows the setting that just reached 0.972 on them gave 0.967 on 1,000 other text queries.
TUNING_MARGIN = 0.005
RECALL_K = 10
RECALL_QUERIES = 1000
NPROBE_STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048)
EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024)
# The most rows one IVF query may scan: about 2 ms (the hard limit per query) on 2 cores with
# int8 codes. Tuning stops there and reports the recall reached: text probes that no affordable
# setting answers well (a model whose text tower does not match these images) must not make
# every query slow.
MAX_SCANNED_ROWS = 60_000
# Candidates re-ranked exactly per 10 hits, tried from the cheapest: 8-bit codes of every
# dimension order well enough at 20; coarser codes need more (int8 codes of half the dimensions,
# PCAR256 at 1M hard rows: text recall 0.960 at 50, 0.978 at 100; 4-bit RaBitQ: 50 at 100k).
RERANK_STEPS = (DEFAULT_RERANK, 30, 50, 80, 100, 150)
# k-means needs about 30-256 training points per IVF list (FAISS's guideline; it warns below 39).
# Training on every row instead costs minutes at 1M rows and buys no recall.
TRAIN_POINTS_PER_LIST = 64
# From this many IVF lists the coarse quantizer is trained by two-level k-means (_train_many_lists).
TWO_LEVEL_MIN_LISTS = 8192
# Direct int8 codes (SQ8_direct_signed) store floor(x) of each component, with no clamping: a
# value past 127 wraps around. The rotation is scaled so the collection's largest component
# lands at 127 / INT8_MARGIN; a query (a unit vector, rotated the same way) has room to spare.
INT8_MARGIN = 1.25
DIRECT_CODES = ("QT_8bit_direct_signed",)
# Rows sampled to fit a PCAR projection: the second moment of 512-d vectors settles long before.
PCA_SAMPLE = 100_000


@dataclass(frozen=True)
class Tuning:
    """The chosen search setting and what it measured."""

    params: dict[str, int]
    rerank: int
    image_recall: float
    text_recall: float | None

    @property
    def worst(self) -> float:
        return min(self.image_recall, 1.0 if self.text_recall is None else self.text_recall)


@contextmanager
def all_threads() -> Iterator[None]:
    """Use every core while building (training and adding are batch work), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_index(vectors: np.ndarray, spec: str, *, seed: int = 0,
                text_queries: np.ndarray | None = None) -> tuple[faiss.Index, IndexInfo]:
    """Index `vectors` (float32 [n, dim], unit rows) with the factory string `spec`.

    `text_queries` (the probe prompts encoded with the collection's model) are tuned for as well
    as the image rows. Raises BuildError for a spec FAISS does not understand or cannot train on
    this many rows.
    """
    started = time.perf_counter()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = train_and_add(vectors, spec, seed=seed)
    with all_threads():
        if is_exact(index):
            return index, IndexInfo(spec=spec, build_seconds=round(time.perf_counter() - started, 1))
        tuning = tune(index, vectors, text_queries, seed=seed)
    log.info("index %s: %s, re-rank %d, recall@%d %.3f (images) %s (text)", spec, tuning.params,
             tuning.rerank, RECALL_K, tuning.image_recall, tuning.text_recall)
    return index, IndexInfo(spec=spec, params=tuning.params, recall_at_10=round(tuning.image_recall, 4),
                            text_recall_at_10=None if tuning.text_recall is None else round(tuning.text_recall, 4),
                            rerank=None if tuning.rerank == DEFAULT_RERANK else tuning.rerank,
                            build_seconds=round(time.perf_counter() - started, 1))


def train_and_add(vectors: np.ndarray, spec: str, *, seed: int = 0) -> faiss.Index:
    """The index `spec` trained on `vectors` (float32 [n, dim], unit rows) and holding them all,
    not yet tuned; on every core. Raises BuildError for a spec FAISS does not understand or
    cannot train on this many rows."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise BuildError(f"FAISS does not understand the index {spec!r}.") from exc
    with all_threads():
        try:
            _fit_int8_scale(index, vectors, spec, seed)
            _train_many_lists(index, vectors, seed)
            if not index.is_trained:
                index.train(_training_sample(index, vectors, seed))
            index.add(vectors)   # in row order: ids are row numbers and ascend within each IVF list
        except RuntimeError as exc:
            raise BuildError(f"Could not build the index {spec!r} on {n} rows: "
                             f"{str(exc).strip().splitlines()[-1]}") from exc
    return index


def _train_many_lists(index: faiss.Index, vectors: np.ndarray, seed: int) -> None:
    """Train the coarse quantizer of an IVF with TWO_LEVEL_MIN_LISTS lists or more by two-level
    k-means (FAISS's contrib): sqrt(nlist) clusters, then each split in proportion to its size.

    Flat k-means assigns every training point to every centroid: for 16,384 lists on 1M points
    about 30 minutes on 2 cores; two levels cost a few minutes.
    """
    from faiss.contrib.clustering import two_level_clustering

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.nlist < TWO_LEVEL_MIN_LISTS or ivf.quantizer.is_trained and ivf.quantizer.ntotal:
        return
    sample = _training_sample(index, vectors, seed)
    transform = faiss.downcast_index(index)
    if isinstance(transform, faiss.IndexPreTransform):
        sample = transform.apply_chain(len(sample), sample).reshape(len(sample), -1)
    centroids, _ = two_level_clustering(np.ascontiguousarray(sample, dtype=np.float32), int(math.sqrt(ivf.nlist)),
                                        ivf.nlist, clustering_niter=10, seed=seed)
    ivf.quantizer.add(centroids)    # IndexIVF.train then skips the coarse k-means


def _fit_int8_scale(index: faiss.Index, vectors: np.ndarray, spec: str, seed: int) -> None:
    """For direct int8 codes: fit the leading transform and scale it into int8 range.

    RR{d}: a random rotation spreads every vector (and CLIP's few large dimensions) evenly over
    all dimensions, so one scale fits all of them. PCAR{k}: the k directions of largest second
    moment (not centred: a mean shift would change the ranking), then a random rotation of those,
    so rows cost k bytes instead of d; the re-rank from the embeddings restores exact order.
    The scaled transform is part of the index file, and inner products only grow by the scale
    squared, so rankings are unchanged.
    """
    ivf = faiss.try_extract_index_ivf(index)
    codes = faiss.downcast_index(ivf) if ivf is not None else None
    qtype = getattr(getattr(codes, "sq", None), "qtype", None)
    if qtype is None or not any(qtype == getattr(faiss.ScalarQuantizer, name) for name in DIRECT_CODES):
        return
    transform = faiss.downcast_index(index)
    first = (faiss.downcast_VectorTransform(transform.chain.at(0))
             if isinstance(transform, faiss.IndexPreTransform) and transform.chain.size() else None)
    if isinstance(first, faiss.PCAMatrix) and first.random_rotation:
        matrix = _projection(vectors, first.d_out, seed)
        faiss.copy_array_to_vector(np.zeros(first.d_out, np.float32), first.b)
    elif isinstance(first, faiss.RandomRotationMatrix) and first.d_in == first.d_out:
        first.init(seed)
        matrix = faiss.vector_to_array(first.A).reshape(first.d_out, first.d_in)
    else:
        raise BuildError(f"The index {spec!r} stores direct int8 codes, which need a leading RR{index.d} "
                         f"(random rotation) or PCAR<k> to carry their scale, e.g. RR{index.d},{spec}.")
    largest = max(float(np.abs(vectors[lo:lo + 65_536] @ matrix.T).max()) for lo in range(0, len(vectors), 65_536))
    scale = 127.0 / (max(largest, 1e-6) * INT8_MARGIN)
    faiss.copy_array_to_vector((matrix * scale).astype(np.float32).ravel(), first.A)
    first.is_trained = True
    ivf.by_residual = False          # the codes are the transformed vectors themselves


def _projection(vectors: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """[dim, d]: the top `dim` eigenvectors of the rows' second moment, randomly rotated."""
    _, eigenvectors = _second_moment(vectors, seed)
    top = eigenvectors[:, ::-1][:, :dim].T
    rotation = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))[0]
    return (rotation @ top).astype(np.float32)


def projection_energy(vectors: np.ndarray, dim: int, seed: int = 0) -> float:
    """Share of the rows' second moment that their top `dim` directions hold (what PCAR{dim} keeps)."""
    eigenvalues, _ = _second_moment(vectors, seed)
    eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
    total = float(eigenvalues.sum())
    kept = float(eigenvalues[:dim].sum() / total) if total > 0 else 1.0
    log.info("the vectors' top %d directions hold %.1f%% of their second moment", dim, 100 * kept)
    return kept


def _second_moment(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the second moment of a PCA_SAMPLE-row sample."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(vectors), min(len(vectors), PCA_SAMPLE), replace=False))
    sample = np.asarray(vectors[rows], dtype=np.float32)
    return np.linalg.eigh((sample.T @ sample).astype(np.float64))


def _training_sample(index: faiss.Index, vectors: np.ndarray, seed: int) -> np.ndarray:
    """All rows, or for an IVF index TRAIN_POINTS_PER_LIST random rows per list."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or len(vectors) <= ivf.nlist * TRAIN_POINTS_PER_LIST:
        return vectors
    rows = np.random.default_rng(seed).choice(len(vectors), ivf.nlist * TRAIN_POINTS_PER_LIST, replace=False)
    return vectors[np.sort(rows)]


def _search_knob(index: faiss.Index) -> tuple[str, tuple[int, ...]] | None:
    """The knob that trades speed for recall on this index, and the values to try."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        per_list = max(1, ivf.ntotal // ivf.nlist)
        steps = tuple(v for v in NPROBE_STEPS if v < ivf.nlist) + (ivf.nlist,)
        affordable = tuple(v for v in steps if v * per_list <= MAX_SCANNED_ROWS)
        return "nprobe", affordable or steps[:1]
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return "efSearch", EF_SEARCH_STEPS
    return None


@dataclass(frozen=True)
class _Queries:
    """One query set with its exact answers; own_rows set when the queries are collection rows."""

    vectors: np.ndarray
    truth: np.ndarray
    own_rows: np.ndarray | None = None


def tune(index: faiss.Index, vectors: np.ndarray, text_queries: np.ndarray | None = None, *,
         seed: int = 0) -> Tuning:
    """Cheapest setting, then cheapest re-rank depth, reaching TARGET_RECALL (+ TUNING_MARGIN) on both query sets
    (else the best tried, with a warning); the index is left at the chosen setting.

    Image-like queries are a sample of the collection's own rows, and each query's own row is
    left out of both the exact truth and what the index finds: a row always finds itself, so
    counting it would be a free hit per query, report a recall users' queries do not get, and
    stop the tuning at too small a setting.
    """
    n = len(vectors)
    k = min(RECALL_K, n - 1)
    if k < 1:
        return Tuning({}, DEFAULT_RERANK, 1.0, None)     # a single row: there is no other row to miss
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(RECALL_QUERIES, n), replace=False))
    _, nearest = faiss.knn(vectors[sample], vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    images = _Queries(vectors[sample], np.array([_without(r, own, k) for r, own in
                                                 zip(nearest.tolist(), sample.tolist())]), sample)
    texts = None
    if text_queries is not None and len(text_queries):
        text_queries = np.ascontiguousarray(text_queries, dtype=np.float32)
        texts = _Queries(text_queries, faiss.knn(text_queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)[1])

    def measure(settings: dict[str, int], depth: int) -> Tuning:
        image = recall_at_k(index, images, vectors, settings, depth)
        text = None if texts is None else recall_at_k(index, texts, vectors, settings, depth)
        return Tuning(settings, depth, image, text)

    knob = _search_knob(index)
    if knob is None:
        return measure({}, DEFAULT_RERANK)
    name, steps = knob
    best: Tuning | None = None
    for value in steps:
        deepest = measure({name: value}, RERANK_STEPS[-1])
        log.debug("%s=%d, re-rank %d: recall@%d %.3f / %s", name, value, deepest.rerank, k,
                  deepest.image_recall, deepest.text_recall)
        if best is None or deepest.worst > best.worst:
            best = deepest
        if deepest.worst >= TARGET_RECALL + TUNING_MARGIN:
            best = next((t for t in (measure({name: value}, d) for d in RERANK_STEPS[:-1])
                         if t.worst >= TARGET_RECALL + TUNING_MARGIN), deepest)
            break
    assert best is not None
    faiss.ParameterSpace().set_index_parameter(index, name, best.params[name])
    if best.worst < TARGET_RECALL:
        log.warning("index reaches recall@%d of only %.3f for images and %s for text (target %.2f) at %s",
                    k, best.image_recall, best.text_recall, TARGET_RECALL, best.params)
    return best


def _without(rows: list[int], own: int, k: int) -> list[int]:
    """The first k of ``rows`` other than ``own`` (the query's own row)."""
    return [r for r in rows if r != own][:k]


def recall_at_k(index: faiss.Index, queries: _Queries, vectors: np.ndarray, settings: dict[str, int],
                rerank_depth: int = DEFAULT_RERANK) -> float:
    """Share of the exact top-k ids that search returns in its top-k, as search_core does it:
    the same search parameters, candidates re-ranked exactly from the embeddings. A query's own
    row (image-like queries) is dropped from what search found, as it is from the truth.
    """
    k = queries.truth.shape[1]
    wanted = k if queries.own_rows is None else k + 1
    fetch = candidate_count(wanted, rerank_depth)
    params = search_parameters(index, settings, fetch)
    _, candidates = index.search(queries.vectors, fetch, params=params)
    found = [rerank(vectors, q, c, wanted)[1].tolist() for q, c in zip(queries.vectors, candidates)]
    if queries.own_rows is not None:
        found = [_without(f, own, k) for f, own in zip(found, queries.own_rows.tolist())]
    hits = sum(len(set(t) & set(f)) for t, f in zip(queries.truth.tolist(), found))
    return hits / queries.truth.size
