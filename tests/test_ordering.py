"""Year order (search_core.ordering): runs of the relevance ranking shown oldest first, paged."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search_core.cli import main
from search_core.collection import Collection
from search_core.errors import QueryError
from search_core.ordering import YEAR_POOL_PAGES, check_order, describe_order, year_pool
from search_core.search import SearchPage, SearchService
from search_core.sheet import LINE_HEIGHT, PAD, sheet_size
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

N, DIM = 300, 16
# Years shuffled against relevance: rows are sorted by year, as a build sorts them; some unknown.
YEARS = sorted(1700 + (i * 37) % 200 for i in range(N - 20)) + [None] * 20


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> SearchService:
    folder = write_collection(tmp_path_factory.mktemp("order") / "c", unit_vectors(N, DIM, seed=11), years=YEARS)
    return SearchService(Collection.open(folder), FakeEncoder(DIM))


@pytest.fixture(scope="module")
def query() -> np.ndarray:
    return unit_vectors(1, DIM, seed=99)[0]


def relevance_rows(svc: SearchService, query: np.ndarray, start: int, stop: int) -> list[int]:
    rows: list[int] = []
    while len(rows) < stop:
        rows += [h.row for h in svc.search_vector(query, k=50, offset=len(rows)).hits]
    return rows[start:stop]


def year_key(h) -> tuple:
    return (h.year is None, h.year or 0)


@pytest.mark.parametrize("k", [1, 4, 9, 25])
def test_pages_are_disjoint_and_cover_every_row(svc: SearchService, query: np.ndarray, k: int) -> None:
    """Paging through year order with one page size shows every eligible row exactly once."""
    seen: list[int] = []
    offset = 0
    while True:
        page = svc.search_page(query, k=k, offset=offset, order="year")
        assert page.order == "year" and page.total_eligible == N
        assert [h.rank for h in page.hits] == list(range(offset + 1, offset + len(page.hits) + 1))
        seen += [h.row for h in page.hits]
        if not page.has_next:
            break
        offset += k
    assert sorted(seen) == list(range(N)) and len(seen) == N


def test_each_run_of_the_ranking_is_shown_oldest_first(svc: SearchService, query: np.ndarray) -> None:
    """Pages 1-3 (k=9) are the top 27 by relevance, oldest first; page 4 starts ranks 28-54 from its oldest."""
    k = 9
    pool = year_pool(k)
    assert pool == k * YEAR_POOL_PAGES == 27
    pages = [svc.search_page(query, k=k, offset=o, order="year") for o in range(0, 2 * pool, k)]
    for run in (0, 1):
        hits = [h for p in pages[run * 3:run * 3 + 3] for h in p.hits]
        assert sorted(h.row for h in hits) == sorted(relevance_rows(svc, query, run * pool, (run + 1) * pool))
        keys = [year_key(h) for h in hits]
        assert keys == sorted(keys)
        for a, b in itertools.pairwise(hits):      # same year: the more relevant first
            if year_key(a) == year_key(b):
                assert a.score >= b.score
    assert year_key(pages[3].hits[0]) <= year_key(pages[2].hits[-1])       # a new run starts old again


def test_unknown_years_come_last_in_their_run(svc: SearchService, query: np.ndarray) -> None:
    page = svc.search_page(query, k=25, order="year", offset=0)
    run = [h for o in (0, 25, 50) for h in svc.search_page(query, k=25, offset=o, order="year").hits]
    unknown = [i for i, h in enumerate(run) if h.year is None]
    assert unknown == list(range(len(run) - len(unknown), len(run)))
    assert page.hits[0].year is not None


def test_a_page_across_two_runs(svc: SearchService, query: np.ndarray) -> None:
    """An offset that is not a multiple of k reads on across the boundary of two runs."""
    whole = [h.row for o in range(0, 54, 9) for h in svc.search_page(query, k=9, offset=o, order="year").hits]
    straddling = svc.search_page(query, k=9, offset=23, order="year")
    assert [h.row for h in straddling.hits] == whole[23:32]
    assert [h.rank for h in straddling.hits] == list(range(24, 33))
    assert describe_order(straddling) == "oldest first within relevance ranks 1-27, then 28-54"


def test_relevance_is_the_default_and_unchanged(svc: SearchService, query: np.ndarray) -> None:
    plain = svc.search_vector(query, k=9, offset=9)
    ordered = svc.search_page(query, k=9, offset=9)
    assert ordered == plain and ordered.order == "relevance" and describe_order(ordered) is None


def test_year_order_with_filters(svc: SearchService, query: np.ndarray) -> None:
    page = svc.search_page(query, k=9, order="year", year_from=1750, year_to=1799, exclude_rows=(0,))
    assert all(1750 <= h.year <= 1799 for h in page.hits)
    keys = [year_key(h) for h in page.hits]
    assert keys == sorted(keys)


def test_describe_order() -> None:
    page = SearchPage(hits=[object()] * 9, offset=27, k=9, total_eligible=40, order="year")
    assert describe_order(page) == "oldest first within relevance ranks 28-40"
    assert describe_order(SearchPage([object()], 0, 9, 1, order="book")) == "in page order (volume, page, image)"


def test_unknown_order() -> None:
    with pytest.raises(QueryError, match="relevance or year"):
        check_order("date")


# --- the command line ---------------------------------------------------------------------------

def test_cli_order_year(capsys: pytest.CaptureFixture, collection_dir: Path, tmp_path: Path) -> None:
    """--order year: the table's last line, the JSON and the sheet's title say so."""
    sheet = tmp_path / "sheet.png"
    assert main(["search", str(collection_dir), "birds", "-k", "4", "--order", "year", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    years = [int(line.split()[2]) for line in out[1:5]]
    assert years == sorted(years)
    assert out[-1] == "(1-4 of 24, oldest first within relevance ranks 1-12; next page: --offset 4)"
    width, height = sheet_size(4)
    with Image.open(sheet) as img:
        assert img.size == (width, height + LINE_HEIGHT + PAD)
    assert main(["search", str(collection_dir), "birds", "-k", "4", "--offset", "4", "--order", "year",
                 "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["order"] == "year" and page["order_note"] == "oldest first within relevance ranks 1-12"
    assert [h["rank"] for h in page["hits"]] == [5, 6, 7, 8]


def test_cli_order_relevance_json(capsys: pytest.CaptureFixture, collection_dir: Path) -> None:
    assert main(["search", str(collection_dir), "birds", "-k", "2", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["order"] == "relevance" and page["order_note"] is None
