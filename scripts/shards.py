"""The embed stage's output: shard files in a work folder, the one thing every engine writes.

An engine (scripts/engines) embeds `EmbedJob.rows` (source row numbers) in shards of
``shard_size`` consecutive entries; shard s holds rows[s*size:(s+1)*size] that embedded, their
vectors, and those that did not with the reason. A shard file appears whole or not at all (written
beside, fsynced, renamed), so after a crash the shards present are complete and only the others
are embedded again. The work folder's state.json holds the key of the job its shards belong to;
any other key empties it (`open_work`).

Shards name source rows, not positions in the collection: the year order and the rows an
incremental build reuses are applied later (scripts/gather.py), so an engine needs to know
neither.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STATE = "state.json"


@dataclass(frozen=True)
class Shard:
    """One shard file's contents."""

    rows: np.ndarray             # int64 source rows embedded, ascending within the shard's slice
    vectors: np.ndarray          # float32 [len(rows), dim]
    skipped_rows: np.ndarray     # int64 source rows not embedded
    skipped_reasons: list[str]   # why, one per skipped row


def n_shards(n: int, shard_size: int) -> int:
    return (n + shard_size - 1) // shard_size


def shard_path(work: Path, shard: int) -> Path:
    return Path(work) / f"shard_{shard:05d}.npz"


def shard_slice(shard: int, n: int, shard_size: int) -> slice:
    """Which entries of the job's rows shard `shard` covers."""
    return slice(shard * shard_size, min(n, (shard + 1) * shard_size))


def open_work(work: Path, key: str, *, rows: int, shard_size: int) -> None:
    """Make `work` hold only shards of `key`: a work folder of any other key is emptied first.

    One work folder per OUT bounds the disk a series of interrupted builds can fill (about 2 GB
    per million rows at 512-d) to one build's worth.
    """
    state = Path(work) / STATE
    try:
        same = json.loads(state.read_text(encoding="utf-8"))["key"] == key
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if same:
        return
    if Path(work).exists():
        log.info("discarding the shards in %s: another source, plan or settings wrote them", work)
        shutil.rmtree(work)
    Path(work).mkdir(parents=True)
    atomic_write(state, json.dumps({"key": key, "rows": rows, "shard_size": shard_size}).encode())


def missing_shards(work: Path, n: int, shard_size: int) -> list[int]:
    """Shards of a job of n rows not yet written, ascending."""
    return [s for s in range(n_shards(n, shard_size)) if not shard_path(work, s).exists()]


def write_shard(path: Path, rows: Sequence[int], vectors: np.ndarray, skipped: Sequence[tuple[int, str]],
                dim: int) -> None:
    """Write one shard whole: to a temporary name, fsynced, then renamed into place."""
    tmp = Path(path).with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            rows=np.asarray(rows, dtype=np.int64),
            vectors=(np.ascontiguousarray(vectors, dtype=np.float32) if len(rows)
                     else np.zeros((0, dim), np.float32)),
            skipped_rows=np.asarray([r for r, _ in skipped], dtype=np.int64),
            skipped_reasons=np.asarray([reason for _, reason in skipped], dtype=np.str_),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_shard(path: Path, *, vectors: bool = True) -> Shard:
    """A shard's arrays; with vectors=False the vectors are not read (np.load is lazy per array)."""
    with np.load(path) as data:
        return Shard(rows=data["rows"], vectors=data["vectors"] if vectors else np.zeros((0, 0), np.float32),
                     skipped_rows=data["skipped_rows"], skipped_reasons=data["skipped_reasons"].tolist())


def atomic_write(path: Path, data: bytes) -> None:
    tmp = Path(path).with_suffix(Path(path).suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
