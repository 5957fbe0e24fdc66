"""The driver's side of the parts: put them back together as the build's shards.

Parts arrive in whatever order Ray's workers finish them; the build's shards are fixed slices of
the job's rows (scripts/shards.py). The assembler holds each shard's rows as parts bring them and
hands a shard over the moment its last row is in, so what it holds is bounded by the parts in
flight (Ray Data reads the rows in about job order), not by the job. Rows it is given twice (a
part written again by a retried batch, or kept from an interrupted run) count once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from scripts.ray_engine.parts import KeyLookup, Part

# shard, job indices embedded (ascending), their vectors, (job index, reason) not embedded
ShardWriter = Callable[[int, np.ndarray, np.ndarray, list[tuple[int, str]]], None]


@dataclass
class _Pending:
    size: int
    indices: list[np.ndarray] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    filled: int = 0


class ShardAssembler:
    """Collects parts into shards of `shard_size` job entries (entry i has source key keys[i])."""

    def __init__(self, keys: np.ndarray, shard_size: int, shards: Iterable[int], write: ShardWriter,
                 dim: int) -> None:
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.shard_size, self.write, self.dim = shard_size, write, dim
        self._lookup = KeyLookup(self.keys)
        n = len(self.keys)
        self._pending = {s: _Pending(size=min(n, (s + 1) * shard_size) - s * shard_size) for s in shards}
        self._have = np.ones(n, dtype=bool)
        for s in self._pending:
            self._have[s * shard_size:min(n, (s + 1) * shard_size)] = False
        self.embedded = 0          # entries embedded among the parts added
        self.written = 0           # shards handed to `write`

    @property
    def done(self) -> bool:
        return not self._pending

    def missing(self) -> np.ndarray:
        """Job indices of pending shards that no part has brought yet."""
        return np.flatnonzero(~self._have)

    def add(self, part: Part) -> int:
        """Take a part's rows; returns how many were new."""
        new = 0
        for is_embedded, keys in ((True, part.keys), (False, part.skipped_keys)):
            at = self._lookup(keys)
            fresh = np.flatnonzero(at >= 0)
            fresh = fresh[~self._have[at[fresh]]]
            if not len(fresh):
                continue
            indices = at[fresh]
            self._have[indices] = True
            new += len(indices)
            for shard in np.unique(indices // self.shard_size).tolist():
                chosen = fresh[indices // self.shard_size == shard]
                pending = self._pending[shard]
                if is_embedded:
                    pending.indices.append(at[chosen])
                    pending.vectors.append(np.asarray(part.vectors)[chosen])
                    self.embedded += len(chosen)
                else:
                    pending.skipped.extend((int(at[i]), part.skipped_reasons[i]) for i in chosen)
                pending.filled += len(chosen)
                if pending.filled == pending.size:
                    self._finish(shard)
        return new

    def skip_missing(self, reason: str) -> None:
        """Close every pending shard, listing the rows no part brought as skipped for `reason`."""
        for index in self.missing().tolist():
            self._have[index] = True
            shard = index // self.shard_size
            pending = self._pending[shard]
            pending.skipped.append((index, reason))
            pending.filled += 1
            if pending.filled == pending.size:
                self._finish(shard)

    def _finish(self, shard: int) -> None:
        pending = self._pending.pop(shard)
        if pending.indices:
            indices = np.concatenate(pending.indices)
            vectors = np.concatenate(pending.vectors)
            order = np.argsort(indices, kind="stable")
            indices, vectors = indices[order], vectors[order]
        else:
            indices, vectors = np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        self.write(shard, indices.astype(np.int64), vectors.astype(np.float32, copy=False),
                   sorted(pending.skipped))
        self.written += 1
