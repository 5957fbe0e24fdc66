""""More from this book": search_core.books, SearchService.book_page / search_page(book_id=...), --book."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from search_core.books import BookIndex
from search_core.cli import main
from search_core.collection import Collection
from search_core.errors import QueryError
from search_core.ordering import ORDER_BOOK
from search_core.search import SearchService
from tests.fixtures.synthetic_collection import FakeEncoder, unit_vectors, write_collection

N, DIM = 400, 16
YEARS = [1800 + i // 10 for i in range(N)]
BOOK = "000000007"
# The book's rows are scattered over the collection (and its years), and its pages are not in row order.
BOOK_ROWS = {5: (2, 10), 50: (1, 30), 51: (1, 3), 200: (None, None), 333: (1, 3), 399: (2, 1)}
PAGE_ORDER = [51, 333, 50, 399, 5, 200]      # volume 1 pages 3, 3, 30; volume 2 pages 1, 10; unknown last


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_vectors(N, DIM, seed=7)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray) -> Collection:
    books = [BOOK if i in BOOK_ROWS else f"{1000 + i // 4:09d}" for i in range(N)]
    volumes = [BOOK_ROWS[i][0] if i in BOOK_ROWS else 0 for i in range(N)]
    pages = [BOOK_ROWS[i][1] if i in BOOK_ROWS else i for i in range(N)]
    folder = write_collection(tmp_path_factory.mktemp("books") / "c", vectors, years=YEARS, book_ids=books,
                              volumes=volumes, pages=pages)
    return Collection.open(folder)


def service(collection: Collection, hidden: tuple[str, ...] = ()) -> SearchService:
    return SearchService(collection, FakeEncoder(DIM), hidden_files=hidden)


# --- the index -------------------------------------------------------------------------------

def test_rows_of_a_book(collection: Collection) -> None:
    books = BookIndex(collection)
    assert books.rows(BOOK).tolist() == sorted(BOOK_ROWS)
    assert books.rows(f"{1001:09d}").tolist() == [4, 6, 7]      # row 5 belongs to BOOK


@pytest.mark.parametrize("spelling", ["7", "0007", f" {BOOK} "])
def test_book_id_without_leading_zeros(collection: Collection, spelling: str) -> None:
    """British Library ids are zero-padded; a user may type them without the zeros, or with spaces."""
    assert BookIndex(collection).rows(spelling).tolist() == sorted(BOOK_ROWS)


@pytest.mark.parametrize("book_id", ["123456789", "abc", "", "0" * 200])
def test_unknown_book_is_a_clear_error(collection: Collection, book_id: str) -> None:
    with pytest.raises(QueryError, match="There is no book") as info:
        BookIndex(collection).rows(book_id)
    assert len(str(info.value)) < 120


def test_collection_without_book_ids() -> None:
    fake = SimpleNamespace(dataset=SimpleNamespace(column_names=["image", "file_name", "year"]))
    with pytest.raises(QueryError, match="no book ids"):
        BookIndex(fake).rows("1")


def test_page_order(collection: Collection) -> None:
    """Volume, then page, then image number; rows without them last."""
    assert BookIndex(collection).page_order(BOOK).tolist() == PAGE_ORDER


# --- book_page: a listing ------------------------------------------------------------------------

def test_book_page_lists_the_book_in_page_order(collection: Collection) -> None:
    page = service(collection).book_page(BOOK, k=9)
    assert [h.row for h in page.hits] == PAGE_ORDER
    assert [h.rank for h in page.hits] == list(range(1, 7))
    assert all(math.isnan(h.score) for h in page.hits) and {h.book_id for h in page.hits} == {BOOK}
    assert (page.order, page.total_eligible, page.has_next) == (ORDER_BOOK, 6, False)


def test_book_pages_are_disjoint_and_complete(collection: Collection) -> None:
    svc = service(collection)
    pages = [svc.book_page(BOOK, k=4, offset=o) for o in (0, 4)]
    assert [h.row for p in pages for h in p.hits] == PAGE_ORDER
    assert pages[0].has_next and not pages[1].has_next
    assert svc.book_page(BOOK, k=4, offset=8).hits == []


def test_book_page_leaves_out_hidden_rows_and_honours_years(collection: Collection) -> None:
    hidden = service(collection, hidden=("img_000050.jpg",)).book_page(BOOK)
    assert [h.row for h in hidden.hits] == [r for r in PAGE_ORDER if r != 50] and hidden.total_eligible == 5
    years = service(collection).book_page(BOOK, year_from=1805, year_to=1835)   # rows 50..359
    assert [h.row for h in years.hits] == [51, 333, 50, 200]


def test_more_from_the_book_of_a_hit(collection: Collection, vectors: np.ndarray) -> None:
    """What the bot's button does: a hit's book_id lists that book, the hit among its pages."""
    svc = service(collection)
    hit = svc.search_vector(vectors[333], k=1).hits[0]
    assert hit.row == 333 and 333 in [h.row for h in svc.book_page(hit.book_id).hits]


# --- search within a book ------------------------------------------------------------------------

def test_search_within_a_book_is_exact(collection: Collection, vectors: np.ndarray) -> None:
    """A prompt with a book ranks exactly the book's rows (as numpy would), and nothing else."""
    query = vectors[0]
    page = service(collection).search_page(query, k=4, book_id=BOOK)
    rows = np.array(sorted(BOOK_ROWS))
    want = rows[np.argsort(-(vectors[rows] @ query), kind="stable")]
    assert [h.row for h in page.hits] == want[:4].tolist() and page.total_eligible == 6
    assert page.order == "relevance" and [h.rank for h in page.hits] == [1, 2, 3, 4]
    second = service(collection).search_page(query, k=4, offset=4, book_id=BOOK)
    assert [h.row for h in second.hits] == want[4:].tolist() and [h.rank for h in second.hits] == [5, 6]
    np.testing.assert_allclose([h.score for h in page.hits], vectors[want[:4]] @ query, rtol=1e-5)


