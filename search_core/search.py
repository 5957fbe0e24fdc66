"""Answer queries against an open collection: encode, filter inside FAISS, page, describe hits.

Filters (year range, hidden rows, excluded rows) are FAISS id selectors passed with the search,
never over-fetching and dropping: a narrow filter still returns k hits. An approximate index
(IVF, HNSW) can come back short under a narrow filter; then the eligible rows are searched
exactly from the embeddings, so the promise holds for every index type.

Near-duplicates (search_core/collapse.py) are collapsed by default: a hit is the best row of its
group and counts the rows it stands for; `expand_group` lists them. Text queries are judged
against the collection's weak-match scale (search_core/weak_match.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from search_core.books import BookIndex
from search_core.collapse import FIRST_ROUND_FACTOR, DuplicateGroups, top_groups
from search_core.collection import Collection, check_year_range
from search_core.errors import ModelMismatchError, QueryError
from search_core.images import to_rgb
from search_core.index_params import search_parameters
from search_core.layout import MODEL_PROBE_MIN_COSINE, MODEL_PROBE_TEXT
from search_core.ordering import ORDER_BOOK, ORDER_RELEVANCE, ORDER_YEAR, check_order, year_ordered
from search_core.query_threads import QUERY_THREADS, split_lists_between_threads
from search_core.rerank import (
    candidate_count,
    inner_products,
    is_exact,
    rerank,
    row_inner_products,
    score_rows,
)
from search_core.text_model import Alignment, TextModel
from search_core.weak_match import is_weak

log = logging.getLogger(__name__)

# The most hits one page may hold: a contact sheet of 50 thumbnails is already hard to read.
MAX_K = 50
# How deep paging may go: FAISS searches offset + k results for each page.
MAX_OFFSET = 10_000
# CLIP reads at most 77 tokens and longer prompts are truncated by the tokenizer, so a long
# prompt is fine; past this many characters it is a paste accident (or abuse), not a query.
MAX_PROMPT_CHARS = 1000
# Rows scored per block in the exact fallback, bounding its memory to ~BLOCK x dim x 4 bytes.
EXACT_BLOCK_ROWS = 65_536
# A year range this small is scored exactly from the embeddings when the index is approximate
# (~0.15 ms at 512-d), and every page of a query takes the same path, so pages stay disjoint.
# Wider ranges go through the index: scoring 10k rows cost 0.36 ms on a quiet machine, against
# ~0.15 ms for IVF with a sorted range selector.
EXACT_SEARCH_MAX_ROWS = 4_096
# An approximate index's ranking of one query is built in tiers: positions [0, 30) come from a
# search for the top 30, [30, 120) from a search for the top 120 minus the rows already ranked,
# and so on (x4). The first tier holds the near-duplicate collapse's first round (3 x 10 rows
# for a page of 10 groups), so a first page costs one index search: with a first tier of 10 it
# cost two (1M hard rows, same process, under load: 8.2-8.6 against 2.9-3.6 ms p50).
# Every page of a query reads the same ranking, so pages are disjoint and their
# union is the ranking's prefix, whatever the index: two searches of different depths need not
# agree on their common prefix (a deeper HNSW or re-rank can find a better row that a page
# already shown missed, which would then repeat a row and skip another).
RANK_TIER = FIRST_ROUND_FACTOR * 10
RANK_TIER_GROWTH = 4
# A tier that would fetch more candidates than this is searched exactly instead: only deep
# pages get there (past row 1,920 at the default depth), and an HNSW search that wide costs more
# than a scan of the eligible rows.
MAX_APPROX_CANDIDATES = 4_096


@dataclass(frozen=True)
class Hit:
    """One result. rank is 1-based across pages; metadata fields are None where unknown.

    group_size: how many near-identical eligible images this hit stands for, itself included (1:
    none, or collapse off). weak: whether its score is below the weak-match cut (None: not judged).
    """

    rank: int
    row: int
    score: float
    file_name: str
    title: str | None = None
    year: int | None = None
    book_id: str | None = None
    volume: int | None = None
    page: int | None = None
    image_number: int | None = None
    group_size: int = 1
    weak: bool | None = None


@dataclass(frozen=True)
class SearchPage:
    """One page of hits: ranks offset+1 .. offset+len(hits) of total_eligible rows.

    ``order`` is how they are ordered (search_core.ordering): "relevance", "year", or "book"
    (page order, no scores: each hit's score is NaN). ``collapsed``: hits are near-duplicate groups,
    and offset and total_eligible count groups. ``weak_match``: whether the query's best hit is
    weak (None: not judged).
    """

    hits: list[Hit]
    offset: int
    k: int
    total_eligible: int
    order: str = ORDER_RELEVANCE
    collapsed: bool = False
    weak_match: bool | None = None

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.hits) < self.total_eligible


def check_prompt(text: str | None) -> str | None:
    """The prompt stripped, or None when absent; QueryError when blank or too long."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise QueryError("The prompt must be text.")
    stripped = text.strip()
    if not stripped:
        raise QueryError("The prompt is empty.")
    if len(stripped) > MAX_PROMPT_CHARS:
        raise QueryError(f"The prompt is too long ({len(stripped)} characters); the limit is {MAX_PROMPT_CHARS}.")
    return stripped


class SearchService:
    """A collection plus the model it was embedded with. Thread-safe for concurrent searches."""

    def __init__(self, collection: Collection, encoder: Any | None, hidden_files: Iterable[str] = (),
                 text_model: TextModel | None = None) -> None:
        """``encoder`` None: no queries to encode yet (a book listing, stored vectors); see use_models."""
        self.collection = collection
        self.encoder: Any | None = None
        self.text_model: TextModel | None = None
        self.text_alignment: Alignment | None = None
        self.books = BookIndex(collection)
        self._exact_index = is_exact(collection.index)
        self._plain_setups: dict[tuple[int, bool], tuple[Any, list[Any], bool]] = {}
        if not self._exact_index:
            split_lists_between_threads(collection.index)     # one query on several cores (query_threads)
        self.hidden_rows = np.asarray(collection.rows_for_file_names(hidden_files), dtype=np.int64)
        if self.hidden_rows.size:
            log.info("%d rows hidden from results", self.hidden_rows.size)
        if encoder is not None:
            self.use_models(encoder, text_model)
        elif text_model is not None:
            raise ValueError("a text model is checked against the collection's model: give both")

    @classmethod
    def open(cls, path: str | Path, model: str | None = None, device: str = "auto",
             hidden_files: Iterable[str] = (), text_model: str | TextModel | None = None,
             load_model: bool = True) -> SearchService:
        """Open a collection and load its model (the manifest's, unless model overrides it).

        ``text_model``: a loaded TextModel (shared between collections) or a name to load.
        ``load_model=False`` opens without models (seconds faster): load_models can follow.
        """
        service = cls(Collection.open(path), None, hidden_files=hidden_files)
        if load_model:
            service.load_models(model, device=device, text_model=text_model)
        return service

    def load_models(self, model: str | None = None, device: str = "auto",
                    text_model: str | TextModel | None = None) -> None:
        """Load the collection's model (or ``model``) and an optional text model, then use_models."""
        from search_core.encoder import Encoder

        encoder = Encoder.load(model or self.collection.manifest.model, device=device)
        if isinstance(text_model, str):
            text_model = TextModel.load(text_model, device=device)
        self.use_models(encoder, text_model)

    def use_models(self, encoder: Any, text_model: TextModel | None = None) -> None:
        """Attach the collection's image model, refused unless it is the manifest's, and a text model
        for prompts, refused unless aligned with it. Both may be shared with other collections.
        Call before the service is shared between threads."""
        _check_model(self.collection, encoder)
        alignment = text_model.check_aligned(encoder) if text_model is not None else None
        self.encoder, self.text_model, self.text_alignment = encoder, text_model, alignment

    # --- queries ----------------------------------------------------------------------------

    def encode_query(self, text: str | None = None, image: Image.Image | None = None) -> np.ndarray:
        """A unit query vector; text and image together give their normalised sum."""
        text = check_prompt(text)
        if text is None and image is None:
            raise QueryError("Give a prompt, an image, or both.")
        text_vector = self.encode_text([text])[0] if text is not None else None
        image_vector = self._encoder().encode_images([to_rgb(image)])[0] if image is not None else None
        return combine_query_vectors(text_vector, image_vector)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of prompts, by the text model when there is one (any language), else by CLIP."""
        return (self.text_model or self._encoder()).encode_text(list(texts))

    def search(self, text: str | None = None, image: Image.Image | None = None, k: int = 9, offset: int = 0,
               year_from: int | None = None, year_to: int | None = None, collapse: bool = True) -> SearchPage:
        """Search by prompt, image, or both; a prompt alone is judged for a weak match."""
        check_page(k, offset, year_from, year_to)
        vector = self.encode_query(text=text, image=image)
        return self.search_vector(vector, k=k, offset=offset, year_from=year_from, year_to=year_to,
                                  collapse=collapse, text_query=image is None)

    def more_like_this(self, row: int, k: int = 9, offset: int = 0, year_from: int | None = None,
                       year_to: int | None = None, collapse: bool = True, order: str = ORDER_RELEVANCE) -> SearchPage:
        """Images like a row of the collection, by its stored embedding; the row itself is left out,
        and when collapsing its near-identical rows too (they are its group, see `expand_group`).
        ``order`` as in search_page (the bot keeps a result's order for "more like this")."""
        row = self.collection.check_row(row)
        if self._is_hidden(row):
            raise QueryError("That image is not available.")
        vector = _unit(np.asarray(self.collection.embeddings[row], dtype=np.float32), "That image has no embedding.")
        groups = self._groups(collapse)
        exclude = groups.members(groups.group_of[row]) if groups is not None else (row,)
        return self.search_page(vector, k=k, offset=offset, order=order, year_from=year_from, year_to=year_to,
                                exclude_rows=exclude, collapse=collapse)

    def expand_group(self, row: int, vector: np.ndarray | None = None, k: int = 9, offset: int = 0,
                     year_from: int | None = None, year_to: int | None = None) -> SearchPage:
        """The near-identical images grouped with `row` (it included), ranked by `vector`, or by
        likeness to `row` itself when no vector is given. Filters and hidden rows apply."""
        check_page(k, offset, year_from, year_to)
        row = self.collection.check_row(row)
        if self._is_hidden(row):
            raise QueryError("That image is not available.")
        query = (self._as_query(vector)[0] if vector is not None else
                 _unit(np.asarray(self.collection.embeddings[row], dtype=np.float32), "That image has no embedding."))
        start, stop = self.collection.year_row_range(year_from, year_to)
        blocked = self._blocked_rows(start, stop, ())
        groups = self.collection.groups
        if groups is None:
            members = np.array([row], dtype=np.int64)
            members = members[(members >= start) & (members < stop)]
        else:
            members = groups.eligible_members(int(groups.group_of[row]), start, stop, blocked)
        scores, ranked = score_rows(self.collection.embeddings, query, members, offset + k)
        hits = self._hits(scores[offset:], ranked[offset:], first_rank=offset + 1)
        return SearchPage(hits=hits, offset=offset, k=k, total_eligible=int(members.size))

    def search_vector(self, vector: np.ndarray, k: int = 9, offset: int = 0, year_from: int | None = None,
                      year_to: int | None = None, exclude_rows: Iterable[int] = (), collapse: bool = True,
                      text_query: bool = False) -> SearchPage:
        """The core search: filters applied inside FAISS, exact fallback when it comes back short.

        collapse: one hit per near-duplicate group (when the collection has groups), and offset,
        k and total_eligible count groups. text_query: the vector is a prompt's alone, so the
        best hit is judged against the weak-match scale.
        """
        check_page(k, offset, year_from, year_to)
        query = self._as_query(vector)
        start, stop = self.collection.year_row_range(year_from, year_to)
        blocked = self._blocked_rows(start, stop, exclude_rows)
        groups = self._groups(collapse)
        total = (stop - start) - blocked.size if groups is None else groups.count(start, stop, blocked)
        wanted = min(offset + k, total)
        if wanted <= offset:
            return SearchPage(hits=[], offset=offset, k=k, total_eligible=max(total, 0),
                              collapsed=groups is not None)

        def search_rows(n: int, excluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self._top_rows(query, n, start, stop, excluded, groups)

        if groups is None:
            scores, rows = search_rows(wanted, blocked)
            sizes = None
        else:
            scores, rows = top_groups(search_rows, wanted, groups, start, stop, blocked)
            sizes = groups.eligible_sizes(rows[offset:wanted], start, stop, blocked)
        scale = self.collection.manifest.match_scale if text_query else None
        hits = self._hits(scores[offset:wanted], rows[offset:wanted], first_rank=offset + 1,
                          sizes=sizes, scale=scale)
        weak = is_weak(float(scores[0]), scale) if scores.size else None
        return SearchPage(hits=hits, offset=offset, k=k, total_eligible=total, collapsed=groups is not None,
                          weak_match=weak)

    # --- books and result order (issue #10; the logic is in search_core.books and .ordering) --

    def book_page(self, book_id: str, k: int = 9, offset: int = 0, year_from: int | None = None,
                  year_to: int | None = None) -> SearchPage:
        """A book's illustrations in page order (volume, page, image number), hidden rows left out.
        No query, so no scores: each hit's score is NaN. QueryError for an unknown book."""
        check_page(k, offset, year_from, year_to)
        rows = self._eligible(self.books.page_order(book_id), year_from, year_to)
        shown = rows[offset:offset + k]
        hits = self._hits(np.full(shown.size, np.nan, np.float32), shown, first_rank=offset + 1)
        return SearchPage(hits=hits, offset=offset, k=k, total_eligible=int(rows.size), order=ORDER_BOOK)

    def search_page(self, vector: np.ndarray, k: int = 9, offset: int = 0, *, order: str = ORDER_RELEVANCE,
                    book_id: str | None = None, year_from: int | None = None, year_to: int | None = None,
                    exclude_rows: Iterable[int] = (), collapse: bool = True, text_query: bool = False) -> SearchPage:
        """search_vector with a result order ("relevance" or "year") and an optional book filter.

        Within one book every illustration is listed on its own (no near-duplicate collapse)."""
        check_page(k, offset, year_from, year_to)
        check_order(order)
        if book_id is not None:
            rows = self._eligible(self.books.rows(book_id), year_from, year_to, exclude_rows)

            def relevance(n: int, skip: int) -> SearchPage:
                return self._search_rows(vector, rows, n, skip)
        else:
            def relevance(n: int, skip: int) -> SearchPage:
                return self.search_vector(vector, k=n, offset=skip, year_from=year_from, year_to=year_to,
                                          exclude_rows=exclude_rows, collapse=collapse, text_query=text_query)
        if order == ORDER_RELEVANCE:
            return relevance(k, offset)
        hits, total = year_ordered(relevance, k, offset, chunk=MAX_K)
        return SearchPage(hits=hits, offset=offset, k=k, total_eligible=total, order=ORDER_YEAR)

    def _eligible(self, rows: np.ndarray, year_from: int | None, year_to: int | None,
                  exclude_rows: Iterable[int] = ()) -> np.ndarray:
        """rows (order kept) within the year range, minus hidden and excluded rows."""
        start, stop = self.collection.year_row_range(year_from, year_to)
        keep = (rows >= start) & (rows < stop) & ~np.isin(rows, self._blocked_rows(start, stop, exclude_rows))
        return rows[keep]

    def _search_rows(self, vector: np.ndarray, rows: np.ndarray, k: int, offset: int) -> SearchPage:
        """Exact relevance ranking of a few given rows (a book's), scored from the embeddings."""
        scores, ranked = score_rows(self.collection.embeddings, self._as_query(vector)[0], rows, offset + k)
        hits = self._hits(scores[offset:], ranked[offset:], first_rank=offset + 1)
        return SearchPage(hits=hits, offset=offset, k=k, total_eligible=int(rows.size))

    # --- internals ----------------------------------------------------------------------------

    def _encoder(self) -> Any:
        if self.encoder is None:
            raise RuntimeError("this SearchService was opened without a model (load_model=False)")
        return self.encoder

    def _as_query(self, vector: np.ndarray) -> np.ndarray:
        """A [1, dim] float32 query; QueryError for the wrong size or NaN/infinite values."""
        query = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.collection.manifest.embedding_dim:
            raise QueryError(f"The query vector has {query.shape[1]} dimensions; the collection has "
                             f"{self.collection.manifest.embedding_dim}.")
        if not np.isfinite(query).all():
            raise QueryError("The query vector holds NaN or infinite values.")
        return query

    def _groups(self, collapse: bool) -> DuplicateGroups | None:
        groups = self.collection.groups
        return groups if collapse and groups is not None and groups.has_duplicates else None

    def _is_hidden(self, row: int) -> bool:
        i = np.searchsorted(self.hidden_rows, row)
        return bool(i < self.hidden_rows.size and self.hidden_rows[i] == row)

    def _blocked_rows(self, start: int, stop: int, exclude_rows: Iterable[int]) -> np.ndarray:
        """Hidden and excluded rows inside [start, stop), sorted and unique."""
        excluded = np.asarray([int(r) for r in exclude_rows], dtype=np.int64)
        if not excluded.size and not self.hidden_rows.size:
            return excluded                 # the common query: no set arithmetic to pay for
        blocked = np.union1d(self.hidden_rows, excluded)
        return blocked[(blocked >= start) & (blocked < stop)]

    def _top_rows(self, query: np.ndarray, n: int, start: int, stop: int, blocked: np.ndarray,
                  groups: DuplicateGroups | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The first n (scores, rows) of this query's ranking of the rows in [start, stop) not in
        `blocked`: the same ranking whatever n, so pages never repeat or skip a row.

        Exact searches (a Flat index, a range small enough to score directly) give one ranking
        at any depth. An approximate index's ranking is built in tiers (RANK_TIER). `groups`: a
        collapsing search, which scans one row of each big group (search_core/collapse.py).
        """
        total = (stop - start) - blocked.size
        n = min(n, total)
        if self._exact_index or self._exact_range(start, stop):
            return self._top(query, n, start, stop, blocked)
        scores = np.empty(0, np.float32)
        rows = np.empty(0, np.int64)
        depth = RANK_TIER
        while rows.size < n:
            tier = min(depth, total)
            tier_scores, tier_rows = self._top(query, tier, start, stop, blocked, groups)
            new = ~np.isin(tier_rows, rows)
            take = tier - rows.size
            scores = np.concatenate([scores, tier_scores[new][:take]])
            rows = np.concatenate([rows, tier_rows[new][:take]])
            if tier_rows.size < tier:
                break           # fewer eligible rows than counted: nothing deeper to find
            depth *= RANK_TIER_GROWTH
        return scores[:n], rows[:n]

    def _exact_range(self, start: int, stop: int) -> bool:
        """A year range narrow enough to score its rows directly (EXACT_SEARCH_MAX_ROWS)."""
        return stop - start < self.collection.rows and stop - start <= EXACT_SEARCH_MAX_ROWS

    def _top(self, query: np.ndarray, n: int, start: int, stop: int, blocked: np.ndarray,
             groups: DuplicateGroups | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top n eligible rows: exact where cheap or needed, else from the index and re-ranked.

        An approximate index that comes back short (a filter it cannot satisfy) sends the query
        to the exact search of the eligible rows, so a narrow filter still returns n hits.
        """
        too_deep = candidate_count(n, self.collection.manifest.index.rerank) > MAX_APPROX_CANDIDATES
        if not self._exact_index and (self._exact_range(start, stop) or too_deep):
            return self._exact_search(query[0], n, start, stop, blocked)
        scores, rows = self._faiss_search(query, n, start, stop, blocked, groups)
        if rows.size < n:
            log.info("index returned %d of %d eligible hits; searching the eligible rows exactly", rows.size, n)
            scores, rows = self._exact_search(query[0], n, start, stop, blocked)
        return scores, rows

    def _faiss_search(self, query: np.ndarray, n: int, start: int, stop: int, blocked: np.ndarray,
                      groups: DuplicateGroups | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top n eligible rows from the index; may return fewer with an approximate index.

        `groups` (collapsing, approximate index, no year range): one row of each big group is
        scanned, and a hit of a big group is replaced by the group's best eligible row, scored
        exactly. A year range keeps to the plain scan: FAISS narrows each list to the range's
        stretch only when the range is the whole selector (1M hard rows, 11% range: 2.27x the
        unfiltered query's cost with the scan's bitmap joined to it, 1.22x without).
        """
        fetch = n if self._exact_index else candidate_count(n, self.collection.manifest.index.rerank)
        # The common query (no year range, nothing blocked but the hidden rows) gets parameters
        # and selectors built once per depth: 30-50 us a query, more with a long takedown list.
        ranged = start > 0 or stop < self.collection.rows
        plain = not ranged and blocked.size == self.hidden_rows.size
        key = (fetch, groups is not None)
        setup = self._plain_setups.get(key) if plain else None
        if setup is None:
            scan = (groups.scan_bitmap(start, stop, blocked) if groups is not None and not self._exact_index
                    and not ranged else None)
            setup = self._search_setup(fetch, start, stop, blocked, scan)
            if plain:
                self._plain_setups[key] = setup
        params, keep, scanned = setup
        with QUERY_THREADS.claim(lists=getattr(params, "nprobe", 0)):
            try:
                scores, rows = self.collection.index.search(query, fetch, params=params)
            except RuntimeError as exc:
                log.warning("filtered FAISS search failed (%s); searching exactly", str(exc).splitlines()[0])
                return np.empty(0, np.float32), np.empty(0, np.int64)
        del keep
        rows, scores = rows[0].astype(np.int64), scores[0]
        # Belt and braces: whatever the index type does with a selector, nothing outside the
        # filter leaves here (a dropped row only sends the query to the exact fallback).
        valid = (rows >= start) & (rows < stop)
        if blocked.size:
            valid &= ~np.isin(rows, blocked)
        if self._exact_index:
            return scores[valid], rows[valid]
        scores, rows = rerank(self.collection.embeddings, query[0], rows[valid], n)
        if scanned:
            return self._best_of_big_groups(query[0], scores, rows, groups, start, stop, blocked)
        return scores, rows

    def _search_setup(self, fetch: int, start: int, stop: int, blocked: np.ndarray,
                      scan: np.ndarray | None) -> tuple[Any, list[Any], bool]:
        """FAISS parameters for one search, the objects they point into (keep them alive), and
        whether it scans one row of each big group (`scan`)."""
        import faiss

        keep: list[Any] = []   # SWIG selectors hold raw pointers to each other: keep them alive
        selector = None
        if scan is not None:
            selector = faiss.IDSelectorBitmap(self.collection.rows, faiss.swig_ptr(scan))
            keep += [scan, selector]
        if start > 0 or stop < self.collection.rows:
            # Rows were added in order, so every IVF list holds ascending ids: with assume_sorted
            # FAISS binary-searches each list for the range instead of testing every entry.
            in_range = faiss.IDSelectorRange(start, stop, True)
            keep.append(in_range)
            selector = in_range if selector is None else faiss.IDSelectorAnd(selector, in_range)
            keep.append(selector)
        if blocked.size:
            blocked = np.ascontiguousarray(blocked, dtype=np.int64)
            keep.append(blocked)
            batch = faiss.IDSelectorBatch(blocked)
            not_blocked = faiss.IDSelectorNot(batch)
            keep += [batch, not_blocked]
            selector = not_blocked if selector is None else faiss.IDSelectorAnd(selector, not_blocked)
            keep.append(selector)
        params = self._search_params(selector, share=(stop - start) / max(self.collection.rows, 1), fetch=fetch)
        keep.append(params)
        return params, keep, scan is not None

    def _best_of_big_groups(self, query: np.ndarray, scores: np.ndarray, rows: np.ndarray, groups: DuplicateGroups,
                            start: int, stop: int, blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hit of a big group (scanned as its first eligible row) replaced by the group's best
        eligible row and its exact score, so the group shows its best copy and ranks by it.

        Only hits already among the n kept: scoring a group reads every copy (0.3 ms for 500), and a
        group just below the cut can still rise in a deeper tier. The collapsed answer's recall
        stays within 0.004 of scanning every copy (BENCHMARKS.md, section 10).
        """
        big = np.flatnonzero(groups.is_big(rows))
        if not big.size:
            return scores, rows
        scores, rows = scores.copy(), rows.copy()
        for i in big.tolist():
            members = groups.eligible_members(int(groups.group_of[rows[i]]), start, stop, blocked)
            member_scores = row_inner_products(self.collection.embeddings, members, query)
            best = int(np.argmax(member_scores))     # the first of equal scores: the smallest row
            scores[i], rows[i] = member_scores[best], members[best]
        order = np.lexsort((rows, -scores))
        return scores[order], rows[order]

    def _search_params(self, selector: Any, share: float = 1.0, fetch: int = 0) -> Any:
        """FAISS search parameters carrying the manifest's nprobe / efSearch (index_params)."""
        return search_parameters(self.collection.index, self.collection.manifest.index.params, fetch,
                                 selector=selector, share=share)

    def _exact_search(self, query: np.ndarray, n: int, start: int, stop: int,
                      blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top n over rows [start, stop) minus blocked, from the memory-mapped embeddings."""
        best_scores = np.empty(0, np.float32)
        best_rows = np.empty(0, np.int64)
        for lo in range(start, stop, EXACT_BLOCK_ROWS):
            hi = min(lo + EXACT_BLOCK_ROWS, stop)
            scores = inner_products(self.collection.embeddings[lo:hi], query)
            rows = np.arange(lo, hi, dtype=np.int64)
            inside = blocked[(blocked >= lo) & (blocked < hi)]
            if inside.size:
                keep = np.ones(hi - lo, dtype=bool)
                keep[inside - lo] = False
                scores, rows = scores[keep], rows[keep]
            best_scores = np.concatenate([best_scores, scores])
            best_rows = np.concatenate([best_rows, rows])
            if best_scores.size > n:
                top = np.argpartition(-best_scores, n - 1)[:n]
                best_scores, best_rows = best_scores[top], best_rows[top]
        order = np.lexsort((best_rows, -best_scores))[:n]   # by score, ties by row: stable pages
        return best_scores[order], best_rows[order]

    def _hits(self, scores: np.ndarray, rows: np.ndarray, first_rank: int, sizes: list[int] | None = None,
              scale: Any = None) -> list[Hit]:
        metadata = self.collection.metadata_rows(rows.tolist())
        sizes = sizes if sizes is not None else [1] * len(metadata)
        return [_hit(first_rank + i, int(row), float(score), meta, group_size=size, weak=is_weak(float(score), scale))
                for i, (row, score, meta, size) in enumerate(zip(rows, scores, metadata, sizes))]


def _hit(rank: int, row: int, score: float, meta: dict[str, Any], group_size: int = 1,
         weak: bool | None = None) -> Hit:
    def opt(name: str, kind: type) -> Any:
        value = meta.get(name)
        if value is None:
            return None
        try:
            return kind(value)
        except (TypeError, ValueError):
            return None

    return Hit(rank=rank, row=row, score=score, file_name=str(meta.get("file_name") or ""),
               title=opt("title", str), year=opt("year", int), book_id=opt("book_id", str),
               volume=opt("volume", int), page=opt("page", int), image_number=opt("image_number", int),
               group_size=group_size, weak=weak)


def combine_query_vectors(text_vector: np.ndarray | None, image_vector: np.ndarray | None) -> np.ndarray:
    """One unit query vector from a prompt's and/or an image's: their normalised sum.

    Public because the bot encodes the two apart (each passes its own concept check) and must
    combine them exactly as encode_query does.
    """
    parts = [np.asarray(v, dtype=np.float32) for v in (text_vector, image_vector) if v is not None]
    if not parts:
        raise QueryError("Give a prompt, an image, or both.")
    return _unit(np.sum(parts, axis=0), "The prompt and the image cancel each other out; try one alone.")


def check_page(k: int, offset: int = 0, year_from: int | None = None, year_to: int | None = None) -> None:
    """QueryError unless 1 <= k <= MAX_K, 0 <= offset <= MAX_OFFSET and year_from <= year_to."""
    check_year_range(year_from, year_to)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise QueryError(f"The number of results must be between 1 and {MAX_K}.")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or not 0 <= offset <= MAX_OFFSET:
        raise QueryError(f"The offset must be between 0 and {MAX_OFFSET}.")


def _unit(vector: np.ndarray, zero_message: str) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        raise QueryError(zero_message)
    return vector / norm


def _check_model(collection: Collection, encoder: Any) -> None:
    """Refuse a model other than the collection's: its vectors live in another space."""
    manifest = collection.manifest
    used = getattr(encoder, "model_name", "the loaded model")
    probe = np.asarray(encoder.encode_text([MODEL_PROBE_TEXT])[0], dtype=np.float32)
    if probe.shape[0] != manifest.embedding_dim:
        raise ModelMismatchError(f"The collection was embedded with {manifest.model} ({manifest.embedding_dim} "
                                 f"dimensions) but the model in use, {used}, gives {probe.shape[0]}.")
    stored = np.asarray(manifest.model_probe, dtype=np.float32)
    cosine = float(probe @ stored / ((np.linalg.norm(probe) * np.linalg.norm(stored)) or 1.0))
    if not cosine >= MODEL_PROBE_MIN_COSINE:
        raise ModelMismatchError(f"The collection was embedded with {manifest.model} but the model in use is "
                                 f"{used}, which encodes differently (probe cosine {cosine:.2f}); "
                                 "searching would give meaningless results.")

