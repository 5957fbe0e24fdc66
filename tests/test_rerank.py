"""Exact re-ranking of approximate candidates (shared by search and the build's recall figure)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from search_core.rerank import candidate_count, is_exact, rerank


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_orders_candidates_by_exact_score_and_ignores_missing():
    """Candidates come back in true score order; FAISS's -1 padding is dropped."""
    rng = np.random.default_rng(0)
    emb = _unit(rng.standard_normal((50, 8)))
    q = emb[7]
    cand = np.array([3, -1, 7, 20, 11, -1])
    scores, rows = rerank(emb, q, cand, 3)
    expected = sorted([3, 7, 20, 11], key=lambda r: -float(emb[r] @ q))[:3]
    assert rows.tolist() == expected and rows[0] == 7
    np.testing.assert_allclose(scores, emb[rows] @ q, rtol=1e-6)


def test_ties_are_broken_by_row_so_pages_are_stable():
    """Equal scores order by row number, whatever order the index gave them in."""
    emb = np.tile(_unit(np.ones((1, 4))), (6, 1))
    _, rows = rerank(emb, emb[0], np.array([5, 2, 4, 0]), 4)
    assert rows.tolist() == [0, 2, 4, 5]


def test_reads_from_a_memory_map(tmp_path):
    """Works on np.load(mmap_mode='r') as the collection stores it, with duplicate candidates."""
    rng = np.random.default_rng(1)
    path = tmp_path / "e.npy"
    np.save(path, _unit(rng.standard_normal((100, 16))))
    emb = np.load(path, mmap_mode="r")
    _, rows = rerank(emb, np.asarray(emb[42]), np.array([42, 42, 10, 99]), 2)
    assert rows[0] == 42 and len(set(rows.tolist())) == 2


def test_fetches_more_candidates_than_hits():
    """There is always room to re-order: at least twice k, and at least k + 10."""
    assert candidate_count(1) == 11 and candidate_count(10) == 20 and candidate_count(50) == 100


@pytest.mark.parametrize("spec, exact", [("Flat", True), ("IVF4,Flat", False), ("HNSW8", False),
                                         ("IVF4,SQ8", False)])
def test_is_exact_only_for_flat_indexes(spec, exact):
    """Only a Flat index scores every row exactly; IVF and HNSW hits need the re-rank."""
    index = faiss.index_factory(8, spec, faiss.METRIC_INNER_PRODUCT)
    assert is_exact(index) is exact


def test_inner_products_match_numpy_on_any_rows():
    """The single-threaded product equals numpy's, for a memory map slice, a fancy-indexed
    selection and no rows at all."""
    from search_core.rerank import inner_products

    rng = np.random.default_rng(3)
    emb = _unit(rng.standard_normal((300, 24)))
    q = emb[5]
    np.testing.assert_allclose(inner_products(emb[10:250], q), emb[10:250] @ q, atol=1e-6)
    np.testing.assert_allclose(inner_products(emb[[7, 3, 299]], q), emb[[7, 3, 299]] @ q, atol=1e-6)
    assert inner_products(emb[:0], q).shape == (0,)


def test_row_products_read_rows_in_place_and_match_numpy(tmp_path):
    """Scoring rows by index, from a read-only memory map, an ndarray in any order with repeats, a
    non-contiguous view (copied first) and no rows at all, equals numpy's product."""
    from search_core.rerank import row_inner_products

    rng = np.random.default_rng(4)
    emb = _unit(rng.standard_normal((300, 24)))
    np.save(tmp_path / "e.npy", emb)
    mapped = np.asarray(np.load(tmp_path / "e.npy", mmap_mode="r"))
    q = emb[9]
    rows = np.array([299, 0, 17, 17, 150])
    for base in (mapped, emb, emb[:, :24][::1], np.asfortranarray(emb)):
        np.testing.assert_allclose(row_inner_products(base, rows, q), emb[rows] @ q, atol=1e-6)
    assert row_inner_products(mapped, np.empty(0, np.int64), q).shape == (0,)


def test_the_tuned_depth_serves_the_first_ten_hits_and_two_per_hit_after():
    """A tuned depth (per 10) is what the build measured recall@10 with; deeper hits get the
    default two candidates each, so a first tier of 30 does not re-rank 3x the tuned depth."""
    assert candidate_count(10, 150) == 150 and candidate_count(11, 150) == 150
    assert candidate_count(30, 150) == 150 and candidate_count(120, 150) == 240
    assert candidate_count(30) == 60 and candidate_count(30, 20) == 60
