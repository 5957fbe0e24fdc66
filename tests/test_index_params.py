"""search_core.index_params: the FAISS parameters one search uses, shared by search and the build."""

from __future__ import annotations

import math

import faiss
import numpy as np
import pytest

from search_core.index_params import FILTER_PROBE_EXPONENT, MIN_FILTERED_NPROBE, search_parameters


def index(spec: str, n: int = 6000, dim: int = 16) -> faiss.Index:
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    built = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    built.train(x)
    built.add(x)
    return built


@pytest.fixture(scope="module")
def ivf() -> faiss.Index:
    return index("IVF128,Flat")


@pytest.mark.parametrize("nprobe, share", [(1, 0.5), (8, 0.1), (40, 0.1), (40, 0.3), (100, 0.05)])
def test_a_year_range_probes_more_lists_as_it_narrows(ivf, nprobe, share):
    """max(nprobe, floor) / share**exponent lists, never more than the index has; none scaled unfiltered."""
    params = search_parameters(ivf, {"nprobe": nprobe}, 20, share=share)
    expected = math.ceil(max(nprobe, MIN_FILTERED_NPROBE) / share ** FILTER_PROBE_EXPONENT)
    assert params.nprobe == min(128, expected)
    assert search_parameters(ivf, {"nprobe": nprobe}, 20).nprobe == nprobe


def test_hnsw_search_is_at_least_as_wide_as_the_candidates_fetched():
    """efSearch is raised to the fetch size: a deeper page needs that many real candidates."""
    hnsw = index("HNSW8", n=500)
    assert search_parameters(hnsw, {"efSearch": 64}, 20).efSearch == 64
    assert search_parameters(hnsw, {"efSearch": 64}, 300).efSearch == 300


def test_hnsw_quantizer_searches_at_least_nprobe_wide():
    """An IVF's HNSW quantizer gets efSearch >= nprobe, or it would return worse lists than nprobe promises."""
    ivf_hnsw = index("IVF64_HNSW8,Flat")
    params = search_parameters(ivf_hnsw, {"nprobe": 48}, 20)
    assert params.nprobe == 48
    assert params.quantizer_keep_alive.efSearch >= 48 and params.quantizer_params is not None


def test_exact_index_gets_parameters_only_for_a_filter():
    """A Flat index needs none unless a selector is passed."""
    flat = index("Flat", n=100)
    assert search_parameters(flat, {}, 10) is None
    selector = faiss.IDSelectorRange(10, 20)
    assert search_parameters(flat, {}, 10, selector=selector).sel is not None
