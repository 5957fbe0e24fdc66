""""More from this book": the rows of one book (British Library ``book_id``), in page order.

A book is a few tens to a few hundred rows, not necessarily contiguous (rows are sorted by year,
and a multi-volume work can span years), so a search within a book scores those rows exactly
from the memory-mapped embeddings rather than through the index with an id selector. At 1M rows
(IVF4000,SQ8) and a book of 200 scattered rows: 0.20 ms p50 (0.33x an unfiltered search), recall
1; an ``IDSelectorBatch`` or ``IDSelectorBitmap`` at the index's nprobe found 0.2% of the true top
10 (the book's rows sit in lists the query never probes), and probing every list to find them
took 23-28 ms (37-45x) for recall 0.99 (``benchmarks/bench_filters.py``, BENCHMARKS.md).
The index of books is built on first use: 130-250 ms for 1M rows of 20,000 books.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from search_core.errors import QueryError

log = logging.getLogger(__name__)

BOOK_COLUMN = "book_id"
# How many characters of an unknown id a message repeats: an id is short; anything longer is not one.
MAX_ID_CHARS = 40


class BookIndex:
    """book id -> rows, built on first use from the collection's ``book_id`` column.

    One pass over the column (``pyarrow.compute.unique`` / ``index_in``) and a stable argsort;
    thread-safe, and free for a collection nobody asks about books.
    """

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self._lock = threading.Lock()
        self._codes: dict[str, int] | None = None
        self._aliases: dict[str, str] = {}
        self._order = np.empty(0, np.int64)      # rows grouped by book, ascending within a book
        self._starts = np.zeros(1, np.int64)      # book c's rows: _order[_starts[c]:_starts[c + 1]]

    def rows(self, book_id: str) -> np.ndarray:
        """The book's rows, ascending. QueryError for an unknown id or a collection without ids."""
        code = self._code(book_id, self._build())
        return self._order[self._starts[code]:self._starts[code + 1]]

    def page_order(self, book_id: str) -> np.ndarray:
        """The book's rows by volume, page and image number (unknown ones last, then by row)."""
        rows = self.rows(book_id)
        meta = self._collection.metadata_rows(rows.tolist())

        def key(i: int) -> tuple:
            m = meta[i]
            return tuple(v for name in ("volume", "page", "image_number")
                         for v in (m.get(name) is None, m.get(name) or 0)) + (int(rows[i]),)

        return rows[sorted(range(len(rows)), key=key)]

    def _code(self, book_id: str, codes: dict[str, int]) -> int:
        wanted = str(book_id).strip()
        code = codes.get(wanted)
        if code is None and wanted.isdigit():
            code = codes.get(self._aliases.get(wanted.lstrip("0") or "0", ""))
        if code is None:
            shown = wanted if len(wanted) <= MAX_ID_CHARS else wanted[:MAX_ID_CHARS] + "…"
            raise QueryError(f"There is no book {shown!r} in this collection.")
        return code

    def _build(self) -> dict[str, int]:
        """The id -> code map, building the index on first use."""
        with self._lock:
            if self._codes is not None:
                return self._codes
            dataset = self._collection.dataset
            if BOOK_COLUMN not in dataset.column_names:
                raise QueryError("This collection has no book ids (its file names are not British Library "
                                 "names), so it cannot list a book.")
            import pyarrow as pa
            import pyarrow.compute as pc

            column = pc.cast(dataset.data.column(BOOK_COLUMN), pa.string())
            ids = pc.drop_null(pc.unique(column))
            codes = pc.index_in(column, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False)
            known = codes >= 0
            order = np.flatnonzero(known)
            order = order[np.argsort(codes[known], kind="stable")].astype(np.int64)
            counts = np.bincount(codes[known], minlength=len(ids))
            self._order = order
            self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            names = ids.to_pylist()
            self._aliases = {n.lstrip("0") or "0": n for n in names if n.isdigit()}
            self._codes = {n: i for i, n in enumerate(names)}
            log.info("book index: %d books over %d rows", len(names), int(known.sum()))
            return self._codes
