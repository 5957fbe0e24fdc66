"""Near-duplicate collapse at search time: one hit per group, its size, paging over groups, the
expand path, and collections built before groups existed.

Synthetic vectors with planted groups of near-identical copies (the largest bigger than a page
and than the build's neighbour count), under an exact and two lossy approximate indexes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search_core import layout
from search_core import search as search_module
from search_core.collapse import SCAN_ONE_FROM, DuplicateGroups, check_group_ids
from search_core.collection import Collection
from search_core.errors import CollectionError, QueryError
from search_core.search import SearchService
from tests.fixtures.synthetic_collection import FakeEncoder, vectors_with_groups, write_collection

N, DIM = 3000, 16
SIZES = (2, 2, 3, 3, 5, 8, 13, 40, 120)
YEARS = [1800 + i // 10 for i in range(N)]
NAMES = [f"img_{i:06d}.jpg" for i in range(N)]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return vectors_with_groups(N, DIM, SIZES, seed=3)


@pytest.fixture(scope="module", params=["Flat", "IVF32,Flat", "HNSW8"])
def grouped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            data: tuple[np.ndarray, np.ndarray]) -> Collection:
    params = {"IVF32,Flat": {"nprobe": 1}, "HNSW8": {"efSearch": 16}}.get(request.param, {})
    folder = tmp_path_factory.mktemp("grouped") / request.param.replace(",", "_")
    write_collection(folder, data[0], years=YEARS, file_names=NAMES, index_spec=request.param,
                     index_params=params, groups=data[1])
    return Collection.open(folder)


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Collection:
    folder = tmp_path_factory.mktemp("grouped") / "flat"
    return Collection.open(write_collection(folder, data[0], years=YEARS, file_names=NAMES, groups=data[1]))


@pytest.fixture(params=["exact-slice", "faiss-then-fallback"])
def filter_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "faiss-then-fallback":
        monkeypatch.setattr(search_module, "EXACT_SEARCH_MAX_ROWS", 0)
    return request.param


def service(collection: Collection, hidden: tuple[str, ...] = ()) -> SearchService:
    return SearchService(collection, FakeEncoder(DIM), hidden_files=hidden)


def member_of_group(group_of: np.ndarray, size: int) -> int:
    """A row of a planted group of `size` rows (sizes in SIZES are unique above 3)."""
    sizes = np.bincount(group_of, minlength=len(group_of))
    return int(np.flatnonzero(sizes[group_of] == size)[0])


def reference(vectors: np.ndarray, group_of: np.ndarray, query: np.ndarray,
              eligible: np.ndarray) -> list[tuple[int, int]]:
    """Exact answer: (best row, eligible rows) per group, groups by best score then row."""
    scores = vectors[eligible] @ query
    order = np.lexsort((eligible, -scores))
    best: dict[int, int] = {}
    for row in eligible[order].tolist():
        best.setdefault(int(group_of[row]), row)
    counts = np.bincount(group_of[eligible], minlength=len(group_of))
    return [(row, int(counts[g])) for g, row in best.items()]


# --- collapse ------------------------------------------------------------------------------------

def test_one_hit_per_group_carrying_its_size(grouped: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A query inside the 120-copy group gets that group once, standing for 120 images, then
    other groups, never two rows of one group; with the exact index the page is the exact answer."""
    vectors, group_of = data
    q = vectors[member_of_group(group_of, 120)]
    page = service(grouped).search_vector(q, k=9)
    groups = [int(group_of[h.row]) for h in page.hits]
    assert len(page.hits) == 9 and len(set(groups)) == 9
    assert page.hits[0].group_size == 120 and page.collapsed
    assert page.total_eligible == N - sum(SIZES) + len(SIZES)
    if grouped.manifest.index.spec == "Flat":
        assert [(h.row, h.group_size) for h in page.hits] == reference(vectors, group_of, q, np.arange(N))[:9]


