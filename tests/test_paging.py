"""Paging over every index type the chooser can pick or --index names: pages of one query are
disjoint, ranks run on, and their union is exact search's top N where the setting reaches exact.

A small collection, so every approximate index can be set to search exhaustively (nprobe = nlist,
a wide efSearch, a deep re-rank for 4-bit or projected codes): then the only thing that can break
the pages is how search_vector assembles them, which is what these tests are about.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import faiss
import numpy as np
import pytest

from scripts.index_choice import INDEX_NAMES, choose_index, resolve_index_spec
from scripts.indexing import build_index
from search_core import layout
from search_core import search as search_module
from search_core.collection import Collection
from search_core.layout import IndexInfo, Manifest
from search_core.search import SearchService
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

N, DIM = 2000, 16
YEARS = [1800 + i // 20 for i in range(N)]      # 20 rows per year, 1800..1899

# Every spec the chooser returns at some size, and every named --index option, resolved for N
# rows; plus factory strings of the other kinds FAISS offers (HNSW quantizer, fast-scan PQ).
SPECS = sorted({choose_index(n, 512) for n in (1_000, 50_000, 500_000, 2_000_000)}
               | {resolve_index_spec(name, N, DIM) for name in INDEX_NAMES}
               | {"IVF16_HNSW8,SQ8", "IVF16,PQ8x4fs", "HNSW16,SQ8", "SQ8"})


def exhaustive(spec: str) -> tuple[str, dict, int | None]:
    """The spec for N rows of DIM with settings that make it search everything; (spec, params, rerank)."""
    spec = re.sub(r"^RR\d+", f"RR{DIM}", re.sub(r"IVF\d+", "IVF16", spec))   # sized for this collection
    spec = re.sub(r"^PCAR\d+", f"PCAR{DIM // 2}", spec)
    index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
    if faiss.try_extract_index_ivf(index) is not None:
        return spec, {"nprobe": 16}, (N if "fs" in spec or "PCA" in spec else None)   # re-rank every row
    if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
        return spec, {"efSearch": 400}, None
    return spec, {}, None


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(N, DIM, seed=3)


@pytest.fixture(scope="module", params=SPECS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            vectors: np.ndarray) -> SearchService:
    spec, params, rerank = exhaustive(request.param)
    folder = tmp_path_factory.mktemp("paging") / spec.replace(",", "_")
    write_collection(folder, vectors, years=YEARS)
    index, _ = build_index(vectors, spec)            # the build's own code (it scales int8 codes)
    faiss.write_index(index, str(folder / layout.INDEX))
    manifest = Manifest.read(folder)
    dataclasses.replace(manifest, index=IndexInfo(spec=spec, params=params, rerank=rerank)).write(folder)
    return SearchService(Collection.open(folder), FakeEncoder(DIM))


def exact_rows(vectors: np.ndarray, query: np.ndarray, rows: np.ndarray, n: int) -> list[int]:
    scores = vectors[rows] @ query
    return rows[np.lexsort((rows, -scores))[:n]].tolist()


def pages(service: SearchService, query: np.ndarray, k: int, count: int, **filters) -> list[list[int]]:
    return [[h.row for h in service.search_vector(query, k=k, offset=p * k, **filters).hits] for p in range(count)]


def test_spec_list_covers_the_chooser_and_every_named_option():
    """The parametrisation really holds every kind search can meet (guards the list above)."""
    kinds = {s.split(",")[0].rstrip("0123456789") for s in SPECS}
    assert {"Flat", "SQfp", "HNSW", "IVF", "RR", "PCAR"} <= kinds and any("_HNSW" in s for s in SPECS)
    assert any(s.endswith("x4fs") for s in SPECS)


@pytest.mark.parametrize("k, count", [(9, 6), (10, 5), (7, 9), (50, 2)])
def test_pages_are_disjoint_and_their_union_is_the_exact_top(service: SearchService, vectors: np.ndarray,
                                                             k: int, count: int) -> None:
    """Pages of one query share no row, ranks run 1..N, and together they are exact search's top N."""
    for qseed in range(3):
        query = unit_vectors(1, DIM, seed=100 + qseed)[0]
        got = pages(service, query, k, count)
        flat = [r for page in got for r in page]
        assert len(flat) == len(set(flat)) == k * count
        assert flat == exact_rows(vectors, query, np.arange(N), k * count)


def test_pages_under_a_year_range_and_hidden_rows(service: SearchService, vectors: np.ndarray,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same holds inside a year range (through the index, not the small-range exact path)
    and with rows excluded (more like this)."""
    monkeypatch.setattr(search_module, "EXACT_SEARCH_MAX_ROWS", 0)
    query = vectors[1234]
    eligible = np.array([r for r in range(1000, 1400) if r != 1234])     # years 1850..1869
    got = [[h.row for h in service.search_vector(query, k=9, offset=p * 9, year_from=1850, year_to=1869,
                                                 exclude_rows=(1234,)).hits] for p in range(5)]
    flat = [r for page in got for r in page]
    assert len(flat) == len(set(flat)) == 45
    assert flat == exact_rows(vectors, query, eligible, 45)


def test_deep_page_is_consistent_with_the_first(service: SearchService, vectors: np.ndarray) -> None:
    """A page far down (past the approximate tiers, searched exactly) continues the same ranking."""
    query = unit_vectors(1, DIM, seed=7)[0]
    first = pages(service, query, 50, 12)
    flat = [r for page in first for r in page]
    assert len(flat) == len(set(flat)) == 600
    assert flat == exact_rows(vectors, query, np.arange(N), 600)


class ShiftingIndex:
    """An approximate index whose answers depend on how many results are asked for, as HNSW's do
    when efSearch is raised to the fetch size: a deeper search finds a better row that a shallower
    one missed. Wraps a Flat index and hides row `hidden` from searches fetching fewer than `depth`."""

    def __init__(self, index, hidden: int, depth: int) -> None:
        self._index, self.hidden, self.depth = index, hidden, depth
        self.ntotal, self.d = index.ntotal, index.d

    def search(self, query, k, params=None):
        scores, rows = self._index.search(query, k + 1, params=params)
        if k < self.depth:
            keep = rows[0] != self.hidden
            return scores[:, keep][:, :k], rows[:, keep][:, :k]
        return scores[:, :k], rows[:, :k]


def test_pages_stay_disjoint_when_deeper_searches_find_better_rows(tmp_path: Path, vectors: np.ndarray) -> None:
    """If a later page's deeper search finds a row better than rows already shown, it is not moved
    in front of them (which would repeat one of them on the next page and drop another)."""
    folder = write_collection(tmp_path / "c", vectors, years=YEARS, index_spec="Flat")
    collection = Collection.open(folder)
    query = unit_vectors(1, DIM, seed=11)[0]
    first_fetch = search_module.candidate_count(search_module.RANK_TIER)   # the first tier's search
    best = exact_rows(vectors, query, np.arange(N), 50)
    service = SearchService(collection, FakeEncoder(DIM))
    collection.index = ShiftingIndex(collection.index, hidden=best[3], depth=first_fetch + 1)
    service._exact_index = False          # treat it as the approximate index it pretends to be
    service._search_params = lambda *args, **kwargs: None
    got = pages(service, query, 9, 5)     # 45 rows: past the first tier
    flat = [r for page in got for r in page]
    assert len(flat) == len(set(flat)) == 45
    assert best[3] in flat[search_module.RANK_TIER:]   # found by the deeper search, after the rows shown
