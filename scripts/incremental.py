"""Which source images an incremental build embeds, and which rows of the old collection it reuses.

The old collection's files.arrow (search_core/provenance.py) and the source's identities now
(scripts/identity.py) are joined on ``key``. A source image whose key is new is *added*; one
whose key is known is *kept* (its old vector reused byte for byte) when it is the same image, and
*changed* (embedded again) otherwise; old rows no source image matches are *removed*. "The same"
means, first match wins:
1. both digests known: equal digests;
2. size and modification time both known: equal (rclip's test; no bytes read);
3. same size, another modification time, and the old row's digest known: the file is read once
   and its digest compared (a copy that did not keep times, ``cp`` without ``-p``);
4. nothing known on either side (a URL): the same address is the same image;
otherwise changed. The join is Arrow's (``pc.index_in``): no Python object per row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ADDED, CHANGED, KEPT = 0, 1, 2


@dataclass(frozen=True)
class Plan:
    """Per source row (in the source's row order): the old row whose vector is reused, or -1."""

    reuse: np.ndarray          # int64 [source rows]
    status: np.ndarray         # int8 [source rows]: ADDED, CHANGED or KEPT
    old_rows: int              # rows of the collection being replaced

    @property
    def embed(self) -> np.ndarray:
        """Source rows to embed (added or changed), ascending."""
        return np.flatnonzero(self.reuse < 0)

    def counts(self, embedded_rows: np.ndarray) -> dict[str, int]:
        """added, changed, removed, kept once embedding is over; `embedded_rows` are the source rows
        that embedded (a changed file that no longer reads is removed, not changed)."""
        done = np.zeros(len(self.reuse), bool)
        done[np.asarray(embedded_rows, dtype=np.int64)] = True
        kept = int((self.status == KEPT).sum())
        changed = int((done & (self.status == CHANGED)).sum())
        return {"added": int((done & (self.status == ADDED)).sum()), "changed": changed,
                "removed": self.old_rows - kept - changed, "kept": kept}


def from_scratch(source_rows: int) -> Plan:
    """Every source row embedded; nothing reused (a first build, --full, or no usable old collection)."""
    return Plan(reuse=np.full(source_rows, -1, np.int64), status=np.full(source_rows, ADDED, np.int8), old_rows=0)


def plan(new: pa.Table, old: pa.Table, read_digest: Callable[[int], bytes | None]) -> Plan:
    """Match `new` (identities of the source's rows) against `old` (the collection's files.arrow).

    read_digest(source_row) reads a local file now and returns its digest (None when unreadable);
    asked only for rule 3.
    """
    at = pc.index_in(new.column("key"), value_set=old.column("key").combine_chunks())
    known = at.is_valid().to_numpy(zero_copy_only=False)
    old_row = at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    status = np.where(known, CHANGED, ADDED).astype(np.int8)
    rows = np.flatnonzero(known)
    if rows.size:
        old_at = old_row[rows]
        same = _same(new, old, rows, old_at, read_digest)
        status[rows[same]] = KEPT
    reuse = np.where(status == KEPT, old_row, -1).astype(np.int64)
    return Plan(reuse=reuse, status=status, old_rows=len(old))


def _column(table: pa.Table, name: str, rows: np.ndarray) -> pa.Array:
    return table.column(name).take(pa.array(rows)).combine_chunks()


def _same(new: pa.Table, old: pa.Table, rows: np.ndarray, old_at: np.ndarray,
          read_digest: Callable[[int], bytes | None]) -> np.ndarray:
    """For new rows `rows` matched to old rows `old_at`: is it the same image (module docstring)?"""
    def values(table: pa.Table, name: str, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        column = _column(table, name, at)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        return column.fill_null(0).to_numpy(zero_copy_only=False), valid

    new_digest, old_digest = _column(new, "digest", rows), _column(old, "digest", old_at)
    digests_known = (new_digest.is_valid().to_numpy(zero_copy_only=False)
                     & old_digest.is_valid().to_numpy(zero_copy_only=False))
    digests_equal = pc.fill_null(pc.equal(new_digest, old_digest), False).to_numpy(zero_copy_only=False)
    new_size, new_size_ok = values(new, "size", rows)
    old_size, old_size_ok = values(old, "size", old_at)
    new_time, new_time_ok = values(new, "mtime_ns", rows)
    old_time, old_time_ok = values(old, "mtime_ns", old_at)
    stat_known = new_size_ok & old_size_ok & new_time_ok & old_time_ok
    same_size = new_size_ok & old_size_ok & (new_size == old_size)
    nothing_known = ~(new_size_ok | old_size_ok | new_time_ok | old_time_ok
                      | new_digest.is_valid().to_numpy(zero_copy_only=False)
                      | old_digest.is_valid().to_numpy(zero_copy_only=False))

    same = np.where(digests_known, digests_equal, stat_known & same_size & (new_time == old_time))
    same |= ~digests_known & nothing_known
    # Rule 3: touched or copied without its time; read only these files.
    recheck = np.flatnonzero(~digests_known & same_size & ~same
                             & old_digest.is_valid().to_numpy(zero_copy_only=False))
    if recheck.size:
        old_values = old_digest.take(pa.array(recheck)).to_pylist()
        for i, expected in zip(recheck.tolist(), old_values):
            same[i] = read_digest(int(rows[i])) == expected
    return same