def test_no_collapse_lists_every_copy(grouped: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """collapse=False is the row-by-row search: the page is nine copies of one picture."""
    vectors, group_of = data
    row = member_of_group(group_of, 120)
    page = service(grouped).search_vector(vectors[row], k=9, collapse=False)
    assert {int(group_of[h.row]) for h in page.hits} == {int(group_of[row])}
    assert all(h.group_size == 1 for h in page.hits)
    assert page.total_eligible == N and not page.collapsed


def test_year_filter_collapses_to_the_exact_answer(grouped: Collection, data: tuple[np.ndarray, np.ndarray],
                                                   filter_path: str) -> None:
    """Under a year range (rows 1000-1299) every index type gives the exact collapsed answer, and
    a group counts only its rows inside the range."""
    vectors, group_of = data
    q = vectors[member_of_group(group_of, 40)]
    page = service(grouped).search_vector(q, k=9, year_from=1900, year_to=1929)
    assert [(h.row, h.group_size) for h in page.hits] == reference(vectors, group_of, q, np.arange(1000, 1300))[:9]


def test_pages_over_groups_are_disjoint_and_complete(grouped: Collection, data: tuple[np.ndarray, np.ndarray],
                                                     filter_path: str) -> None:
    """Paging counts groups: all pages together hold every group with a row in the range exactly
    once, ranks follow on, and the last page says there is no next."""
    vectors, group_of = data
    q = vectors[member_of_group(group_of, 120)]
    svc = service(grouped)
    expected = reference(vectors, group_of, q, np.arange(1000, 1300))
    pages, offset = [], 0
    while True:
        page = svc.search_vector(q, k=7, offset=offset, year_from=1900, year_to=1929)
        pages.append(page)
        offset += 7
        if not page.has_next:
            break
    hits = [h for p in pages for h in p.hits]
    assert [(h.row, h.group_size) for h in hits] == expected
    assert [h.rank for h in hits] == list(range(1, len(expected) + 1))
    assert {p.total_eligible for p in pages} == {len(expected)}


def test_unfiltered_pages_cover_every_group_once(flat: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Across the whole collection, pages of 50 groups list all groups once, in the exact order."""
    vectors, group_of = data
    q = vectors[member_of_group(group_of, 40)]
    hits = every_page(service(flat), q)
    assert [(h.row, h.group_size) for h in hits] == reference(vectors, group_of, q, np.arange(N))


def every_page(svc: SearchService, q: np.ndarray, k: int = 50) -> list:
    """All hits of a query, page after page until there is no next."""
    hits = []
    for offset in range(0, N, k):
        page = svc.search_vector(q, k=k, offset=offset)
        hits += page.hits
        if not page.has_next:
            break
    return hits


def test_hidden_rows_shrink_their_group_or_remove_it(flat: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Hidden copies are not counted; a group whose rows are all hidden is gone from hits and totals."""
    vectors, group_of = data
    big = member_of_group(group_of, 13)
    members = np.flatnonzero(group_of == group_of[big])
    pair = np.flatnonzero(group_of == group_of[member_of_group(group_of, 2)])   # one whole pair
    hidden = tuple(NAMES[r] for r in [*members[:3].tolist(), *pair.tolist()])
    svc = service(flat, hidden)
    page = svc.search_vector(vectors[members[5]], k=50)
    assert page.hits[0].group_size == 10
    assert int(group_of[pair[0]]) not in {int(group_of[h.row]) for h in page.hits}
    assert page.total_eligible == service(flat).search_vector(vectors[0], k=1).total_eligible - 1
    hits = svc.search_vector(vectors[pair[0]], k=50).hits
    assert not {h.row for h in hits} & set(pair.tolist())


def test_more_like_this_leaves_out_the_whole_group(grouped: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """More like a copy never offers its other copies (that is what expanding is for)."""
    _, group_of = data
    row = member_of_group(group_of, 40)
    page = service(grouped).more_like_this(row, k=9)
    assert len(page.hits) == 9
    assert int(group_of[row]) not in {int(group_of[h.row]) for h in page.hits}


def test_a_page_without_copies_costs_one_index_search(flat: Collection, data: tuple[np.ndarray, np.ndarray],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The first round fetches enough rows that a page with no big group needs no second search."""
    vectors, group_of = data
    svc = service(flat)
    calls = []
    original = svc._top_rows
    monkeypatch.setattr(svc, "_top_rows", lambda *a: calls.append(a[1]) or original(*a))
    singleton = int(np.flatnonzero(np.bincount(group_of, minlength=N)[group_of] == 1)[0])
    svc.search_vector(vectors[singleton], k=9)
    assert len(calls) == 1
    calls.clear()
    svc.search_vector(vectors[member_of_group(group_of, 120)], k=9)
    assert len(calls) == 2     # the big group filled the first round; the second excluded it


@pytest.fixture(scope="module")
def ivf_all(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Collection:
    """An approximate index told to probe every list, so its answers can be compared with exact ones."""
    folder = tmp_path_factory.mktemp("grouped") / "ivf-all"
    return Collection.open(write_collection(folder, data[0], years=YEARS, file_names=NAMES, index_spec="IVF16,Flat",
                                            index_params={"nprobe": 16}, groups=data[1], rerank=60))


@pytest.mark.parametrize("size", [120, 40, 13, 8])
def test_a_query_inside_a_big_group_costs_one_index_search(ivf_all: Collection, data: tuple[np.ndarray, np.ndarray],
                                                          monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """An approximate index scans one row of each group of SCAN_ONE_FROM+ copies, so the copies of
    the group a query sits in leave room for the other groups: one index search, and the page is
    still the exact one (each group's best row, by its best score)."""
    vectors, group_of = data
    assert size >= SCAN_ONE_FROM
    svc = service(ivf_all)
    searches: list[int] = []
    monkeypatch.setattr(svc.collection, "index", _CountingIndex(svc.collection.index, searches))
    q = vectors[member_of_group(group_of, size)]
    page = svc.search_vector(q, k=9)
    assert len(searches) == 1
    assert [(h.row, h.group_size) for h in page.hits] == reference(vectors, group_of, q, np.arange(N))[:9]


def test_a_big_group_shows_its_best_row_not_the_row_scanned(ivf_all: Collection,
                                                            data: tuple[np.ndarray, np.ndarray]) -> None:
    """The row scanned for a big group is its first eligible one; the hit is the group's best
    eligible row and score, also when the first row is outside the year range or hidden."""
    vectors, group_of = data
    members = np.flatnonzero(group_of == group_of[member_of_group(group_of, 120)])
    best = int(members[-1])                     # a late copy: not the row the scan reads
    q = vectors[best]
    hit = service(ivf_all).search_vector(q, k=1).hits[0]
    assert (hit.row, hit.group_size) == (best, 120)
    assert hit.score == pytest.approx(float(vectors[best] @ q), abs=1e-5)
    year_from = YEARS[int(members[len(members) // 2])]        # the first copies fall outside the range
    inside = members[np.asarray(YEARS)[members] >= year_from]
    hit = service(ivf_all).search_vector(q, k=1, year_from=year_from).hits[0]
    assert (hit.row, hit.group_size) == (best, inside.size)
    hidden = tuple(NAMES[r] for r in members[:5].tolist()) + (NAMES[best],)
    hit = service(ivf_all, hidden).search_vector(q, k=1).hits[0]
    others = members[5:-1]
    assert hit.row == int(others[np.lexsort((others, -(vectors[others] @ q)))[0]]) and hit.group_size == 114


def test_pages_over_all_groups_with_the_big_group_scan(ivf_all: Collection,
                                                      data: tuple[np.ndarray, np.ndarray]) -> None:
    """Paging an approximate index that scans one row of each big group: across every page each
    group comes once (every group of the collection, ranks running on), always shown by its best
    row for the query, with its full size."""
    vectors, group_of = data
    q = vectors[member_of_group(group_of, 120)]
    hits = every_page(service(ivf_all), q)
    groups = [int(group_of[h.row]) for h in hits]
    assert len(groups) == len(set(groups)) == np.unique(group_of).size
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    exact_best: dict[int, int] = {}
    for row in np.lexsort((np.arange(N), -(vectors @ q))).tolist():
        exact_best.setdefault(int(group_of[row]), row)
    sizes = np.bincount(group_of, minlength=N)
    assert all(h.row == exact_best[g] and h.group_size == sizes[g] for h, g in zip(hits, groups))


def test_the_plain_query_builds_its_selectors_once_and_still_hides_rows(ivf_all: Collection,
                                                                         data: tuple[np.ndarray, np.ndarray],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries without a year range or excluded rows reuse one set of FAISS parameters per depth
    (hidden rows and the big-group scan included); a filtered query builds its own; hidden rows
    stay out of every answer."""
    vectors, group_of = data
    members = np.flatnonzero(group_of == group_of[member_of_group(group_of, 40)])
    hidden = tuple(NAMES[r] for r in members[:3].tolist())
    svc = service(ivf_all, hidden)
    setups = []
    original = svc._search_setup
    monkeypatch.setattr(svc, "_search_setup", lambda *a: setups.append(a[0]) or original(*a))
    pages = [svc.search_vector(vectors[r], k=9) for r in members[:3].tolist() + [5, 6]]
    assert len(setups) == 1
    assert all(h.row not in set(members[:3].tolist()) for p in pages for h in p.hits)
    assert pages[0].hits[0].group_size == 37
    monkeypatch.setattr(search_module, "EXACT_SEARCH_MAX_ROWS", 0)     # the range goes through FAISS too
    svc.search_vector(vectors[5], k=9, year_from=1850)
    svc.search_vector(vectors[6], k=9, year_from=1850)
    assert len(setups) == 3


def test_scan_bitmap_holds_every_row_but_the_later_copies_of_big_groups(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Brute force over random ranges and blocked rows: the bitmap holds every row outside big
    groups, and of each big group only its first row inside the range and not blocked."""
    _, group_of = data
    groups = DuplicateGroups(group_of)
    sizes = np.bincount(group_of, minlength=N)
    rng = np.random.default_rng(1)
    cases = [(0, N, np.empty(0, np.int64))]
    for _ in range(20):
        start, stop = sorted(rng.integers(0, N + 1, 2).tolist())
        cases.append((start, stop, np.unique(rng.choice(N, rng.integers(0, 200)))))
    for start, stop, blocked in cases:
        expected = sizes[group_of] < SCAN_ONE_FROM
        for g in np.flatnonzero(sizes >= SCAN_ONE_FROM).tolist():
            rows = np.flatnonzero(group_of == g)
            rows = rows[(rows >= start) & (rows < stop) & ~np.isin(rows, blocked)]
            if rows.size:
                expected[rows[0]] = True
        bits = np.unpackbits(groups.scan_bitmap(start, stop, blocked), bitorder="little")[:N].astype(bool)
        assert np.array_equal(bits, expected)
    assert DuplicateGroups(np.array([0, 0, 2, 3], np.int32)).scan_bitmap(0, 4, np.empty(0, np.int64)) is None


class _CountingIndex:
    """A FAISS index whose searches are counted."""

    def __init__(self, index, calls: list) -> None:
        self._index, self._calls = index, calls

    def __getattr__(self, name):
        return getattr(self._index, name)

    def search(self, *args, **kwargs):
        self._calls.append(args[1])
        return self._index.search(*args, **kwargs)


# --- expanding a group ---------------------------------------------------------------------------

def test_expand_lists_the_group_ranked(flat: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """Expanding a hit lists its group's rows, ranked by the query, paged; a filter and hidden
    rows apply as they do to search."""
    vectors, group_of = data
    row = member_of_group(group_of, 40)
    members = np.flatnonzero(group_of == group_of[row])
    q = vectors[0]
    svc = service(flat, (NAMES[members[-1]],))
    pages = [svc.expand_group(row, q, k=15, offset=o) for o in (0, 15, 30)]
    rows = [h.row for p in pages for h in p.hits]
    expected = members[:-1][np.lexsort((members[:-1], -(vectors[members[:-1]] @ q)))].tolist()
    assert rows == expected and pages[0].total_eligible == 39
    assert [p.has_next for p in pages] == [True, True, False]
    by_itself = svc.expand_group(row, k=50)
    assert by_itself.hits[0].row == row                # without a query: ranked by likeness to the row
    in_range = svc.expand_group(row, k=50, year_from=1800, year_to=1949)
    assert {h.row for h in in_range.hits} == {r for r in members[:-1].tolist() if r < 1500}


def test_expand_a_row_without_copies_or_a_hidden_row(flat: Collection, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A row with no near-duplicates expands to itself; a hidden row cannot be expanded."""
    _, group_of = data
    single = int(np.flatnonzero(np.bincount(group_of, minlength=N)[group_of] == 1)[0])
    assert [h.row for h in service(flat).expand_group(single).hits] == [single]
    with pytest.raises(QueryError, match="not available"):
        service(flat, (NAMES[single],)).expand_group(single)
    with pytest.raises(QueryError, match="no image number"):
        service(flat).expand_group(N)


# --- collections without groups, and broken ones -------------------------------------------------

def test_collection_from_before_groups_opens_and_searches_row_by_row(
        tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    """A manifest without the new fields (an older build) opens; every row is its own group."""
    vectors, _ = data
    folder = write_collection(tmp_path / "old", vectors[:200], years=YEARS[:200], file_names=NAMES[:200])
    manifest = json.loads((folder / layout.MANIFEST).read_text())
    for key in ("duplicates", "match_scale"):
        manifest.pop(key)
    (folder / layout.MANIFEST).write_text(json.dumps(manifest))
    collection = Collection.open(folder)
    assert collection.groups is None
    page = service(collection).search_vector(vectors[5], k=5)
    assert not page.collapsed and page.total_eligible == 200 and page.weak_match is None
    assert all(h.group_size == 1 for h in page.hits)
    assert [h.row for h in service(collection).expand_group(5).hits] == [5]


@pytest.mark.parametrize(("breakage", "message"), [
    ("missing", "groups.npy is missing"),
    ("short", "shape"),
    ("not-smallest", "smallest row"),
    ("floats", "not integers"),
])
def test_broken_groups_file_is_a_clear_error(tmp_path: Path, data: tuple[np.ndarray, np.ndarray],
                                             breakage: str, message: str) -> None:
    vectors, _ = data
    folder = write_collection(tmp_path / "c", vectors[:100], years=YEARS[:100], file_names=NAMES[:100],
                              groups=np.arange(100))
    file = folder / layout.GROUPS
    if breakage == "missing":
        file.unlink()
    elif breakage == "short":
        np.save(file, np.arange(99, dtype=np.int32))
    elif breakage == "not-smallest":
        np.save(file, np.array([1, 1] + list(range(2, 100)), dtype=np.int32))
    else:
        np.save(file, np.arange(100, dtype=np.float32))
    with pytest.raises(CollectionError, match=message):
        Collection.open(folder)


def test_group_counts_match_brute_force(data: tuple[np.ndarray, np.ndarray]) -> None:
    """DuplicateGroups.count and eligible_sizes agree with counting by hand, over random ranges
    and blocked rows."""
    _, group_of = data
    groups = DuplicateGroups(group_of)
    assert check_group_ids(group_of, N) is None
    rng = np.random.default_rng(0)
    for _ in range(30):
        start, stop = sorted(rng.integers(0, N + 1, 2).tolist())
        blocked = np.unique(rng.integers(start, max(start + 1, stop), rng.integers(0, 40))) if stop > start \
            else np.empty(0, np.int64)
        eligible = np.setdiff1d(np.arange(start, stop), blocked)
        assert groups.count(start, stop, blocked) == np.unique(group_of[eligible]).size
        if eligible.size:
            rows = eligible[:20]
            counts = np.bincount(group_of[eligible], minlength=N)
            assert groups.eligible_sizes(rows, start, stop, blocked) == counts[group_of[rows]].tolist()
