"""scripts/shards.py and scripts/gather.py: shard files, and embeddings.npy gathered from shards and
reused rows without holding the vectors twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scripts.gather import gather
from scripts.shards import open_work, read_shard, shard_path, write_shard
from search_core.errors import BuildError

DIM = 4


def vec(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_shard_round_trip_and_lazy_vectors(tmp_path: Path):
    v = vec(0, 2)
    write_shard(tmp_path / "s.npz", [5, 9], v, [(7, "file not found")], DIM)
    shard = read_shard(tmp_path / "s.npz")
    assert shard.rows.tolist() == [5, 9] and np.array_equal(shard.vectors, v)
    assert shard.skipped_rows.tolist() == [7] and shard.skipped_reasons == ["file not found"]
    assert read_shard(tmp_path / "s.npz", vectors=False).vectors.size == 0
    assert not list(tmp_path.glob("*.tmp"))


def test_open_work_keeps_shards_of_the_same_key_only(tmp_path: Path):
    work = tmp_path / "w"
    open_work(work, "k1", rows=4, shard_size=2)
    write_shard(shard_path(work, 0), [0], vec(0, 1), [], DIM)
    open_work(work, "k1", rows=4, shard_size=2)
    assert shard_path(work, 0).exists()
    open_work(work, "k2", rows=4, shard_size=2)
    assert not shard_path(work, 0).exists()


def test_gather_reuses_old_rows_byte_for_byte_and_places_new_ones(tmp_path: Path):
    """Source rows 0..5 in collection order [3, 0, 5, 1, 4, 2]: 0 and 4 reuse old rows 2 and 0,
    1, 2, 5 were embedded (shard size 2), 3 was skipped."""
    old = vec(1, 3)
    work = tmp_path / "w"
    open_work(work, "k", rows=4, shard_size=2)
    new = vec(2, 3)
    job_rows = np.array([1, 2, 3, 5])
    write_shard(shard_path(work, 0), [1, 2], new[:2], [], DIM)
    write_shard(shard_path(work, 1), [5], new[2:], [(3, "truncated")], DIM)
    reuse = np.array([2, -1, -1, -1, 0, -1])
    g = gather(tmp_path / "emb.npy", order=np.array([3, 0, 5, 1, 4, 2]), reuse=reuse, old_vectors=old,
               work=work, job_rows=len(job_rows), shard_size=2, dim=DIM)
    assert g.rows.tolist() == [0, 5, 1, 4, 2]
    assert g.skipped == [(3, "truncated")] and sorted(g.embedded.tolist()) == [1, 2, 5]
    written = np.load(tmp_path / "emb.npy")
    assert written.dtype == np.float32 and written.shape == (5, DIM)
    assert written[0].tobytes() == old[2].tobytes() and written[3].tobytes() == old[0].tobytes()
    assert np.array_equal(written[[1, 2, 4]], new[[2, 0, 1]])


def test_nothing_embedded_and_nothing_reused_is_an_error(tmp_path: Path):
    work = tmp_path / "w"
    open_work(work, "k", rows=1, shard_size=2)
    write_shard(shard_path(work, 0), [], np.zeros((0, DIM), np.float32), [(0, "empty file")], DIM)
    with pytest.raises(BuildError):
        gather(tmp_path / "emb.npy", order=np.array([0]), reuse=np.array([-1]), old_vectors=None,
               work=work, job_rows=1, shard_size=2, dim=DIM)