def test_search_within_a_book_leaves_out_hidden_and_excluded(collection: Collection, vectors: np.ndarray) -> None:
    svc = service(collection, hidden=("img_000005.jpg",))
    page = svc.search_page(vectors[5], k=9, book_id=BOOK, exclude_rows=(399,))
    assert sorted(h.row for h in page.hits) == [50, 51, 200, 333] and page.total_eligible == 4


def test_search_within_an_unknown_book(collection: Collection, vectors: np.ndarray) -> None:
    with pytest.raises(QueryError, match="There is no book"):
        service(collection).search_page(vectors[0], book_id="424242")


# --- the command line ---------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["search", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_book_lists_in_page_order_without_a_model(capsys: pytest.CaptureFixture,
                                                      collection: Collection) -> None:
    """--book alone lists the book (no scores) and never loads a model: the collection's is fake here."""
    code, out, err = run(capsys, collection.path, "--book", "7", "-k", "4")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split()[1] for line in lines[1:5]] == ["-"] * 4
    assert [f"img_{r:06d}.jpg" in line for r, line in zip(PAGE_ORDER, lines[1:5])] == [True] * 4
    assert lines[-1] == "(1-4 of 6, in page order (volume, page, image); next page: --offset 4)"
    code, out, err = run(capsys, collection.path, "--book", BOOK, "--offset", "4", "--json")
    page = json.loads(out)
    assert [h["row"] for h in page["hits"]] == PAGE_ORDER[4:]
    assert page["order"] == "book" and page["hits"][0]["score"] is None


def test_cli_book_with_a_prompt_searches_the_book(capsys: pytest.CaptureFixture, collection_dir: Path) -> None:
    """A prompt with --book searches only that book (sample collection: one image per book)."""
    code, out, err = run(capsys, collection_dir, "a ship", "--book", "499450", "--json")
    assert code == 0, err
    page = json.loads(out)
    assert [h["book_id"] for h in page["hits"]] == ["000499450"] and page["total_eligible"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (("--book", "31337"), "There is no book '31337'"),
    (("--book", BOOK, "--order", "year"), "--order year sorts search results"),
])
def test_cli_book_errors(capsys: pytest.CaptureFixture, collection: Collection, args: tuple[str, ...],
                         message: str) -> None:
    code, out, err = run(capsys, collection.path, *args)
    assert code == 1 and out == "" and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
