"""Near-duplicate collapse: one hit per group of near-identical images, and the group behind a hit.

The British Library books print the same woodcut ornaments hundreds of times, so without this a
page of results can be nine copies of one picture. The build stores each row's group (layout.GROUPS,
made by scripts/grouping.py); search ranks groups by their best row and returns that row, carrying
how many eligible rows (year range, hidden rows) its group holds.

Paging counts groups. Each search round leaves out every row of the groups already found (a FAISS
id selector, like hidden rows), so a round's rows are all of new groups and the first row of each
is that group's best. The groups found, in that order, are therefore a prefix of the full ranking,
whatever the group sizes: page p is groups offset+1..offset+k of it, pages are disjoint and
together complete. The first round fetches FIRST_ROUND_FACTOR times the groups wanted, so a page
with a few duplicates costs one index search, not two.

A big group (SCAN_ONE_FROM rows or more: an ornament reprinted in dozens of books) would fill
that first round with its copies and send every query near it to a second and third index
search. So an approximate index scans one row of each big group, its first eligible row
(`scan_bitmap`), and a group among the hits is then shown by its best eligible row, scored
exactly from the embeddings (search_core/search.py). At 1M hard rows a query inside a group of
10+ copies then costs 1.22x a plain search instead of 1.66x, held-out text queries 1.15x instead
of 1.04x, and the collapsed answer keeps its recall against the exact one (0.969 against 0.972
for text queries, 0.967 against 0.971 inside groups; every group shown by its exact best row).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np

# Rows fetched per wanted group in the first round. FAISS's cost barely depends on k (the lists
# scanned or graph nodes visited are set by nprobe / efSearch; at 100k rows, IVF1264,SQ8 nprobe 64:
# 0.51 ms for 20 rows, 0.54-0.63 ms for 40, after re-ranking), while a second round costs a whole
# search: 3x covers pages whose groups hold up to twice a page of extra copies.
FIRST_ROUND_FACTOR = 3
# A later round fetches at least this many times the groups still missing.
LATER_ROUND_FACTOR = 4
# Groups of at least this many rows are scanned as one row by an approximate index. Smaller
# groups cost nothing extra: a first round of 3 x 10 rows has room for a few copies of each hit.
SCAN_ONE_FROM = 8

# (n, excluded rows sorted) -> (scores, rows) of the n best eligible rows not excluded, best first;
# fewer only when fewer rows are eligible.
RowSearch = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def check_group_ids(group_of: np.ndarray, rows: int) -> str | None:
    """What is wrong with a group array for `rows` rows, or None when it is well formed.

    Well formed: one id per row, and each id is the smallest row of its group (so a row that is
    its own id heads its group, and an id never points past the row that carries it).
    """
    if group_of.shape != (rows,):
        return f"has shape {group_of.shape}; expected ({rows},)"
    if not np.issubdtype(group_of.dtype, np.integer):
        return f"holds {group_of.dtype}, not integers"
    if rows == 0:
        return None
    ids = np.asarray(group_of, dtype=np.int64)
    if ids.min() < 0 or np.any(ids > np.arange(rows)):
        return "has a group id that is not the smallest row of its group"
    if np.any(ids[ids] != ids):
        return "has a group id whose row belongs to another group"
    return None


class DuplicateGroups:
    """Each row's group id (the group's smallest row), with lookups built on first use.

    The derived arrays are computed once, lazily (a race only computes the same values twice), so
    a collection opens in the same moment as before: at 1M rows they take about 0.1 s together.
    """

    def __init__(self, group_of: np.ndarray) -> None:
        # A plain view of the memory map: numpy operations on np.memmap pay a subclass toll each.
        self.group_of = np.asarray(group_of)

    @property
    def rows(self) -> int:
        return int(self.group_of.shape[0])

    @cached_property
    def sizes(self) -> np.ndarray:
        """Rows per group, indexed by group id (0 for a row that is not a group id)."""
        return np.bincount(np.asarray(self.group_of, dtype=np.int64), minlength=self.rows).astype(np.int32)

    @cached_property
    def groups(self) -> int:
        return int(np.count_nonzero(self.sizes))

    @cached_property
    def has_duplicates(self) -> bool:
        return self.groups < self.rows

    @cached_property
    def _members(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows of groups of 2+ ordered by group then row, offset of each group id into them)."""
        group_of = np.asarray(self.group_of, dtype=np.int64)
        multi = np.flatnonzero(self.sizes[group_of] > 1)
        order = multi[np.argsort(group_of[multi], kind="stable")]
        counts = np.where(self.sizes > 1, self.sizes, 0).astype(np.int64)
        starts = np.cumsum(counts) - counts
        return order, starts

    @cached_property
    def _previous(self) -> np.ndarray:
        """For each row, the previous row of its group, or -1 (for counting groups in a range)."""
        order, _ = self._members
        previous = np.full(self.rows, -1, dtype=np.int64)
        if order.size > 1:
            same = self.group_of[order[1:]] == self.group_of[order[:-1]]
            previous[order[1:][same]] = order[:-1][same]
        return previous

    @cached_property
    def _big(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows of groups of SCAN_ONE_FROM+ rows, ordered by group then row; where each group starts)."""
        order, _ = self._members
        if order.size == 0:
            return order, order
        in_big = self.sizes[self.group_of[order]] >= SCAN_ONE_FROM
        rows = order[in_big]
        new_group = np.ones(rows.size, dtype=bool)
        new_group[1:] = self.group_of[rows[1:]] != self.group_of[rows[:-1]]
        return rows, np.flatnonzero(new_group)

    @cached_property
    def has_big_groups(self) -> bool:
        return bool(self._big[0].size)

    @cached_property
    def _without_big(self) -> np.ndarray:
        """FAISS bitmap (one bit a row, little-endian bit order) of every row outside big groups."""
        keep = np.ones(self.rows, dtype=bool)
        keep[self._big[0]] = False
        return np.packbits(keep, bitorder="little")

    def scan_bitmap(self, start: int, stop: int, blocked: np.ndarray) -> np.ndarray | None:
        """The rows a collapsing approximate search scans, as a FAISS bitmap: every row except the
        copies of each big group after its first row inside [start, stop) and not in `blocked`
        (sorted). None when there are no big groups. Rows outside the range or blocked are left to
        the search's other selectors."""
        if not self.has_big_groups:
            return None
        rows, starts = self._big
        eligible = (rows >= start) & (rows < stop)
        if blocked.size:
            eligible &= ~_contains(blocked, rows)
        positions = np.flatnonzero(eligible)
        group_index = np.searchsorted(starts, positions, side="right") - 1
        _, first = np.unique(group_index, return_index=True)
        return _with_rows(self._without_big, rows[positions[first]])

    def is_big(self, rows: np.ndarray) -> np.ndarray:
        """Whether each row's group is scanned as one row (SCAN_ONE_FROM+ rows)."""
        return self.sizes[np.asarray(self.group_of[rows], dtype=np.int64)] >= SCAN_ONE_FROM

    def members(self, group: int) -> np.ndarray:
        """Rows of a group, ascending."""
        size = int(self.sizes[group])
        if size <= 1:
            return np.array([group], dtype=np.int64)
        order, starts = self._members
        return order[starts[group]:starts[group] + size]

    def eligible_members(self, group: int, start: int, stop: int, blocked: np.ndarray) -> np.ndarray:
        """Rows of a group inside [start, stop) and not in `blocked` (sorted), ascending."""
        rows = self.members(group)
        rows = rows[(rows >= start) & (rows < stop)]
        return rows[~_contains(blocked, rows)] if blocked.size else rows

    def eligible_sizes(self, rows: np.ndarray, start: int, stop: int, blocked: np.ndarray) -> list[int]:
        """For each row, how many eligible rows its group holds (the row itself included)."""
        groups = np.asarray(self.group_of[rows], dtype=np.int64)
        return [1 if self.sizes[g] <= 1 else int(self.eligible_members(g, start, stop, blocked).size)
                for g in groups.tolist()]

    def count(self, start: int, stop: int, blocked: np.ndarray) -> int:
        """Groups with at least one row inside [start, stop) and not in `blocked` (sorted, in range)."""
        if start == 0 and stop == self.rows:
            total = self.groups
        else:   # a row counts for its group when no earlier row of the group is in the range
            total = int(np.count_nonzero(self._previous[start:stop] < start))
        if blocked.size:
            groups, blocked_per_group = np.unique(np.asarray(self.group_of[blocked], dtype=np.int64),
                                                  return_counts=True)
            for group, n_blocked in zip(groups.tolist(), blocked_per_group.tolist()):
                rows = self.members(group)
                if int(np.count_nonzero((rows >= start) & (rows < stop))) == n_blocked:
                    total -= 1
        return total

    def rows_of_groups_of(self, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Every row inside [start, stop) in the groups of `rows`, sorted."""
        groups = np.unique(np.asarray(self.group_of[rows], dtype=np.int64))
        parts = [self.members(g) for g in groups.tolist()]
        out = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return np.sort(out[(out >= start) & (out < stop)])


def first_of_each_group(rows: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Positions in `rows` (ranked) of the first row of each group, in rank order."""
    _, first = np.unique(np.asarray(group_of[rows], dtype=np.int64), return_index=True)
    return np.sort(first)


def top_groups(search: RowSearch, wanted: int, groups: DuplicateGroups, start: int, stop: int,
               blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows): the best eligible row of each of the `wanted` best groups, best first.

    Fewer when fewer groups are eligible. `blocked` (sorted) are rows never to return.
    """
    scores_found: list[np.ndarray] = []
    rows_found: list[np.ndarray] = []
    found = 0
    excluded = blocked
    fetch = wanted * FIRST_ROUND_FACTOR
    while found < wanted:
        n = min(fetch, (stop - start) - excluded.size)
        if n <= 0:
            break
        scores, rows = search(n, excluded)
        if rows.size == 0:
            break
        first = first_of_each_group(rows, groups.group_of)[:wanted - found]
        scores_found.append(scores[first])
        rows_found.append(rows[first])
        found += first.size
        if rows.size < n or found >= wanted:
            break   # enough groups, or every eligible row has been seen
        excluded = np.union1d(excluded, groups.rows_of_groups_of(rows[first], start, stop))
        fetch = (wanted - found) * LATER_ROUND_FACTOR
    if not rows_found:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    return np.concatenate(scores_found), np.concatenate(rows_found)


def _with_rows(bitmap: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A copy of a little-endian FAISS bitmap with `rows` set."""
    out = bitmap.copy()
    np.bitwise_or.at(out, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
    return out


def _contains(sorted_values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each of `items` is in `sorted_values` (sorted ascending)."""
    i = np.searchsorted(sorted_values, items)
    inside = i < sorted_values.size
    hit = np.zeros(items.shape, dtype=bool)
    hit[inside] = sorted_values[i[inside]] == items[inside]
    return hit
