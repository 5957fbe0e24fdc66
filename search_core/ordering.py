"""Result order: by relevance (the default), or by year for reading a theme through time.

Year order takes the relevance ranking in runs of `year_pool(k)` hits (the page size times
`YEAR_POOL_PAGES`) and shows each run oldest first (unknown years last, ties by relevance). Page 1
is the oldest k of the top 3k, page 2 the next k of them, page 3 the newest; page 4 starts the
next run (relevance ranks 3k+1 to 6k) from its oldest. So pages of one size never overlap, cover
every eligible row once, and the hits on screen are never less relevant than rank 3k of their run.

Why 3 pages: one page re-sorted (1) spans too few years to show a development, and every further
page of pool admits weaker matches onto page 1 (its oldest hits come from anywhere in the run).
Three pages is what a reader pages through in one sitting; 27 hits at the bot's default of 9.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from search_core.errors import QueryError

if TYPE_CHECKING:
    from search_core.search import Hit, SearchPage

ORDER_RELEVANCE = "relevance"
ORDER_YEAR = "year"
ORDER_BOOK = "book"             # a book's illustrations in page order (SearchService.book_page)
ORDERS = (ORDER_RELEVANCE, ORDER_YEAR)
YEAR_POOL_PAGES = 3


def check_order(order: str) -> str:
    """The order, or QueryError naming the choices."""
    if order not in ORDERS:
        raise QueryError(f"Unknown order {order!r}; choose {' or '.join(ORDERS)}.")
    return order


def year_pool(k: int) -> int:
    """How many relevance-ranked hits are shown oldest first at a time."""
    return k * YEAR_POOL_PAGES


def year_ordered(fetch: Callable[[int, int], SearchPage], k: int, offset: int,
                 chunk: int) -> tuple[list[Hit], int]:
    """Hits offset+1 .. offset+k in year order, and the number of eligible rows.

    ``fetch(n, offset)`` is the relevance search (n at most ``chunk`` per call). Ranks are
    renumbered to positions in year order, so paging and "#3" mean what is on screen.
    """
    pool = year_pool(k)
    first, last = offset // pool, (offset + k - 1) // pool
    ordered: list[Hit] = []
    total = 0
    for run in range(first, last + 1):
        hits, total = _relevance_run(fetch, run * pool, pool, chunk)
        ordered.extend(sorted(hits, key=lambda h: (h.year is None, h.year or 0, h.rank)))
        if len(hits) < pool:
            break
    start = offset - first * pool
    return [replace(h, rank=offset + i + 1) for i, h in enumerate(ordered[start:start + k])], total


def _relevance_run(fetch: Callable[[int, int], SearchPage], start: int, count: int,
                   chunk: int) -> tuple[list[Hit], int]:
    hits: list[Hit] = []
    total = 0
    while len(hits) < count:
        page = fetch(min(chunk, count - len(hits)), start + len(hits))
        hits.extend(page.hits)
        total = page.total_eligible
        if not page.hits or not page.has_next:
            break
    return hits, total


def describe_order(page: SearchPage) -> str | None:
    """A phrase saying how the page is ordered, for the table, the sheet and the bot; None for
    relevance (what rank and score already say)."""
    if page.order == ORDER_BOOK:
        return "in page order (volume, page, image)"
    if page.order != ORDER_YEAR or not page.hits:
        return None
    pool = year_pool(page.k)
    runs = range(page.offset // pool, (page.offset + len(page.hits) - 1) // pool + 1)
    spans = [f"{r * pool + 1}-{min(r * pool + pool, page.total_eligible)}" for r in runs]
    return f"oldest first within relevance ranks {', then '.join(spans)}"
